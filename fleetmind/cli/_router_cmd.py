"""`fleetmind router eval|train`, and the step router `fleetmind run` gives its LLM agents.

- ``router eval --data PATH``: how a step router would have done on recorded model outcomes
  (a CSV, or a folder of them): APGR and CPT beside random and the oracle, trained on half the
  groups (files) and scored on the others, or with ``--router FILE`` scored as it is.
- ``router train``: a router file from the fleet's recorded steps (``--from-store``) or from
  a file of outcomes or labeled rows (``--data``).
- ``run --step-router FILE|device|cloud|cascade --cloud-budget 0.4``: the policy every LLM
  agent of the fleet uses for its steps, with data that must stay local kept on the device
  and the cloud's share of each subtask's steps held to the budget.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from fleetmind._extras import require
from fleetmind.cli._help import command_group, examples
from fleetmind.cli._options import DataDir
from fleetmind.cli._tables import plain_table, print_table
from fleetmind.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

    from fleetmind.agents import Agent, OutcomeSet, StepRouter

router_app = command_group(
    "Evaluate and train the step router.",
    "The step router picks the device or the cloud model for each step of an LLM agent.",
)

POLICIES = ("learned", "hashed", "structural", "cascade", "random", "oracle")

DeviceModel = Annotated[
    str | None,
    typer.Option(
        "--device-model",
        metavar="COLUMN",
        help="The device model's column in the outcomes (default: the less accurate one).",
        show_default=False,
    ),
]
CloudModel = Annotated[
    str | None,
    typer.Option(
        "--cloud-model",
        metavar="COLUMN",
        help="The cloud model's column in the outcomes (default: the more accurate one).",
        show_default=False,
    ),
]
EmbeddingModel = Annotated[
    str | None,
    typer.Option(
        "--embedding-model",
        metavar="MODEL",
        help="The embedding model for text features (default: the orchestrator's; 'light' "
        "for all-MiniLM-L6-v2).",
        show_default=False,
    ),
]


# `fleetmind run --step-router` --------------------------------------------------------------


def step_router_for(spec: str | None, cloud_budget: float | None) -> StepRouter | None:
    """The router ``--step-router`` and ``--cloud-budget`` ask for (None: leave agents be)."""
    from fleetmind.agents import (
        AlwaysCloud,
        AlwaysDevice,
        CascadeRouter,
        RulesRouter,
        StepRouterModel,
        keep_local_data,
        within_budget,
    )

    if cloud_budget is not None and not 0.0 <= cloud_budget <= 1.0:
        raise ConfigError(
            f"--cloud-budget is a share of steps between 0 and 1, not {cloud_budget:g}"
        )
    if spec is None and cloud_budget is None:
        return None
    inner: StepRouter | str
    if spec is None or spec == "cloud":
        inner = AlwaysCloud()
    elif spec == "device":
        inner = AlwaysDevice()
    elif spec == "cascade":
        inner = CascadeRouter()
    else:
        path = Path(spec)
        if not path.exists():
            raise ConfigError(
                f"--step-router {spec!r}: no such file (or give device, cloud or cascade)"
            )
        model = StepRouterModel.load(path)
        if model.kind == "draft":
            inner = CascadeRouter(model, cloud_share=cloud_budget)
        else:
            from fleetmind.orchestrator import load_step_router

            inner = load_step_router(path, cloud_share=cloud_budget)
    rules = [keep_local_data()]
    if cloud_budget is not None:
        rules.append(within_budget(cloud_share=cloud_budget))
    return RulesRouter(rules, otherwise=inner)


def apply_step_router(agents: Sequence[Agent], router: StepRouter | None) -> int:
    """Give every LLM agent ``router``; the number of agents changed."""
    from fleetmind.agents import LLMAgent

    if router is None:
        return 0
    changed = 0
    for agent in agents:
        if isinstance(agent, LLMAgent):
            agent.step_router = router
            changed += 1
    return changed


# `fleetmind router eval` ---------------------------------------------------------------------


def _datasets(path: Path) -> list[tuple[str, Path]]:
    """A CSV, a folder of CSVs, or a folder of such folders (each one dataset)."""
    if not path.exists():
        raise ConfigError(f"--data {path}: no such file or folder")
    if path.is_file():
        return [(path.stem, path)]
    subfolders = sorted(p for p in path.iterdir() if p.is_dir() and any(p.rglob("*.csv")))
    if subfolders and not any(path.glob("*.csv")):
        return [(p.name, p) for p in subfolders]
    return [(path.name, path)]


def _policy_scores(
    policy: str,
    outcomes: OutcomeSet,
    *,
    seed: int,
    embedder: Any,
) -> tuple[np.ndarray, np.ndarray] | None:
    """(scores, mask of the scored prompts) for a policy, held out; None when it cannot run."""
    import numpy as np

    from fleetmind.orchestrator import draft_rows, held_out_scores, outcome_rows

    everyone = np.ones(len(outcomes), dtype=bool)
    if policy == "random":
        return np.zeros(len(outcomes)), everyone  # all tied: the expected random curve
    if policy == "oracle":
        return outcomes.cloud_ok.astype(float) - outcomes.device_ok, everyone
    if policy == "cascade":
        if outcomes.device_responses is None:
            return None
        return held_out_scores(draft_rows(outcomes), outcomes.groups, seed=seed, kind="draft")
    text = {"learned": "embedding", "hashed": "hashed", "structural": "none"}[policy]
    rows = outcome_rows(outcomes, text=text, embedder=embedder)  # type: ignore[arg-type]
    return held_out_scores(rows, outcomes.groups, seed=seed)


def _router_file_scores(path: Path, outcomes: OutcomeSet, embedder: Any) -> np.ndarray | None:
    from fleetmind.agents import StepRouterModel
    from fleetmind.orchestrator import draft_rows, outcome_rows

    model = StepRouterModel.load(path)
    if model.kind == "draft":
        if outcomes.device_responses is None:
            return None
        rows = draft_rows(outcomes)
        return model.scores(rows.numeric)
    text = "embedding" if model.needs_embedder else model.text
    rows = outcome_rows(outcomes, text=text, embedder=embedder)  # type: ignore[arg-type]
    return model.scores(rows.numeric, rows.text)


@router_app.command(
    "eval",
    epilog=examples(
        "fleetmind router eval --data ../shared/data/routellm --policy learned",
        "fleetmind router eval --data outcomes.csv --router router.json --json",
    ),
)
def evaluate(
    data: Annotated[
        Path,
        typer.Option(
            "--data",
            metavar="PATH",
            help="The outcomes: a CSV with a prompt column and one True/False column per "
            "model, or a folder of them (RouteLLM's layout).",
        ),
    ],
    policy: Annotated[
        list[str] | None,
        typer.Option(
            "--policy",
            metavar="POLICY",
            help=f"A policy to score (repeatable): {', '.join(POLICIES)}, or all "
            "(default: learned, cascade, random, oracle).",
            show_default=False,
        ),
    ] = None,
    router_file: Annotated[
        Path | None,
        typer.Option(
            "--router",
            metavar="FILE",
            help="Score this router file as it is.",
            show_default=False,
        ),
    ] = None,
    device_model: DeviceModel = None,
    cloud_model: CloudModel = None,
    embedding_model: EmbeddingModel = None,
    seed: Annotated[
        int, typer.Option("--seed", metavar="N", help="Which half of the groups trains.")
    ] = 0,
    plot: Annotated[
        Path | None,
        typer.Option(
            "--plot", metavar="FILE", help="Save the curves as an image (PNG).", show_default=False
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Score step routers on recorded outcomes.

    The outcomes say, per prompt, whether each model answered it well. The scores are APGR,
    CPT(50%) and CPT(80%), beside random routing and the oracle. Without --router, each learned
    policy trains on a seeded half of the groups (files, e.g. MMLU domains) and is scored on the
    other half; with one group, on two halves in turn.
    """
    import numpy as np

    from fleetmind.agents import load_outcomes, routing_curve
    from fleetmind.cli._options import home

    chosen = _chosen_policies(policy, router_file)
    err = Console(stderr=True)
    embedder = None
    if router_file is not None or "learned" in chosen:
        from fleetmind.orchestrator import embedder_for

        cache = home(data_dir) / "cache" / "step-router-embeddings.sqlite"
        embedder = embedder_for(embedding_model, cache)
    results: list[dict[str, Any]] = []
    curves: dict[str, dict[str, Any]] = {}
    for name, path in _datasets(data):
        outcomes = load_outcomes(path, device_model=device_model, cloud_model=cloud_model)
        if not len(outcomes):
            raise ConfigError(f"{path}: no prompts left to score")
        for what in chosen:
            if not as_json:
                err.print(f"[dim]{name}: scoring {what} …[/dim]")
            if what == "router":
                assert router_file is not None
                scores = _router_file_scores(router_file, outcomes, embedder)
                scored = None if scores is None else (scores, np.ones(len(outcomes), dtype=bool))
            else:
                scored = _policy_scores(what, outcomes, seed=seed, embedder=embedder)
            if scored is None:
                continue
            scores, mask = scored
            curve = routing_curve(scores, outcomes.device_ok[mask], outcomes.cloud_ok[mask])
            results.append(
                {
                    "data": name,
                    "policy": what,
                    "prompts": int(mask.sum()),
                    "device_accuracy": curve.device_accuracy,
                    "cloud_accuracy": curve.cloud_accuracy,
                    "apgr": curve.apgr,
                    "cpt50": curve.cpt(0.5),
                    "cpt80": curve.cpt(0.8),
                }
            )
            curves.setdefault(name, {})[what] = curve
    if plot is not None:
        _plot(curves, plot)
    if as_json:
        print(json.dumps({"results": results, "plot": str(plot) if plot else None}, indent=2))
        return
    table = plain_table(
        "data", "policy", "prompts", "device acc", "cloud acc", "APGR", "CPT(50%)", "CPT(80%)"
    )
    for r in results:
        table.add_row(
            r["data"],
            r["policy"],
            str(r["prompts"]),
            f"{r['device_accuracy']:.3f}",
            f"{r['cloud_accuracy']:.3f}",
            f"{r['apgr']:.3f}",
            f"{r['cpt50']:.1%}",
            f"{r['cpt80']:.1%}",
        )
    print_table(table)
    if plot is not None:
        Console().print(f"curves: {plot}")


def _chosen_policies(policy: list[str] | None, router_file: Path | None) -> list[str]:
    if router_file is not None:
        if policy:
            raise ConfigError("--router scores one router file; leave out --policy")
        if not router_file.exists():
            raise ConfigError(f"--router {router_file}: no such file")
        return ["router", "random", "oracle"]
    chosen: list[str] = []
    for p in policy or ["learned", "cascade", "random", "oracle"]:
        if p == "all":
            chosen.extend(POLICIES)
        elif p in POLICIES:
            chosen.append(p)
        else:
            raise ConfigError(f"--policy {p!r}: choose from {', '.join(POLICIES)} or all")
    return list(dict.fromkeys(chosen))


def _plot(curves: dict[str, dict[str, Any]], path: Path) -> None:
    require("matplotlib", "plot", "plotting routing curves (--plot)")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(5.5 * len(curves), 4.2), squeeze=False)
    for ax, (name, by_policy) in zip(axes[0], curves.items(), strict=True):
        for policy, curve in by_policy.items():
            ax.plot(curve.cloud_share, curve.accuracy, label=f"{policy} (APGR {curve.apgr:.2f})")
        ax.set_title(name)
        ax.set_xlabel("share of calls on the cloud model")
        ax.set_ylabel("accuracy")
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# `fleetmind router train` --------------------------------------------------------------------


@router_app.command(
    "train",
    epilog=examples(
        "fleetmind router train --from-store --out router.json",
        "fleetmind router train --data runs.csv --features hashed --out router.json",
    ),
)
def train(
    out: Annotated[
        Path, typer.Option("--out", metavar="FILE", help="Where to write the router file.")
    ],
    from_store: Annotated[
        bool, typer.Option("--from-store", help="Learn from the steps recorded in the store.")
    ] = False,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            metavar="PATH",
            help="Learn from outcomes (a CSV or a folder, as router eval reads them) "
            'or labeled rows (JSONL: {"prompt": ..., "needs_cloud": true}).',
            show_default=False,
        ),
    ] = None,
    features: Annotated[
        str,
        typer.Option(
            "--features",
            metavar="KIND",
            help="The text features: embedding (most accurate), hashed (no embedding model "
            "needed where the router runs) or none.",
        ),
    ] = "embedding",
    cascade: Annotated[
        bool,
        typer.Option(
            "--cascade",
            help="Train a cascade's draft model (needs the device model's responses in the data).",
        ),
    ] = False,
    cloud_share: Annotated[
        float,
        typer.Option(
            "--cloud-share",
            metavar="0..1",
            help="The share of the training steps the saved threshold sends to the cloud.",
        ),
    ] = 0.4,
    device_model: DeviceModel = None,
    cloud_model: CloudModel = None,
    embedding_model: EmbeddingModel = None,
    data_dir: DataDir = None,
) -> None:
    """Train a step router into a JSON file.

    It learns from the steps recorded in the store (--from-store) or from a file of outcomes
    (--data). A router whose features are hashed or none loads without torch.
    """
    from fleetmind.cli._build import open_store
    from fleetmind.orchestrator import (
        draft_rows,
        embedder_for,
        outcome_rows,
        recorded_step_rows,
        train_step_router,
    )

    if from_store == (data is not None):
        raise ConfigError("give one source: --from-store or --data PATH")
    if features not in ("embedding", "hashed", "none"):
        raise ConfigError(f"--features {features!r}: choose embedding, hashed or none")
    if not 0.0 < cloud_share < 1.0:
        raise ConfigError(f"--cloud-share is between 0 and 1, not {cloud_share:g}")
    if from_store:
        if cascade:
            raise ConfigError("--cascade learns from device responses in --data, not the store")
        rows = recorded_step_rows(open_store(data_dir))
        source = "recorded steps"
        if len(rows.labels) < 10 or rows.labels.all() or not rows.labels.any():
            raise ConfigError(
                f"the store holds {len(rows.labels)} labeled step(s) "
                f"({int(rows.labels.sum())} needing the cloud); training needs at least 10 "
                "with both kinds: run LLM agents with both a device and a cloud model "
                "(LLMAgent(shadow_rate=0.1) labels a tenth of the steps by running both)"
            )
    else:
        assert data is not None
        outcomes = _training_outcomes(data, device_model, cloud_model)
        source = str(data)
        if cascade:
            rows = draft_rows(outcomes)
        else:
            embedder = embedder_for(embedding_model) if features == "embedding" else None
            rows = outcome_rows(outcomes, text=features, embedder=embedder)  # type: ignore[arg-type]
        if rows.labels.all() or not rows.labels.any():
            raise ConfigError(f"{data}: every row has the same label; nothing to learn")
    model = train_step_router(
        rows, kind="draft" if cascade else "step", cloud_share=cloud_share, source=source
    )
    path = model.save(out)
    Console().print(
        f"trained a {'cascade (draft)' if cascade else 'step'} router on {len(rows.labels)} "
        f"rows ({int(rows.labels.sum())} needed the cloud), text features: {model.text}; "
        f"threshold {model.threshold:.3f} sends {cloud_share:.0%} of the training steps to the "
        f"cloud → {path} ({path.stat().st_size / 1024:.0f} KB)"
    )


def _training_outcomes(data: Path, device_model: str | None, cloud_model: str | None) -> OutcomeSet:
    from fleetmind.agents import load_outcomes

    if data.is_file() and data.suffix in (".jsonl", ".json"):
        from fleetmind.orchestrator import labeled_rows_from

        pairs = []
        for number, line in enumerate(data.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                pairs.append((str(row["prompt"]), bool(row["needs_cloud"])))
            except (json.JSONDecodeError, KeyError, TypeError):
                raise ConfigError(
                    f'{data}:{number}: expected {{"prompt": ..., "needs_cloud": true|false}}'
                ) from None
        return labeled_rows_from(pairs)
    return load_outcomes(data, device_model=device_model, cloud_model=cloud_model)
