// One line of text for each server-sent event, for the page's event stream.

import { formatDuration } from "./format.js";

/** What a task event (the engine's TaskEvent as a dict) says, in a few words. */
export function describeTaskEvent(event) {
  const who = event.subtask_id ?? "";
  const error = event.error?.message ?? "";
  switch (event.kind) {
    case "subtask_ready":
      return `${who} ready`;
    case "subtask_routed": {
      const best = event.candidates?.[0]?.agent_id ?? "nobody";
      return `${who} routed, best candidate ${best}`;
    }
    case "subtask_started":
      return `${who} started on ${event.agent}`;
    case "subtask_progress":
      return `${who}: ${event.message ?? ""}${event.fraction != null ? ` (${Math.round(event.fraction * 100)}%)` : ""}`;
    case "subtask_artifact":
      return `${who}: ${event.last ? "last " : ""}chunk of ${event.name ?? event.artifact_id}`;
    case "subtask_retried":
      return `${who} retry ${event.attempt} on ${event.agent}: ${error}`;
    case "subtask_reassigned":
      return `${who} taken from ${event.agent}: ${error}`;
    case "subtask_done":
      return `${who} done${event.duration_s != null ? ` in ${formatDuration(event.duration_s)}` : ""}`;
    case "subtask_failed":
      return `${who} failed: ${error}`;
    case "subtask_skipped":
      return `${who} skipped: ${event.reason ?? ""}`;
    case "subtask_cancelled":
      return `${who} cancelled: ${event.reason ?? ""}`;
    case "subtask_replanned":
      return `${who} replanned (${event.outcome}): ${event.reason ?? ""}`;
    case "graph_edited":
      return `graph edited${event.by ? ` by ${event.by}` : ""}`;
    case "task_resumed":
      return "task resumed";
    case "task_finished":
      return `task ${event.status}`;
    default:
      return event.kind ?? "event";
  }
}

/** The line for one SSE message: `[kind, text]`. */
export function describeMessage(type, data) {
  const task = data.task_id ? `${String(data.task_id).slice(0, 8)} ` : "";
  if (type === "graph") return ["graph", task + describeTaskEvent(data.event ?? {})];
  if (type === "task") return ["task", `${task}is ${data.status}`];
  if (type === "device") return ["device", `${data.id} ${data.online ? "online" : "offline"}`];
  return [type, JSON.stringify(data)];
}
