"""`fleetmind route`: where would a subtask go, and why (or why nowhere)."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from fleetmind._suggest import did_you_mean
from fleetmind.cli._help import examples
from fleetmind.cli._llm_cmd import load_models
from fleetmind.cli._options import DataDir, FleetRef, ModelsFile
from fleetmind.cli._tables import fit_table, plain_table, table_console
from fleetmind.cli._wait import show_model_loads
from fleetmind.errors import ConfigError, NoCapableAgent

if TYPE_CHECKING:
    from fleetmind.orchestrator import Fleet, RouteReviewer, RoutingDecision, Subtask

_QUERY_ID = "query"


ROUTE_EXAMPLES = examples(
    'fleetmind route "count the python lines" --fleet examples/repo_audit.py',
    'fleetmind route "translate the manual" --fleet my_fleet.py --tier device',
)


def route(
    text: Annotated[
        str,
        typer.Argument(metavar="SUBTASK", help="The subtask, in plain words.", show_default=False),
    ],
    fleet: FleetRef,
    tier: Annotated[
        list[str] | None,
        typer.Option(
            "--tier",
            metavar="TIER",
            help="Only agents of this tier: device, edge or cloud (repeatable).",
            show_default=False,
        ),
    ] = None,
    device: Annotated[
        list[str] | None,
        typer.Option(
            "--device",
            metavar="DEVICE",
            help="Only agents on this device (repeatable: any of them).",
            show_default=False,
        ),
    ] = None,
    max_cost: Annotated[
        float | None,
        typer.Option(
            "--max-cost",
            metavar="COST",
            help="Only agents whose cost per call is at most this.",
            show_default=False,
        ),
    ] = None,
    max_latency: Annotated[
        float | None,
        typer.Option(
            "--max-latency",
            metavar="SECONDS",
            help="Only agents that typically answer within this.",
            show_default=False,
        ),
    ] = None,
    data: Annotated[
        list[str] | None,
        typer.Option(
            "--data",
            metavar="DATASET",
            help="A data set that must stay local: only agents that hold it (repeatable).",
            show_default=False,
        ),
    ] = None,
    skill: Annotated[
        str | None,
        typer.Option(
            "--skill",
            metavar="SKILL",
            help="Only agents that offer this skill.",
            show_default=False,
        ),
    ] = None,
    review: Annotated[
        bool,
        typer.Option(
            "--review",
            help="Have the configured model check the top candidates (pick one or refuse).",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the decision as JSON.")] = False,
    models_file: ModelsFile = None,
    data_dir: DataDir = None,
) -> None:
    """Show where a subtask would go, and why.

    Shows the ranked candidates with their scores, and the agents a hard constraint excluded
    with the reason. Exit 0 with the candidates, 1 when no agent can take the subtask (the
    reason says why), 2 for a mistake such as a --skill no agent offers.
    """
    from fleetmind.cli._build import build_fleet, save_router
    from fleetmind.cli._target import load_fleet
    from fleetmind.orchestrator import RouteReviewer, SemanticRouter, Subtask

    constraints: dict[str, object] = {}
    if tier:
        constraints["tier"] = tier
    if device:
        constraints["device"] = device[0] if len(device) == 1 else device
    if max_cost is not None:
        constraints["max_cost"] = max_cost
    if max_latency is not None:
        constraints["max_latency_s"] = max_latency
    if data:
        constraints["data"] = data
    loaded = load_fleet(fleet)
    if skill is not None and not any(a.profile.offers(skill) for a in loaded.agents):
        # A name nobody has is a typo more often than a question about routing.
        names = {n for a in loaded.agents for s in a.profile.skills for n in (s.name, *s.tags)}
        raise ConfigError(f"no agent of {fleet} offers skill {skill!r}{did_you_mean(skill, names)}")
    the_fleet = build_fleet(loaded.agents, loaded.router, data_dir, None)
    reviewer = None
    if review:
        if not isinstance(the_fleet.router, SemanticRouter):
            raise typer.BadParameter("--review needs semantic routing (the fleet's own router)")
        from fleetmind.agents import OpenAICompatibleClient

        config = load_models(models_file, data_dir)
        reviewer = RouteReviewer(OpenAICompatibleClient(config.endpoint(config.planner_tier())))
        the_fleet.router.reviewer = reviewer
    subtask = Subtask(id=_QUERY_ID, description=text, skill=skill, constraints=constraints)
    show_model_loads()
    try:
        decision = _decide(the_fleet, subtask, reviewer)
    except NoCapableAgent as exc:
        save_router(the_fleet)
        _print_refusal(exc, text, constraints, as_json)
        raise typer.Exit(1) from None
    save_router(the_fleet)
    if as_json:
        print(json.dumps(_decision_json(decision, text, constraints), indent=2))
        return
    _print_decision(decision)


def _decide(fleet: Fleet, subtask: Subtask, reviewer: RouteReviewer | None) -> RoutingDecision:
    if reviewer is None:
        return fleet.route(subtask)

    async def reviewed() -> RoutingDecision:
        try:
            return await fleet.aroute(subtask)
        finally:
            await reviewer.client.aclose()

    return asyncio.run(reviewed())


def _print_decision(decision: RoutingDecision) -> None:
    console = table_console()
    table = plain_table(
        "agent", "rank", "score", "similarity", "support", "via", "cost", "latency", "load"
    )
    scores = {s.agent_id: s for s in decision.scores}
    for rank, agent_id in enumerate(decision.candidates, start=1):
        s = scores.get(agent_id)
        if s is None:
            table.add_row(agent_id, str(rank), "", "", "", "", "", "", "")
            continue
        table.add_row(
            agent_id,
            str(rank),
            f"{s.score:.3f}",
            f"{s.similarity:.3f}",
            f"{s.support:.3f}",
            s.via,
            f"{s.cost:g}",
            f"{s.latency_s:g}s",
            f"{s.load:.0%}",
        )
    console.print(fit_table(table, console))
    review = decision.review
    if review:
        if review.get("failed"):
            console.print(f"review: {review['reason']}", style="yellow", highlight=False)
        else:
            console.print(
                f"review by {review['model']}: {review['agent']}: {review['reason']} "
                f"({review['tokens']} tokens, cost {review['cost']:g})",
                highlight=False,
            )
    if decision.excluded:
        excluded = plain_table("excluded agent", "why", title="hard constraints")
        for agent_id, why in decision.excluded.items():
            excluded.add_row(agent_id, why)
        console.print(fit_table(excluded, console))


def _print_refusal(
    exc: NoCapableAgent, text: str, constraints: dict[str, object], as_json: bool
) -> None:
    reason = str(exc.details.get("reason") or exc.message)
    if as_json:
        print(
            json.dumps(
                {
                    "subtask": text,
                    "constraints": constraints,
                    "candidates": [],
                    "refused": {
                        "reason": reason,
                        "nearest": exc.details.get("nearest") or {},
                        "excluded": exc.details.get("excluded") or {},
                        "review": exc.details.get("review"),
                    },
                },
                indent=2,
            )
        )
        return
    console = table_console(stderr=True)
    console.print(f"no capable agent: {reason}", style="red", highlight=False)
    excluded = exc.details.get("excluded") or {}
    if excluded:
        table = plain_table("excluded agent", "why", title="hard constraints")
        for agent_id, why in list(excluded.items())[:20]:
            table.add_row(agent_id, why)
        console.print(fit_table(table, console))


def _decision_json(
    decision: RoutingDecision, text: str, constraints: dict[str, object]
) -> dict[str, Any]:
    scores = {s.agent_id: s for s in decision.scores}
    candidates = []
    for rank, agent_id in enumerate(decision.candidates, start=1):
        entry: dict[str, Any] = {"agent": agent_id, "rank": rank}
        s = scores.get(agent_id)
        if s is not None:
            entry |= {
                "score": round(s.score, 4),
                "similarity": round(s.similarity, 4),
                "support": round(s.support, 4),
                "via": s.via,
                "cost": s.cost,
                "latency_s": s.latency_s,
                "load": s.load,
                "success_rate": round(s.success_rate, 4),
            }
        candidates.append(entry)
    return {
        "subtask": text,
        "constraints": constraints,
        "candidates": candidates,
        "excluded": decision.excluded,
        "review": decision.review,
        "refused": None,
    }
