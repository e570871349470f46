"""Working memory: a token budget, pinned entries, compaction, tool-output pointers."""

from __future__ import annotations

import pytest

from fleetmind.errors import ConfigError
from fleetmind.memory import WorkingMemory, default_tokenizer
from fleetmind.memory._working import Summarizer

GOAL = "calibrate the temperature sensor on pi-3"


def count(text: str) -> int:
    return default_tokenizer().count(text)


def filler(i: int) -> str:
    return f"status report {i}: the gateway forwarded a batch of readings to the archive"


def test_budget_under_32_tokens_is_refused() -> None:
    with pytest.raises(ConfigError, match="at least 32 tokens, not 31"):
        WorkingMemory(budget_tokens=31)
    assert WorkingMemory(budget_tokens=32).budget_tokens == 32


def test_goal_is_the_first_entry_and_pinned() -> None:
    memory = WorkingMemory(budget_tokens=200, goal=GOAL)
    [goal] = memory.entries
    assert goal.kind == "goal"
    assert goal.text == GOAL
    assert goal.pinned
    assert goal.tokens == count(GOAL)
    assert memory.tokens == count(GOAL)
    assert memory.context() == GOAL


def test_no_goal_no_entries() -> None:
    memory = WorkingMemory(budget_tokens=100)
    assert memory.entries == []
    assert memory.tokens == 0
    assert memory.context() == ""


def test_adding_past_the_budget_compacts_within_budget_and_keeps_the_goal() -> None:
    memory = WorkingMemory(budget_tokens=80, goal=GOAL)
    for i in range(30):
        memory.add(filler(i))
        assert memory.tokens <= memory.budget_tokens, i
        assert memory.entries[0].kind == "goal"
        assert memory.entries[0].text == GOAL
    # Something was dropped, and the newest entry is among those kept.
    assert len(memory.entries) < 31
    assert memory.entries[-1].text == filler(29)
    assert memory.tokens == sum(count(e.text) for e in memory.entries)


def test_entries_are_kept_as_added_while_under_budget() -> None:
    memory = WorkingMemory(budget_tokens=1000, goal=GOAL)
    first = memory.add("reading is 21.5 degrees")
    second = memory.add("reference thermometer says 21.0 degrees")
    assert [e.id for e in memory.entries[1:]] == [first.id, second.id]
    assert first.id < second.id
    assert memory.context() == "\n\n".join(
        [GOAL, "reading is 21.5 degrees", "reference thermometer says 21.0 degrees"]
    )


def test_errors_decisions_and_failures_are_pinned() -> None:
    memory = WorkingMemory(budget_tokens=1000)
    assert memory.add("disk full on /var", kind="error").pinned
    assert memory.add("use the backup broker", kind="decision").pinned
    assert memory.add("the upload failed twice").pinned  # names a failure
    assert not memory.add("the upload finished").pinned
    assert not memory.add("ERROR but unimportant", pin=False).pinned
    assert memory.add("keep this one", pin=True).pinned


def test_pinned_entries_survive_compaction() -> None:
    memory = WorkingMemory(budget_tokens=90, goal=GOAL)
    error = memory.add("sensor pi-3 returned an invalid checksum", kind="error")
    decision = memory.add("use the spare probe from now on", kind="decision")
    for i in range(40):
        memory.add(filler(i))
    texts = [e.text for e in memory.entries]
    assert GOAL in texts
    assert error in memory.entries and error.text == "sensor pi-3 returned an invalid checksum"
    assert decision in memory.entries and decision.text == "use the spare probe from now on"
    assert memory.tokens <= memory.budget_tokens
    assert filler(0) not in texts


def test_least_relevant_unpinned_entry_goes_first() -> None:
    relevant = "temperature sensor on pi-3 reads two degrees high"
    irrelevant = "the cafeteria menu lists soup today"
    last = "temperature drift on the sensor looks linear"
    total = sum(count(t) for t in (GOAL, relevant, irrelevant, last))
    # One token short: exactly one entry has to go when the last one arrives.
    memory = WorkingMemory(budget_tokens=total - 1, goal=GOAL)
    memory.add(relevant)  # older than the irrelevant one: age alone would drop it
    memory.add(irrelevant)
    memory.add(last)
    assert [e.text for e in memory.entries] == [GOAL, relevant, last]
    assert memory.tokens <= memory.budget_tokens


def test_compact_under_budget_frees_nothing() -> None:
    memory = WorkingMemory(budget_tokens=500, goal=GOAL)
    memory.add("one short message")
    before = [(e.id, e.text) for e in memory.entries]
    assert memory.compact() == 0
    assert [(e.id, e.text) for e in memory.entries] == before


def test_compact_returns_tokens_freed() -> None:
    memory = WorkingMemory(budget_tokens=1000, goal=GOAL)
    for i in range(10):
        memory.add(filler(i))
    before = memory.tokens
    memory.budget_tokens = 60
    freed = memory.compact()
    assert freed == before - memory.tokens
    assert freed > 0
    assert memory.tokens <= 60


def long_log() -> str:
    lines = []
    for i in range(150):
        lines.append(f"{1701234500 + i}: Client sensor-{i % 25} sent PUBLISH on topic t/{i}")
    lines.insert(70, "1701234570: Socket error on client sensor-7, disconnecting.")
    return "\n".join(lines) + "\n"


def test_long_tool_output_enters_as_a_summary_with_a_pointer() -> None:
    output = long_log()
    memory = WorkingMemory(budget_tokens=4000, goal=GOAL, tool_output_tokens=100)
    entry = memory.add_tool_output("mqtt_log", output)
    assert entry.kind == "tool"
    assert entry.pointer == "tool-output:1"
    assert entry.text.startswith(
        f"mqtt_log ({count(output)} tokens, summarised; full text: tool-output:1):\n"
    )
    assert entry.tokens < count(output) // 5
    # The error survives the summary.
    assert "Socket error on client sensor-7" in entry.text
    # The full text is the exact original, byte for byte.
    assert memory.full_text("tool-output:1") == output
    second = memory.add_tool_output("mqtt_log", output + "one more line\n")
    assert second.pointer == "tool-output:2"
    assert memory.full_text("tool-output:2") == output + "one more line\n"


def test_short_tool_output_enters_as_it_is() -> None:
    memory = WorkingMemory(budget_tokens=400, tool_output_tokens=100)
    entry = memory.add_tool_output("ping", "64 bytes from 10.0.0.5: time=1.2 ms")
    assert entry.text == "ping: 64 bytes from 10.0.0.5: time=1.2 ms"
    assert entry.pointer is None


def test_unknown_pointer_is_a_key_error() -> None:
    memory = WorkingMemory(budget_tokens=400)
    with pytest.raises(KeyError, match="tool-output:9"):
        memory.full_text("tool-output:9")


def overfull_memory(summarizer: Summarizer | None = None) -> WorkingMemory:
    """A memory over its budget: filled under a large one, then given a small one."""
    memory = WorkingMemory(budget_tokens=2000, goal=GOAL, summarizer=summarizer)
    memory.add("probe pi-3 returned an invalid reading", kind="error")
    for i in range(8):
        memory.add(filler(i))
    memory.add("use the spare probe", kind="decision")
    memory.budget_tokens = 80
    assert memory.tokens > memory.budget_tokens
    return memory


async def test_acompact_replaces_unpinned_entries_with_one_summary() -> None:
    calls: list[tuple[str, str, int]] = []

    async def summarize(text: str, goal: str, budget: int) -> str:
        calls.append((text, goal, budget))
        return "eight status reports: readings forwarded"

    memory = overfull_memory(summarizer=summarize)
    pinned = [(e.id, e.text) for e in memory.entries if e.pinned]
    before = memory.tokens
    freed = await memory.acompact()
    assert len(calls) == 1
    text, goal, budget = calls[0]
    assert text == "\n\n".join(filler(i) for i in range(8))
    assert goal == GOAL
    assert budget >= 32
    assert [(e.id, e.text) for e in memory.entries if e.pinned] == pinned
    [summary] = [e for e in memory.entries if not e.pinned]
    assert summary.kind == "summary"
    assert summary.text == "eight status reports: readings forwarded"
    assert memory.entries[-1] is summary
    assert memory.tokens <= memory.budget_tokens
    assert freed == before - memory.tokens


async def test_acompact_under_budget_does_not_summarize() -> None:
    async def summarize(text: str, goal: str, budget: int) -> str:
        raise AssertionError("not over budget: no summary needed")

    memory = WorkingMemory(budget_tokens=500, goal=GOAL, summarizer=summarize)
    memory.add("short")
    assert await memory.acompact() == 0
    assert [e.text for e in memory.entries] == [GOAL, "short"]


async def test_acompact_without_summarizer_falls_back_to_compact() -> None:
    memory = overfull_memory()
    twin = overfull_memory()
    freed = await memory.acompact()
    assert freed == twin.compact()
    assert [(e.kind, e.text) for e in memory.entries] == [(e.kind, e.text) for e in twin.entries]
    assert all(e.kind != "summary" for e in memory.entries)
    assert memory.tokens <= memory.budget_tokens
    assert {e.kind for e in memory.entries if e.pinned} == {"goal", "error", "decision"}


def test_without_a_goal_the_oldest_unpinned_entries_go_first() -> None:
    texts = [f"plain message number {word} about the weather today" for word in "abcdef"]
    per_entry = count(texts[0])
    memory = WorkingMemory(budget_tokens=max(32, 3 * per_entry))
    for text in texts:
        memory.add(text)
    kept = [e.text for e in memory.entries]
    assert kept == texts[-len(kept) :]
    assert 0 < len(kept) < len(texts)
    assert memory.tokens <= memory.budget_tokens


def repetitive_report(lines: int) -> str:
    return "\n".join(
        f"gateway forwarded batch {i} of readings to the archive" for i in range(lines)
    )


def test_long_unpinned_entries_are_compressed_before_anything_is_dropped() -> None:
    report = repetitive_report(20)
    assert count(report) > 64
    memory = WorkingMemory(budget_tokens=count(report) + 10, goal="archive readings")
    long = memory.add(report)
    short = memory.add("the archive answered within the usual time window today")
    assert long in memory.entries and short in memory.entries
    assert long.text.startswith("gateway forwarded batch 0 of readings to the archive (x20")
    assert long.tokens == count(long.text) < count(report)
    assert memory.tokens <= memory.budget_tokens


def test_pinned_entries_are_compressed_when_they_alone_are_over_budget() -> None:
    decision = "\n".join(f"decided to move sensor-{i} to rack 2" for i in range(30))
    memory = WorkingMemory(budget_tokens=64, goal="tidy the racks")
    entry = memory.add(decision, kind="decision")
    assert entry in memory.entries
    assert entry.text.startswith("decided to move sensor-0 to rack 2 (x30")
    assert memory.tokens <= memory.budget_tokens


def test_a_pinned_entry_is_never_emptied_by_compaction() -> None:
    """A pinned one-line error longer than its shrink budget is kept, never emptied."""
    error = "ERROR: " + " ".join(f"symbol_{i} undefined" for i in range(30))
    memory = WorkingMemory(budget_tokens=60, goal="fix the build")
    entry = memory.add(error, kind="error")
    assert entry in memory.entries
    assert entry.text.strip(), "the pinned error entry was emptied"


async def test_acompact_with_only_pinned_entries_compacts_without_summarizing() -> None:
    async def summarize(text: str, goal: str, budget: int) -> str:
        raise AssertionError("nothing unpinned to summarise")

    memory = WorkingMemory(budget_tokens=2000, goal=GOAL, summarizer=summarize)
    decision = memory.add(
        "\n".join(f"decided to move sensor-{i} to rack 2" for i in range(30)), kind="decision"
    )
    memory.budget_tokens = 64
    freed = await memory.acompact()
    assert freed > 0
    assert decision in memory.entries
    assert memory.tokens <= memory.budget_tokens


async def test_acompact_compacts_a_summary_that_is_too_long() -> None:
    async def summarize(text: str, goal: str, budget: int) -> str:
        return repetitive_report(40)  # ignores the budget it was given

    memory = overfull_memory(summarizer=summarize)
    pinned = [(e.id, e.text) for e in memory.entries if e.pinned]
    await memory.acompact()
    assert memory.tokens <= memory.budget_tokens
    assert [(e.id, e.text) for e in memory.entries if e.pinned] == pinned
    assert all(e.kind == "summary" for e in memory.entries if not e.pinned)
