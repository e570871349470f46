// The open task's graph, drawn with cytoscape and updated in place as the task changes.
//
// Status changes only restyle nodes; a change of structure (subtasks or edges added or removed,
// a fan-out expanded) sends the drawn graph to the layout worker and applies the positions it
// answers with. Folded subtasks stay in the model (hidden) so that every status can be read.

import cytoscape from "cytoscape";
import { collapseView } from "./collapse.js";
import { layeredLayout } from "./layered.js";
import { tooltipHtml } from "./tooltip.js";
import { formatDuration } from "./format.js";
import { BIG_GRAPH, lookOf, NODE_H, NODE_W, STYLE } from "./graph_style.js";

const FIT_PADDING = 30;
const MIN_FIT_ZOOM = 0.35;
/** Below this many drawn nodes the first view keeps labels readable rather than fit all. */
const READABLE_BELOW = 100;
const READABLE_ZOOM = 0.65;
const MAX_FIT_ZOOM = 1.2;
const ADD_PER_FRAME = 150;
const ANIMATE_BELOW = 200;

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
    this.pending = { nodes: [], edges: [], reveal: [] };
    this.placedAt = {};
    this.hovered = null;
    this.fitPending = false;
    this.layoutSeq = 0;
    this.stats = { layouts: 0, lastRenderMs: null, lastWorkerMs: null, lastApplyMs: null, lastNodes: 0 };
    this.worker = startWorker(workerUrl, (message) => this.applyLayout(message.data));
    this.lastRequest = null;
    if (this.worker) {
      this.worker.onerror = () => {
        // The worker's script did not load: lay out on the page from now on.
        this.worker = null;
        if (this.lastRequest) this.layoutHere(this.lastRequest);
      };
    }
    this.cy.on("tap", `node[kind = "more"]`, (event) => this.expand(event.target.data("foldedUnder")));
    this.cy.on("tap", `node[kind = "subtask"]`, (event) => this.fold(event.target.id()));
    this.cy.on("mouseover", "node", (event) => this.showTooltip(event.target));
    this.cy.on("mouseout", "node", () => this.hideTooltip());
    this.cy.on("viewport", () => this.hideTooltip());
    // Once the user has panned or zoomed, the view is theirs; until then a graph that grows
    // (a live edit, an expanded fan-out) is refitted so that its new nodes are in view.
    this.userMoved = false;
    this.cy.on("tapstart", (event) => {
      if (event.target === this.cy) this.userMoved = true;
    });
    container.addEventListener("wheel", () => (this.userMoved = true), { passive: true });
  }

  /** Draw another task (or nothing, with null). */
  open(taskId) {
    if (taskId === this.taskId) return;
    this.taskId = taskId;
    this.task = null;
    this.expanded.clear();
    this.structure = "";
    this.pending = { nodes: [], edges: [], reveal: [] };
    this.layoutSeq += 1;
    this.userMoved = false;
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
    this.refit();
  }

  /** Fold an opened fan-out again (a click on its parent); other nodes ignore the click. */
  fold(parentId) {
    if (this.expanded.delete(parentId)) this.refit();
  }

  refit() {
    this.hideTooltip();
    this.fitPending = true;
    if (this.task) this.render();
  }

  /** Every subtask in the model, folded or not: for tests and for the page's own counts. */
  graphNodes() {
    const drawn = this.cy.nodes('[kind = "subtask"]').map((node) => ({
      id: node.id(),
      status: node.data("status"),
      agent: node.data("agent"),
      visible: !node.hasClass("folded"),
    }));
    const waiting = this.pending.nodes.filter((spec) => spec.data.kind === "subtask");
    return drawn.concat(waiting.map(({ data }) => ({ id: data.id, status: data.status, agent: data.agent, visible: true })));
  }

  /** Where each drawn node is, in model coordinates: `{id: {x, y}}`. */
  positions() {
    const out = {};
    this.cy.nodes(":visible").forEach((node) => (out[node.id()] = { ...node.position() }));
    return out;
  }

  /** Where a drawn node's centre is on the page (for pointing at it), or null. */
  screenPosition(id) {
    const node = this.cy.getElementById(id);
    if (node.empty() || !node.visible()) return null;
    const box = this.container.getBoundingClientRect();
    const at = node.renderedPosition();
    return { x: box.left + at.x, y: box.top + at.y };
  }

  render() {
    const started = performance.now();
    const { subtasks, edges } = this.task;
    const view = collapseView(subtasks, edges, this.expanded);
    this.view = view;
    const wanted = wantedNodes(subtasks, view);
    const fast = [...wanted.values()].filter((want) => !want.folded).length > BIG_GRAPH;
    const wantedEdges = new Map(view.edges.map((e) => [edgeId(e), { id: edgeId(e), ...e, fast }]));
    const cy = this.cy;
    const pending = { nodes: [], edges: [], reveal: [] };
    cy.batch(() => {
      cy.edges().forEach((edge) => {
        const want = wantedEdges.get(edge.id());
        if (!want) edge.remove();
        else if (edge.data("fast") !== fast) edge.data("fast", fast);
      });
      cy.nodes().forEach((node) => {
        if (!wanted.has(node.id())) node.remove();
      });
      const folded = [];
      for (const [id, want] of wanted) {
        const node = cy.getElementById(id);
        if (node.empty()) {
          // A new node is drawn once the layout has placed it (applyLayout); a folded one now.
          if (want.folded) folded.push({ group: "nodes", data: want.data, classes: "folded" });
          else pending.nodes.push({ group: "nodes", data: want.data });
          continue;
        }
        if (node.data("label") !== want.data.label || node.data("fill") !== want.data.fill) node.data(want.data);
        if (want.folded && !node.hasClass("folded")) node.addClass("folded");
        if (!want.folded && node.hasClass("folded")) pending.reveal.push(id);
      }
      cy.add(folded);
    });
    for (const [id, edge] of wantedEdges) {
      if (cy.getElementById(id).empty()) pending.edges.push({ group: "edges", data: edge });
    }
    this.pending = pending;
    this.stats.lastRenderMs = performance.now() - started;
    const visible = [...wanted].filter(([, want]) => !want.folded).map(([id]) => id);
    const structure = [...visible].sort().join("\n") + "\u0001" + [...wantedEdges.keys()].sort().join("\n");
    if (structure !== this.structure) {
      this.fitPending ||= this.structure === "" || !this.userMoved;
      this.structure = structure;
      this.requestLayout(visible, view.edges);
    }
    if (this.hovered) this.showTooltip(this.hovered);
  }

  requestLayout(visible, edges) {
    this.layoutSeq += 1;
    const nodes = visible.map((id) => ({ id, w: NODE_W, h: NODE_H }));
    const request = { seq: this.layoutSeq, nodes, edges };
    this.lastRequest = request;
    if (this.worker) this.worker.postMessage(request);
    else this.layoutHere(request);
  }

  /** Without a worker (blocked by the browser): lay out on the page, after the current event. */
  layoutHere(request) {
    setTimeout(() => {
      const started = performance.now();
      const positions = layeredLayout(request.nodes, request.edges);
      this.applyLayout({ seq: request.seq, positions, ms: performance.now() - started });
    }, 0);
  }

  /** Place every drawn node, then add the nodes and edges that waited for their places. */
  applyLayout({ seq, positions, ms }) {
    if (seq !== this.layoutSeq) return;
    const started = performance.now();
    const cy = this.cy;
    this.placedAt = positions;
    const reveal = this.pending.reveal;
    this.pending.reveal = [];
    const placed = cy.nodes().filter((node) => positions[node.id()] !== undefined);
    if (!this.fitPending && placed.length > 0 && placed.length < ANIMATE_BELOW) {
      // An edit to a small graph: its nodes glide to their new places, so the eye can follow.
      placed.layout({ name: "preset", positions: (node) => positions[node.id()], fit: false, animate: true, animationDuration: 250 }).run();
    } else {
      cy.batch(() => placed.positions((node) => positions[node.id()]));
    }
    cy.batch(() => {
      for (const id of reveal) cy.getElementById(id).removeClass("folded");
    });
    if (this.fitPending) {
      this.fit(Object.values(positions));
      this.fitPending = false;
    }
    this.stats.lastWorkerMs = ms;
    this.stats.lastNodes = Object.keys(positions).length;
    this.addPending(seq, started);
  }

  /** Add the waiting nodes a chunk per frame: a thousand at once would hold the page for
   * as long as cytoscape takes to style and draw them all. */
  addPending(seq, started) {
    if (seq !== this.layoutSeq) return;
    const cy = this.cy;
    const nodes = this.pending.nodes.splice(0, ADD_PER_FRAME);
    const last = this.pending.nodes.length === 0;
    cy.batch(() => {
      cy.add(nodes.map((spec) => ({ ...spec, position: this.placedAt[spec.data.id] ?? { x: 0, y: 0 } })));
      const ready = (spec) => cy.getElementById(spec.data.source).nonempty() && cy.getElementById(spec.data.target).nonempty();
      cy.add(this.pending.edges.filter(ready));
      this.pending.edges = last ? [] : this.pending.edges.filter((spec) => !ready(spec));
    });
    if (!last) {
      requestAnimationFrame(() => this.addPending(seq, started));
      return;
    }
    this.stats.layouts += 1;
    this.stats.lastApplyMs = performance.now() - started;
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
    const least = points.length < READABLE_BELOW ? READABLE_ZOOM : MIN_FIT_ZOOM;
    const zoom = Math.max(least, Math.min(MAX_FIT_ZOOM, fitted));
    const left = zoom === least && fitted < least ? FIT_PADDING : (width - (x2 - x1) * zoom) / 2;
    this.cy.viewport({ zoom, pan: { x: left - x1 * zoom, y: height / 2 - ((y1 + y2) / 2) * zoom } });
  }

  showTooltip(node) {
    this.hovered = node;
    const data = node.data();
    let html;
    if (data.kind === "more") {
      const group = this.view?.groups.get(data.id);
      const byId = new Map(this.task.subtasks.map((s) => [s.id, s.status]));
      html = tooltipHtml.folded(group ? group.members.map((id) => byId.get(id)) : []);
    } else {
      const subtask = this.task?.subtasks.find((s) => s.id === data.id);
      if (!subtask) return;
      html = tooltipHtml.subtask(subtask, this.expanded.has(subtask.id));
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

/** The layout worker, or null where the browser will not start one. */
function startWorker(url, onAnswer) {
  try {
    const worker = new Worker(url);
    worker.onmessage = onAnswer;
    return worker;
  } catch {
    return null;
  }
}

/** The nodes to draw: every subtask (folded ones hidden) and one node per folded fan-out. */
function wantedNodes(subtasks, view) {
  const wanted = new Map();
  for (const subtask of subtasks) {
    const data = { id: subtask.id, kind: "subtask", status: subtask.status, agent: subtask.agent ?? null, label: nodeLabel(subtask) };
    wanted.set(subtask.id, { data: { ...data, ...lookOf(subtask.status) }, folded: view.hiddenBy.has(subtask.id) });
  }
  const byId = new Map(subtasks.map((s) => [s.id, s]));
  for (const [id, group] of view.groups) {
    const statuses = group.members.map((m) => byId.get(m).status);
    const status = groupStatus(statuses);
    const data = { id, kind: "more", foldedUnder: group.parent, status, label: groupLabel(statuses) };
    wanted.set(id, { data: { ...data, ...lookOf(status) }, folded: false });
  }
  return wanted;
}

function edgeId(edge) {
  return `${edge.source}\u2192${edge.target}`;
}

function nodeLabel(subtask) {
  const parts = [subtask.agent ?? "—"];
  if (subtask.status === "running" && subtask.fraction != null) parts.push(`${Math.round(subtask.fraction * 100)}%`);
  else if (subtask.duration_s != null) parts.push(formatDuration(subtask.duration_s));
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
