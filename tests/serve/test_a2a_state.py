"""The A2A task and push-configuration stores over fleetmind's store keep the SDK's contract:
the same calls give what the SDK's in-memory stores give, on both of fleetmind's stores."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from a2a.auth.user import User
from a2a.server.context import ServerCallContext
from a2a.server.tasks import (
    InMemoryPushNotificationConfigStore,
    InMemoryTaskStore,
    PushNotificationConfigStore,
    TaskStore,
)
from a2a.types import (
    Artifact,
    AuthenticationInfo,
    ListTasksRequest,
    Part,
    Task,
    TaskPushNotificationConfig,
    TaskState,
    TaskStatus,
)
from a2a.utils.errors import InvalidParamsError
from google.protobuf.json_format import MessageToDict
from google.protobuf.timestamp_pb2 import Timestamp

from fleetmind.errors import StoreError
from fleetmind.orchestrator import InMemoryStore, SQLiteStore, Store
from fleetmind.serve._a2a_state import (
    TASKS,
    DurablePushConfigStore,
    DurableTaskStore,
    link_run,
    linked_run,
    owner_context,
)


class Named(User):
    def __init__(self, name: str) -> None:
        self.name = name

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def user_name(self) -> str:
        return self.name


ANN = ServerCallContext(user=Named("ann"))
DONE, WORKING = TaskState.TASK_STATE_COMPLETED, TaskState.TASK_STATE_WORKING
BOB = ServerCallContext(user=Named("bob"))


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "memory":
        yield InMemoryStore()
        return
    opened = SQLiteStore(tmp_path / "fleet.db")
    yield opened
    opened.close()


def task(n: int, *, context: str = "c1", state: int = TaskState.TASK_STATE_WORKING) -> Task:
    stamp = Timestamp(seconds=1_700_000_000 + n // 2)  # pairs share a time: ids break ties
    return Task(
        id=f"t{n:02d}",
        context_id=context,
        status=TaskStatus(state=state, timestamp=stamp),
        artifacts=[Artifact(artifact_id="a", parts=[Part(text=f"out {n}")])],
    )


async def both(store: Store, calls: list[tuple[Task, ServerCallContext]]) -> list[TaskStore]:
    stores: list[TaskStore] = [InMemoryTaskStore(), DurableTaskStore(store)]
    for each in stores:
        for saved, context in calls:
            await each.save(saved, context)
    return stores


async def test_a_task_round_trips_and_belongs_to_its_owner(store: Store) -> None:
    tasks = DurableTaskStore(store)
    original = task(1)
    await tasks.save(original, ANN)

    assert await tasks.get("t01", ANN) == original
    assert await tasks.get("t01", BOB) is None
    assert await tasks.get("nope", ANN) is None
    await tasks.delete("t01", BOB)  # not Bob's to delete
    assert await tasks.get("t01", ANN) == original
    await tasks.delete("t01", ANN)
    assert await tasks.get("t01", ANN) is None


async def test_a_saved_task_outlives_its_store_object(tmp_path: Path) -> None:
    first = SQLiteStore(tmp_path / "fleet.db")
    await DurableTaskStore(first).save(task(1), ANN)
    first.close()
    second = SQLiteStore(tmp_path / "fleet.db")
    try:
        assert await DurableTaskStore(second).get("t01", ANN) == task(1)
    finally:
        second.close()


@pytest.mark.parametrize(
    "query",
    [
        ListTasksRequest(),
        ListTasksRequest(context_id="c2"),
        ListTasksRequest(status=TaskState.TASK_STATE_COMPLETED),
        ListTasksRequest(status_timestamp_after=Timestamp(seconds=1_700_000_003)),
        ListTasksRequest(page_size=3),
    ],
    ids=["all", "context", "status", "after", "page"],
)
async def test_listing_gives_what_the_sdks_store_gives(
    store: Store, query: ListTasksRequest
) -> None:
    calls = [
        (
            task(n, context=f"c{n % 2 + 1}", state=DONE if n % 3 else WORKING),
            ANN,
        )
        for n in range(8)
    ]
    calls.append((task(9), BOB))
    sdk, ours = await both(store, calls)

    expected, got = await sdk.list(query, ANN), await ours.list(query, ANN)

    assert [t.id for t in got.tasks] == [t.id for t in expected.tasks]
    assert got.tasks == expected.tasks
    assert (got.total_size, got.page_size) == (expected.total_size, expected.page_size)
    assert bool(got.next_page_token) == bool(expected.next_page_token)


async def test_pages_follow_one_another_to_the_end(store: Store) -> None:
    sdk, ours = await both(store, [(task(n), ANN) for n in range(7)])
    for tasks in (sdk, ours):
        seen: list[str] = []
        token = ""
        while True:
            page = await tasks.list(ListTasksRequest(page_size=3, page_token=token), ANN)
            seen += [t.id for t in page.tasks]
            token = page.next_page_token
            if not token:
                break
        assert seen == [f"t{n:02d}" for n in reversed(range(7))]


async def test_a_bad_page_token_is_invalid_params(store: Store) -> None:
    tasks = DurableTaskStore(store)
    await tasks.save(task(1), ANN)
    with pytest.raises(InvalidParamsError):
        await tasks.list(ListTasksRequest(page_token="bm9wZQ"), ANN)


async def test_unfinished_tasks_are_found_with_their_owners(store: Store) -> None:
    tasks = DurableTaskStore(store)
    await tasks.save(task(1), ANN)
    await tasks.save(task(2, state=TaskState.TASK_STATE_SUBMITTED), BOB)
    await tasks.save(task(3, state=TaskState.TASK_STATE_INPUT_REQUIRED), ANN)
    await tasks.save(task(4, state=TaskState.TASK_STATE_COMPLETED), ANN)

    found = sorted((owner, t.id) for owner, t in tasks.unfinished())

    assert found == [("ann", "t01"), ("bob", "t02")]
    assert owner_context("bob").user.user_name == "bob"


async def test_a_task_record_of_the_json_form_is_still_read(store: Store) -> None:
    older = {
        "owner": "ann",
        "task_id": "t01",
        "state": int(WORKING),
        "task": MessageToDict(task(1)),
    }
    store.put_record(TASKS, "t01", older)
    tasks = DurableTaskStore(store)

    assert await tasks.get("t01", ANN) == task(1)
    assert [t for _, t in tasks.unfinished()] == [task(1)]


@pytest.mark.parametrize(
    "document",
    [{"task": {"id": 5}}, {"proto": "not base64!"}, {"proto": "AAAA"}],
    ids=["json", "base64", "protobuf"],
)
async def test_a_corrupt_task_is_a_store_error(store: Store, document: dict[str, object]) -> None:
    store.put_record(TASKS, "t01", {"owner": "ann", "task_id": "t01", **document})
    with pytest.raises(StoreError, match="A2A task 't01' is corrupt"):
        await DurableTaskStore(store).get("t01", ANN)


def config(config_id: str, url: str) -> TaskPushNotificationConfig:
    return TaskPushNotificationConfig(
        id=config_id,
        url=url,
        token="tok",
        authentication=AuthenticationInfo(scheme="Bearer", credentials="secret"),
    )


async def test_push_configurations_keep_the_sdks_contract(store: Store) -> None:
    stores: list[PushNotificationConfigStore] = [
        InMemoryPushNotificationConfigStore(),
        DurablePushConfigStore(store),
    ]
    results = []
    for configs in stores:
        first = await configs.set_info("t1", config("a", "https://one.example/hook"), ANN)
        await configs.set_info("t1", config("b", "https://two.example/hook"), ANN)
        await configs.set_info("t1", config("a", "https://three.example/hook"), ANN)  # replaces
        await configs.set_info("t1", config("", "https://bob.example/hook"), BOB)
        ann = await configs.get_info("t1", ANN)
        dispatch = await configs.get_info_for_dispatch("t1")
        await configs.delete_info("t1", ANN, "b")
        after_one = await configs.get_info("t1", ANN)
        await configs.delete_info("t1", ANN)
        after_all = await configs.get_info("t1", ANN)
        bobs = await configs.get_info("t1", BOB)
        results.append((first, ann, dispatch, after_one, after_all, bobs))

    assert results[1] == results[0]
    first, ann, dispatch, _, after_all, bobs = results[1]
    assert first.task_id == "t1" and first.authentication.credentials == "secret"
    assert [c.url for c in ann] == ["https://two.example/hook", "https://three.example/hook"]
    assert len(dispatch) == 3
    assert after_all == []
    assert [(c.id, c.url) for c in bobs] == [("t1", "https://bob.example/hook")]


async def test_push_configurations_outlive_their_store_object(tmp_path: Path) -> None:
    first = SQLiteStore(tmp_path / "fleet.db")
    await DurablePushConfigStore(first).set_info("t1", config("a", "https://x.example/h"), ANN)
    first.close()
    second = SQLiteStore(tmp_path / "fleet.db")
    try:
        kept = await DurablePushConfigStore(second).get_info_for_dispatch("t1")
    finally:
        second.close()
    assert [c.url for c in kept] == ["https://x.example/h"]


def test_the_fleetmind_task_of_an_a2a_task_is_remembered(store: Store) -> None:
    assert linked_run(store, "a2a-1") is None
    link_run(store, "a2a-1", "fm-1")
    assert linked_run(store, "a2a-1") == "fm-1"


async def test_a_task_changed_by_another_server_is_read_as_changed(store: Store) -> None:
    here, there = DurableTaskStore(store), DurableTaskStore(store)
    await here.save(task(1), ANN)
    assert await here.get("t01", ANN) == task(1)

    await there.save(task(1, state=DONE), ANN)  # another process on the same store

    got = await here.get("t01", ANN)
    assert got is not None and got.status.state == DONE
    got.status.state = WORKING  # what a caller does to its copy stays with it
    again = await here.get("t01", ANN)
    assert again is not None and again.status.state == DONE
