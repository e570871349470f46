// The page's lists: tasks (left), devices with their agents, and the live event stream.

import { escapeHtml, formatAgo, formatClock } from "./format.js";

const EVENT_LINES = 200;

/** One line of counts for a task row: "7/10 done · 1 failed". */
function countsText(counts) {
  if (!counts) return "";
  const total = Object.values(counts).reduce((sum, n) => sum + n, 0);
  const parts = [`${counts.done ?? 0}/${total} done`];
  for (const status of ["running", "failed"]) if (counts[status]) parts.push(`${counts[status]} ${status}`);
  return parts.join(" · ");
}

/** Redraw the task list; `openId` is highlighted. */
export function renderTasks(list, tasks, openId) {
  if (!tasks.length) {
    list.innerHTML = `<div class="empty">no tasks yet</div>`;
    return;
  }
  list.innerHTML = tasks
    .map((task) => {
      const selected = task.id === openId ? " selected" : "";
      return `<div class="task-row${selected}" data-testid="task-row" data-task-id="${escapeHtml(task.id)}" data-status="${escapeHtml(task.status)}" tabindex="0">
  <div class="task-head"><span class="task-name">${escapeHtml(task.name || task.id)}</span><span class="badge status-${escapeHtml(task.status)}">${escapeHtml(task.status)}</span></div>
  <div class="task-meta"><span>${escapeHtml(countsText(task.counts))}</span><span>${escapeHtml(formatClock(task.updated_at ?? task.created_at))}</span></div>
</div>`;
    })
    .join("");
}

/** Redraw the devices panel: presence dot, last seen, and each device's agents. */
export function renderDevices(panel, devices) {
  if (!devices.length) {
    panel.innerHTML = `<div class="empty">no devices</div>`;
    return;
  }
  const sorted = [...devices].sort((a, b) => Number(b.online) - Number(a.online) || a.id.localeCompare(b.id));
  panel.innerHTML = sorted
    .map((device) => {
      const agents = (device.agents ?? [])
        .map((agent) => {
          const skills = (agent.skills ?? []).map(escapeHtml).join(", ");
          return `<li><span class="agent-id">${escapeHtml(agent.id)}</span>${skills ? ` <span class="skills">${skills}</span>` : ""}</li>`;
        })
        .join("");
      const seen = device.online ? "online" : `offline · last seen ${formatAgo(device.last_seen_at)}`;
      return `<div class="device-row" data-testid="device-row" data-device-id="${escapeHtml(device.id)}" data-online="${device.online ? "true" : "false"}">
  <div class="device-head"><span class="dot ${device.online ? "online" : "offline"}"></span><span class="device-id">${escapeHtml(device.id)}</span><span class="seen" data-seen="${escapeHtml(device.last_seen_at ?? "")}">${escapeHtml(seen)}</span></div>
  ${agents ? `<ul class="agents">${agents}</ul>` : ""}
</div>`;
    })
    .join("");
}

/** The live event stream: the newest line at the bottom, at most EVENT_LINES kept. Lines are
 * written once per frame: a busy task sends thousands of events a second, and laying the
 * panel out after each one would hold the page. */
export class EventLog {
  constructor(panel) {
    this.panel = panel;
    this.waiting = [];
    this.scheduled = false;
  }

  add(kind, text) {
    this.waiting.push({ kind, text, at: Date.now() / 1000 });
    if (this.waiting.length > EVENT_LINES) this.waiting.splice(0, this.waiting.length - EVENT_LINES);
    if (!this.scheduled) {
      this.scheduled = true;
      requestAnimationFrame(() => this.flush());
    }
  }

  flush() {
    this.scheduled = false;
    const panel = this.panel;
    const atBottom = panel.scrollHeight - panel.scrollTop - panel.clientHeight < 30;
    const lines = document.createDocumentFragment();
    for (const { kind, text, at } of this.waiting) {
      const line = document.createElement("div");
      line.className = `event event-${kind}`;
      line.dataset.kind = kind;
      const clock = document.createElement("span");
      clock.className = "clock";
      clock.textContent = formatClock(at);
      line.append(clock, document.createTextNode(` ${text}`));
      lines.append(line);
    }
    this.waiting = [];
    panel.append(lines);
    let extra = panel.childElementCount - EVENT_LINES;
    while (extra-- > 0) panel.firstElementChild.remove();
    if (atBottom) panel.scrollTop = panel.scrollHeight;
  }
}
