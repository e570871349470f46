// The open task's graph, drawn with cytoscape and updated in place as the task changes.
//
// Status changes only restyle nodes; a change of structure (subtasks or edges added or removed,
// a fan-out expanded) sends the drawn graph to the layout worker and applies the positions it
// answers with. Folded subtasks stay in the model (hidden) so that every status can be read.

import cytoscape from "cytoscape";
import { collapseView } from "./collapse.js";
import { tooltipHtml } from "./tooltip.js";
import { formatDuration } from "./format.js";

const NODE_W = 150;
const NODE_H = 46;
const FIT_PADDING = 30;
const MIN_FIT_ZOOM = 0.35;
const MAX_FIT_ZOOM = 1.2;

const STYLE = [
  {
    selector: "node",
    style: {
      shape: "round-rectangle",
      width: NODE_W,
      height: NODE_H,
      label: "data(label)",
      "text-wrap": "wrap",
      "text-max-width": NODE_W - 12,
      "text-valign": "center",
      "font-size": 11,
      "min-zoomed-font-size": 7,
      "font-family": "system-ui, sans-serif",
      color: "#fff",
      "background-color": "#8a9099",
      "border-width": 0,
    },
  },
  { selector: 'node[status = "running"]', style: { "background-color": "#1a73e8" } },
  { selector: 'node[status = "done"]', style: { "background-color": "#188038" } },
  { selector: 'node[status = "failed"]', style: { "background-color": "#d93025" } },
  {
    selector: 'node[status = "skipped"], node[status = "cancelled"]',
    style: { "background-color": "#eceff1", color: "#6b7178", "border-width": 1, "border-color": "#c4c8cc" },
  },
  {
    selector: 'node[kind = "more"]',
    style: { "border-width": 2, "border-style": "dashed", "border-color": "#3c4043" },
  },
  { selector: "node.folded, node.unplaced", style: { display: "none" } },
  { selector: "node:selected", style: { "overlay-opacity": 0.15 } },
  {
    selector: "edge",
    style: {
      width: 1.5,
      "curve-style": "straight",
      "line-color": "#b0b6bd",
      "target-arrow-color": "#b0b6bd",
      "target-arrow-shape": "triangle",
      "arrow-scale": 0.8,
    },
  },
];

export class GraphView {
  /**
   * @param {HTMLElement} container where cytoscape draws
   * @param {HTMLElement} tooltip the hover box
   * @param {string} workerUrl the layout worker's script
   */
  constructor(container, tooltip, workerUrl) {
    this.container = container;
    this.tooltip = tooltip;
    this.cy = cytoscape({
      container,
      style: STYLE,
      wheelSensitivity: 0.3,
      minZoom: 0.05,
      maxZoom: 3,
      textureOnViewport: true,
      hideEdgesOnViewport: true,
    });
    this.taskId = null;
    this.task = null;
    this.expanded = new Set();
    this.structure = "";
    this.view = null;
    this.hovered = null;
    this.fitPending = false;
    this.layoutSeq = 0;
    this.stats = { layouts: 0, lastRenderMs: null, lastWorkerMs: null, lastApplyMs: null, lastNodes: 0 };
    this.worker = new Worker(workerUrl);
    this.worker.onmessage = (message) => this.applyLayout(message.data);
    this.cy.on("tap", `node[kind = "more"]`, (event) => this.expand(event.target.data("foldedUnder")));
    this.cy.on("mouseover", "node", (event) => this.showTooltip(event.target));
    this.cy.on("mouseout", "node", () => this.hideTooltip());
    this.cy.on("viewport", () => this.hideTooltip());
  }

  /** Draw another task (or nothing, with null). */
  open(taskId) {
    if (taskId === this.taskId) return;
    this.taskId = taskId;
    this.task = null;
    this.expanded.clear();
    this.structure = "";
    this.cy.elements().remove();
    this.hideTooltip();
  }

  /** Bring the drawing up to `task` (the /api/tasks/{id} answer), keeping what did not change. */
  update(task) {
    if (task.id !== this.taskId) return;
    if (this.task && task.version < this.task.version) return;
    this.task = task;
    this.render();
  }

  /** Open a folded fan-out (the "+N more" node's parent). */
  expand(parentId) {
    this.expanded.add(parentId);
    this.hideTooltip();
    if (this.task) this.render();
  }

  /** Every subtask in the model, folded or not: for tests and for the page's own counts. */
  graphNodes() {
    return this.cy.nodes('[kind = "subtask"]').map((node) => ({
      id: node.id(),
      status: node.data("status"),
      agent: node.data("agent"),
      visible: !node.hasClass("folded"),
    }));
  }

  /** Where each drawn node is, in model coordinates: `{id: {x, y}}`. */
  positions() {
    const out = {};
    this.cy.nodes(":visible").forEach((node) => (out[node.id()] = { ...node.position() }));
    return out;
  }

  render() {
    const { subtasks, edges } = this.task;
    const view = collapseView(subtasks, edges, this.expanded);
    this.view = view;
    const wanted = new Map();
    for (const subtask of subtasks) {
      wanted.set(subtask.id, {
        data: { id: subtask.id, kind: "subtask", status: subtask.status, agent: subtask.agent ?? null, label: nodeLabel(subtask) },
        folded: view.hiddenBy.has(subtask.id),
      });
    }
    const byId = new Map(subtasks.map((s) => [s.id, s]));
    for (const [id, group] of view.groups) {
      const statuses = group.members.map((m) => byId.get(m).status);
      wanted.set(id, {
        data: { id, kind: "more", foldedUnder: group.parent, status: groupStatus(statuses), label: groupLabel(statuses) },
        folded: false,
      });
    }
    const wantedEdges = new Map(view.edges.map((e) => [edgeId(e), e]));
    const started = performance.now();
    const cy = this.cy;
    const added = [];
    cy.batch(() => {
      cy.edges().forEach((edge) => {
        if (!wantedEdges.has(edge.id())) edge.remove();
      });
      cy.nodes().forEach((node) => {
        if (!wanted.has(node.id())) node.remove();
      });
      for (const [id, want] of wanted) {
        const node = cy.getElementById(id);
        if (node.empty()) {
          // Drawn only once the layout has placed it (see applyLayout).
          added.push({ group: "nodes", data: want.data, classes: want.folded ? "folded" : "unplaced" });
          continue;
        }
        const data = node.data();
        if (data.status !== want.data.status || data.label !== want.data.label || data.agent !== want.data.agent) {
          node.data(want.data);
        }
        node.toggleClass("folded", want.folded);
      }
      cy.add(added);
      const edges = [];
      for (const [id, edge] of wantedEdges) {
        if (cy.getElementById(id).empty()) edges.push({ group: "edges", data: { id, ...edge } });
      }
      cy.add(edges);
    });
    this.stats.lastRenderMs = performance.now() - started;
    const visible = [...wanted].filter(([, want]) => !want.folded).map(([id]) => id);
    const structure = visible.sort().join("\n") + "\u0001" + [...wantedEdges.keys()].sort().join("\n");
    if (structure !== this.structure) {
      this.fitPending ||= this.structure === "";
      this.structure = structure;
      this.requestLayout(visible, view.edges);
    }
    if (this.hovered) this.showTooltip(this.hovered);
  }

  requestLayout(visible, edges) {
    this.layoutSeq += 1;
    const nodes = visible.map((id) => ({ id, w: NODE_W, h: NODE_H }));
    this.worker.postMessage({ seq: this.layoutSeq, nodes, edges });
  }

  applyLayout({ seq, positions, ms }) {
    if (seq !== this.layoutSeq) return;
    const started = performance.now();
    const cy = this.cy;
    cy.batch(() => {
      const placed = cy.nodes().filter((node) => positions[node.id()] !== undefined);
      placed.positions((node) => positions[node.id()]);
      placed.removeClass("unplaced");
    });
    if (this.fitPending) {
      this.fit(Object.values(positions));
      this.fitPending = false;
    }
    this.stats.layouts += 1;
    this.stats.lastWorkerMs = ms;
    this.stats.lastApplyMs = performance.now() - started;
    this.stats.lastNodes = Object.keys(positions).length;
    this.container.dataset.layouts = String(this.stats.layouts);
  }

  /** Show the whole graph, or its start when it is too big to read whole. Computed from the
   * positions rather than with cy.fit(), which would measure every label. */
  fit(points) {
    if (!points.length) return;
    const xs = points.map((p) => p.x);
    const ys = points.map((p) => p.y);
    const x1 = Math.min(...xs) - NODE_W / 2;
    const x2 = Math.max(...xs) + NODE_W / 2;
    const y1 = Math.min(...ys) - NODE_H / 2;
    const y2 = Math.max(...ys) + NODE_H / 2;
    const width = this.cy.width();
    const height = this.cy.height();
    const fitted = Math.min((width - 2 * FIT_PADDING) / (x2 - x1), (height - 2 * FIT_PADDING) / (y2 - y1));
    const zoom = Math.max(MIN_FIT_ZOOM, Math.min(MAX_FIT_ZOOM, fitted));
    const left = zoom === fitted || zoom === MAX_FIT_ZOOM ? (width - (x2 - x1) * zoom) / 2 : FIT_PADDING;
    this.cy.viewport({ zoom, pan: { x: left - x1 * zoom, y: height / 2 - ((y1 + y2) / 2) * zoom } });
  }

  showTooltip(node) {
    this.hovered = node;
    const data = node.data();
    let html;
    if (data.kind === "more") {
      const group = this.view?.groups.get(data.id);
      html = tooltipHtml.folded(group ? group.members.length : 0, data.label);
    } else {
      const subtask = this.task?.subtasks.find((s) => s.id === data.id);
      if (!subtask) return;
      html = tooltipHtml.subtask(subtask);
    }
    this.tooltip.innerHTML = html;
    const at = node.renderedPosition();
    const box = this.container.getBoundingClientRect();
    const left = Math.min(at.x + 20, box.width - 340);
    this.tooltip.style.left = `${Math.max(4, left)}px`;
    this.tooltip.style.top = `${Math.max(4, at.y + 20)}px`;
    this.tooltip.hidden = false;
  }

  hideTooltip() {
    this.hovered = null;
    this.tooltip.hidden = true;
  }
}

function edgeId(edge) {
  return `${edge.source}\u2192${edge.target}`;
}

function nodeLabel(subtask) {
  const parts = [subtask.agent ?? "—"];
  if (subtask.duration_s != null) parts.push(formatDuration(subtask.duration_s));
  return `${subtask.id}\n${parts.join(" · ")}`;
}

function groupStatus(statuses) {
  if (statuses.includes("failed")) return "failed";
  if (statuses.includes("running")) return "running";
  if (statuses.length && statuses.every((s) => s === "done")) return "done";
  if (statuses.length && statuses.every((s) => s === "skipped" || s === "cancelled")) return "skipped";
  return "pending";
}

function groupLabel(statuses) {
  const done = statuses.filter((s) => s === "done").length;
  return `+${statuses.length} more\n${done} done · click to expand`;
}
