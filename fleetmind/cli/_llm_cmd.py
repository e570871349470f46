"""`fleetmind llm check`: which model endpoints are configured, reachable, what they answer,
how fast — and the model configuration every command that plans shares (``--models``)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from fleetmind.cli._help import command_group, examples
from fleetmind.cli._options import DataDir, ModelsFile, home
from fleetmind.cli._tables import fit_table, plain_table, table_console
from fleetmind.errors import ConfigError, FleetmindError, ModelNotConfigured

if TYPE_CHECKING:
    from fleetmind.agents import ModelConfig, ModelEndpoint

llm_app = command_group("Check the configured language models.")


def load_models(models_file: Path | None, data_dir: Path | None) -> ModelConfig:
    """The model configuration: ``--models FILE``, or models.yaml in the data directory,
    with the environment over it."""
    from fleetmind.agents import ModelConfig

    if models_file is not None:
        if not models_file.is_file():
            raise ConfigError(f"model configuration not found: {models_file}")
        return ModelConfig.load(models_file)
    return ModelConfig.load(home(data_dir) / "models.yaml")


def share_model_settings(models_file: Path | None, data_dir: Path | None) -> None:
    """Let agents that name a tier (``LLMAgent(model="cloud")``) read the same configuration
    as the command: ``--models`` and ``--data-dir`` become the variables they read."""
    if models_file is not None:
        if not models_file.is_file():
            raise ConfigError(f"model configuration not found: {models_file}")
        os.environ["FLEETMIND_MODELS"] = str(models_file.resolve())
    if data_dir is not None:
        os.environ["FLEETMIND_HOME"] = str(data_dir.resolve())


@llm_app.command(
    "check",
    epilog=examples("fleetmind llm check", "fleetmind llm check --models models.yaml --json"),
)
def check(
    models_file: ModelsFile = None,
    data_dir: DataDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Ask every configured model a short question.

    The question wants a one-word answer. Shows for each endpoint whether it is reachable, what
    it answered, the tokens it counted and how fast it was, streaming included. Exit 0 when
    every configured endpoint answered, 1 when one did not.
    """
    from fleetmind.agents import CONFIGURE_HINT

    config = load_models(models_file, data_dir)
    if not config.models:
        raise ModelNotConfigured(f"no model endpoint is configured; {CONFIGURE_HINT}")
    from fleetmind.cli._drive import run_interruptible
    from fleetmind.cli._wait import waiting

    with waiting("asking the configured models"):
        results = run_interruptible(_check_all(config))
    planner = config.planner_tier()
    for row in results:
        row["plans"] = row["tier"] == planner
    if as_json:
        print(json.dumps({"source": config.source, "endpoints": results}, indent=2))
    else:
        table = plain_table(
            "tier", "model", "endpoint", "key", "answer", "tokens", "latency", "stream", title=None
        )
        for row in results:
            answer = row["answer"] if row["ok"] else f"✗ {row['error']}"
            table.add_row(
                row["tier"] + (" (plans)" if row["plans"] else ""),
                row["model"],
                row["base_url"],
                row["key"],
                answer,
                f"{row['prompt_tokens']}+{row['completion_tokens']}" if row["ok"] else "",
                f"{row['latency_s'] * 1000:.0f} ms" if row["ok"] else "",
                row["stream"],
            )
        console = table_console()
        console.print(fit_table(table, console))
        console.print(f"configuration: {config.source}", style="dim", highlight=False)
    raise typer.Exit(0 if all(r["ok"] for r in results) else 1)


async def _check_all(config: ModelConfig) -> list[dict[str, Any]]:
    return list(await asyncio.gather(*(_check_one(config.endpoint(tier)) for tier in config.tiers)))


async def _check_one(endpoint: ModelEndpoint) -> dict[str, Any]:
    from fleetmind.agents import ChatMessage, OpenAICompatibleClient

    row: dict[str, Any] = {
        "tier": endpoint.name,
        "model": endpoint.model,
        "base_url": endpoint.base_url,
        "key": endpoint.key_source(),
        "ok": False,
        "answer": "",
        "error": "",
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "latency_s": 0.0,
        "stream": "",
        "listed": None,
    }
    quick = endpoint.model_copy(update={"max_retries": 0, "timeout_s": min(endpoint.timeout_s, 60)})
    question = [ChatMessage.user("Reply with the single word OK.")]
    try:
        async with OpenAICompatibleClient(quick) as client:
            try:
                row["listed"] = endpoint.model in await client.list_models()
            except FleetmindError:
                row["listed"] = None  # not every server lists its models
            answer = await client.complete(question, max_tokens=8, temperature=0.0)
            row.update(
                ok=True,
                answer=" ".join(answer.content.split())[:60] or "(empty)",
                prompt_tokens=answer.prompt_tokens,
                completion_tokens=answer.completion_tokens,
                latency_s=round(answer.latency_s, 4),
            )
            started = time.perf_counter()
            pieces = 0
            first: float | None = None
            async with client.stream(question, max_tokens=8, temperature=0.0) as stream:
                async for _ in stream:
                    pieces += 1
                    first = first if first is not None else time.perf_counter() - started
            if not stream.streamed:
                row["stream"] = "answered whole (no streaming)"
            else:
                after = f", first after {first * 1000:.0f} ms" if first is not None else ""
                row["stream"] = f"{pieces} pieces{after}"
    except FleetmindError as exc:
        if not row["ok"]:
            row["error"] = exc.message
        else:
            row["stream"] = f"✗ {exc.message}"
    return row
