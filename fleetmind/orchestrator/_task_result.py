"""How a task ended: its status, every subtask's output, and every error."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fleetmind._task_model import SubtaskStatus
from fleetmind.errors import GraphError
from fleetmind.orchestrator._graph import TaskGraph


@dataclass(frozen=True)
class TaskResult:
    """How a task ended: its status, every subtask's output, and every error."""

    task_id: str
    status: str
    outputs: dict[str, Any]
    errors: dict[str, dict[str, Any]]
    graph: TaskGraph

    @property
    def ok(self) -> bool:
        """Whether the task finished with no failed subtask."""
        return self.status == "done"

    @property
    def output(self) -> Any:
        """The output of the task's one final subtask (the one no other subtask depends on).

        Raises:
            GraphError: the task has several final subtasks; use ``outputs[id]``.
        """
        sinks = [s.id for s in self.graph if not self.graph.dependents_of(s.id)]
        if len(sinks) != 1:
            raise GraphError(
                f"task has {len(sinks)} final subtasks ({', '.join(sinks)}); use outputs[id]"
            )
        return self.outputs.get(sinks[0])

    @classmethod
    def of(cls, task_id: str, graph: TaskGraph) -> TaskResult:
        """The result as the graph stands."""
        outputs, errors = {}, {}
        for subtask in graph:
            state = graph.state(subtask.id)
            if state.status is SubtaskStatus.DONE:
                outputs[subtask.id] = state.output
            elif state.status is SubtaskStatus.FAILED and state.error:
                errors[subtask.id] = state.error
        return cls(task_id, graph.status, outputs, errors, graph)
