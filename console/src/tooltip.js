// The hover box of a graph node: what a subtask is, who ran it, and why that agent and model.

import { escapeHtml, formatDuration } from "./format.js";

const MAX_CANDIDATES = 4;

function row(label, value) {
  if (value == null || value === "") return "";
  return `<div class="tip-row"><span class="tip-label">${escapeHtml(label)}</span><div>${value}</div></div>`;
}

/** The routing explanation: the ranked candidates and the excluded agents with the reasons. */
function routingHtml(routing) {
  if (routing == null) return "";
  if (typeof routing === "string") return escapeHtml(routing);
  const parts = [];
  for (const key of ["explanation", "reason", "via"]) {
    if (typeof routing[key] === "string") parts.push(escapeHtml(routing[key]));
  }
  if (Array.isArray(routing.candidates)) {
    const ranked = routing.candidates.slice(0, MAX_CANDIDATES).map((c) => {
      const score = typeof c.score === "number" ? ` ${c.score.toFixed(2)}` : "";
      const via = c.via ? ` (${escapeHtml(c.via)})` : "";
      return `${escapeHtml(c.agent_id ?? c.agent ?? "?")}${score}${via}`;
    });
    if (ranked.length) parts.push(`candidates: ${ranked.join(", ")}`);
  }
  if (routing.excluded && typeof routing.excluded === "object") {
    for (const [agent, why] of Object.entries(routing.excluded).slice(0, MAX_CANDIDATES)) {
      parts.push(`excluded ${escapeHtml(agent)}: ${escapeHtml(why)}`);
    }
  }
  if (!parts.length) parts.push(escapeHtml(JSON.stringify(routing)).slice(0, 300));
  return parts.map((p) => `<div>${p}</div>`).join("");
}

/** The step router's choices: one line per model call (tier, model, why). */
function stepsHtml(steps) {
  if (!Array.isArray(steps) || !steps.length) return "";
  return steps
    .slice(-6)
    .map((step) => {
      const head = [step.tier, step.model].filter(Boolean).map(escapeHtml).join(" · ");
      const why = step.reason ? ` — ${escapeHtml(step.reason)}` : "";
      return `<div>${head || "step"}${why}</div>`;
    })
    .join("");
}

/** The last progress a running subtask reported ("fetching page 3 (40%)"). */
function progressText(subtask) {
  if (!subtask.progress && subtask.fraction == null) return "";
  const share = subtask.fraction != null ? ` (${Math.round(subtask.fraction * 100)}%)` : "";
  return escapeHtml(`${subtask.progress ?? ""}${share}`.trim());
}

export const tooltipHtml = {
  subtask(subtask, unfolded = false) {
    const tries = `${subtask.attempts ?? 0} attempt(s), ${subtask.retries ?? 0} retr${subtask.retries === 1 ? "y" : "ies"}`;
    return [
      `<div class="tip-title">${escapeHtml(subtask.id)} <span class="badge status-${escapeHtml(subtask.status)}">${escapeHtml(subtask.status)}</span></div>`,
      subtask.description ? `<div class="tip-desc">${escapeHtml(subtask.description)}</div>` : "",
      row("agent", escapeHtml(subtask.agent ?? "—") + (subtask.skill ? ` <span class="tip-label">for skill</span> ${escapeHtml(subtask.skill)}` : "")),
      row("progress", progressText(subtask)),
      row("why", subtask.reason ? escapeHtml(subtask.reason) : ""),
      row("tries", tries),
      row("duration", escapeHtml(formatDuration(subtask.duration_s))),
      row("error", subtask.error ? escapeHtml(subtask.error) : ""),
      row("routing", routingHtml(subtask.routing)),
      row("steps", stepsHtml(subtask.steps)),
      unfolded ? `<div class="tip-label">click to fold its children again</div>` : "",
    ].join("");
  },
  /** A "+N more" node: how many subtasks it stands for, by status. */
  folded(statuses) {
    const counts = {};
    for (const status of statuses) counts[status] = (counts[status] ?? 0) + 1;
    const parts = Object.entries(counts).map(([status, n]) => `${n} ${escapeHtml(status)}`);
    return `<div class="tip-title">${statuses.length} subtasks folded</div><div>${parts.join(" · ")}</div><div class="tip-label">click to show them</div>`;
  },
};
