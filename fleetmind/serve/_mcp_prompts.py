"""The MCP server's prompts: help for a host's model to write a task graph for this fleet.

``plan_task`` takes a goal and gives a message that lists the fleet's agents and their skills,
explains the task graph format ``submit_task`` accepts, and asks for a graph that reaches the
goal. A host shows it to its user, or hands it to its model before calling ``submit_task``.
"""

from __future__ import annotations

from typing import Annotated

from mcp.server import MCPServer
from pydantic import Field

from fleetmind.agents import AgentProfile
from fleetmind.orchestrator import Fleet

PLAN_PROMPT = "plan_task"

GRAPH_FORMAT = """\
A task graph is a JSON object:
{"name": "...",
 "subtasks": [{"id": "a", "description": "...", "skill": "...", "agent": "...",
               "inputs": {...}, "timeout_s": 30}, ...],
 "dependencies": [{"source": "a", "target": "b"},
                  {"source": "a", "target": "c", "kind": "data", "input": "text",
                   "output": "field"}]}
A subtask goes to its `agent` when given, else to an agent offering its `skill`, else to the
agent whose description fits it best. A control dependency makes the target wait for the
source; a data dependency also feeds the source's output (or its field `output`) to the
target's input named `input`. An optional `condition` on a dependency (success, the default,
always, or failure) says which outcome of the source lets the target run."""


def _agent_lines(profiles: list[AgentProfile]) -> str:
    lines = []
    for profile in sorted(profiles, key=lambda p: p.id):
        skills = ", ".join(s.name for s in profile.skills) or "no named skills"
        lines.append(
            f"- {profile.id} ({profile.tier.value}): {profile.description} Skills: {skills}."
        )
    return "\n".join(lines) or "- (the fleet has no agents)"


def plan_text(fleet: Fleet, goal: str) -> str:
    """The text of the ``plan_task`` prompt for ``goal``."""
    return (
        "Write a task graph for the fleet of agents below that reaches this goal:\n\n"
        f"{goal.strip()}\n\n"
        f"The fleet's agents:\n{_agent_lines(list(fleet.profiles))}\n\n"
        f"{GRAPH_FORMAT}\n\n"
        "Use only these agents and their skills, give every subtask the inputs its agent "
        "needs, and let subtasks that do not depend on each other run side by side. Answer "
        "with the graph as JSON; it can be passed as `graph` to the submit_task tool."
    )


def add_prompts(server: MCPServer, fleet: Fleet) -> None:
    """Register the fleet's prompts on ``server``."""

    @server.prompt(
        name=PLAN_PROMPT,
        title="Plan a task for this fleet",
        description=(
            "A message asking a model to write a task graph for this fleet's agents that "
            "reaches a goal, ready to pass to submit_task."
        ),
    )
    def plan_task(
        goal: Annotated[str, Field(description="What the task should achieve, in plain words.")],
    ) -> str:
        return plan_text(fleet, goal)
