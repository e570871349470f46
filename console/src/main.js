// The fleet console page: wires the API, the live event stream and the panels together.
//
// Everything shown is re-fetched from the API; the event stream only says when to re-fetch (and
// feeds the event lines), so a reconnect after a server restart catches up by fetching again.

import { api, SESSION_LOST } from "./api.js";
import { describeMessage } from "./events.js";
import { GraphView } from "./graph.js";
import { EventLog, renderDevices, renderTasks } from "./panels.js";

const GRAPH_DELAY_MS = 200;
const TASKS_DELAY_MS = 500;
const RECONNECT_MAX_MS = 10_000;
// A running task may be one that no live process drives any more (its process crashed): the
// server decides, and its refusal (a 409 line) shows in the error line.
const CANCELLABLE = new Set(["running", "pending"]);
const RESUMABLE = new Set(["interrupted", "running"]);

const $ = (id) => document.querySelector(`[data-testid="${id}"]`);

const state = {
  info: null,
  tasks: [],
  devices: [],
  openId: null,
  openStatus: null,
};

const scriptUrl = document.currentScript.src;
const graph = new GraphView($("graph"), $("tooltip"), new URL("layout_worker.js", scriptUrl).href);
const eventLog = new EventLog($("events"));

function showError(message) {
  const line = $("submit-error");
  line.textContent = message ?? "";
  line.hidden = !message;
}

/** Run an API call for a user's action; its error becomes the page's one error line. */
async function act(call) {
  try {
    const result = await call();
    showError(null);
    return result;
  } catch (error) {
    showError(error.message);
    return null;
  }
}

/** Run `fn` once, `ms` after the first of a burst of calls. Unlike a debounce, a steady
 * stream of events (a busy task) cannot postpone it forever. */
function coalesce(fn, ms) {
  let timer = null;
  return () => {
    if (timer !== null) return;
    timer = setTimeout(() => {
      timer = null;
      fn();
    }, ms);
  };
}

// ---- tasks and the open graph ----

let tasksAsked = 0;

async function refreshTasks() {
  const asked = ++tasksAsked;
  try {
    const { tasks } = await api("api/tasks?limit=100");
    if (asked !== tasksAsked) return; // a later answer is on its way
    state.tasks = tasks;
    renderTasks($("task-list"), tasks, state.openId);
    const open = tasks.find((t) => t.id === state.openId);
    if (open && !state.openStatus) setOpenStatus(open.status);
  } catch (error) {
    showError(error.message);
  }
}

let graphFetching = false;
let graphAgain = false;

async function refreshGraph() {
  const id = state.openId;
  if (!id) return;
  if (graphFetching) {
    graphAgain = true;
    return;
  }
  graphFetching = true;
  try {
    const task = await api(`api/tasks/${encodeURIComponent(id)}`);
    if (id === state.openId) {
      graph.update(task);
      setOpenStatus(task.status);
    }
  } catch (error) {
    if (id === state.openId) showError(error.message);
  } finally {
    graphFetching = false;
    if (graphAgain) {
      graphAgain = false;
      refreshGraph();
    }
  }
}

const refreshGraphSoon = coalesce(refreshGraph, GRAPH_DELAY_MS);
const refreshTasksSoon = coalesce(refreshTasks, TASKS_DELAY_MS);

function openTask(id) {
  if (id === state.openId) return;
  state.openId = id;
  state.openStatus = state.tasks.find((t) => t.id === id)?.status ?? null;
  history.replaceState(null, "", id ? `#task=${encodeURIComponent(id)}` : location.pathname);
  $("open-task").textContent = id ?? "";
  $("graph-empty").hidden = Boolean(id);
  graph.open(id);
  renderTasks($("task-list"), state.tasks, id);
  updateButtons();
  refreshGraph();
}

function setOpenStatus(status) {
  state.openStatus = status;
  updateButtons();
}

function updateButtons() {
  const readOnly = state.info?.read_only ?? true;
  const status = state.openStatus;
  $("cancel-button").disabled = readOnly || !state.openId || !CANCELLABLE.has(status);
  $("resume-button").disabled = readOnly || !state.openId || !RESUMABLE.has(status);
}

// ---- devices ----

let devicesAsked = 0;

async function refreshDevices() {
  const asked = ++devicesAsked;
  try {
    const { devices } = await api("api/devices");
    if (asked !== devicesAsked) return;
    state.devices = devices;
    renderDevices($("devices"), devices);
  } catch (error) {
    showError(error.message);
  }
}

function onDevice(data) {
  const device = state.devices.find((d) => d.id === data.id);
  if (!device) {
    refreshDevices();
    return;
  }
  Object.assign(device, data);
  renderDevices($("devices"), state.devices);
}

// ---- the live event stream ----

let source = null;
let retryMs = 1000;

function setConnected(connected) {
  const badge = $("connection-status");
  const was = badge.dataset.state;
  if (connected && was !== "live") eventLog.add("connection", "following the fleet's events");
  if (!connected && was === "live") eventLog.add("connection", "event stream lost: reconnecting");
  badge.dataset.state = connected ? "live" : "reconnecting";
  badge.textContent = connected ? "live" : "reconnecting…";
}

function connect() {
  source = new EventSource("api/events");
  source.onopen = () => {
    retryMs = 1000;
    setConnected(true);
    refreshTasks();
    refreshDevices();
    refreshGraph();
  };
  source.onerror = () => {
    setConnected(false);
    if (source.readyState === EventSource.CLOSED) {
      // The browser gives up on an answer that is not a stream (a 401, or a 502 while the
      // server restarts). A session that is gone cannot come back: say so and stop; anything
      // else, try again ourselves, more slowly each time.
      reconnectUnlessSignedOut();
    }
  };
  for (const type of ["task", "graph", "device"]) {
    source.addEventListener(type, (message) => onMessage(type, message));
  }
}

async function reconnectUnlessSignedOut() {
  try {
    await api("api/info");
  } catch (error) {
    if (error.status === 401) {
      signedOut();
      return;
    }
  }
  setTimeout(connect, retryMs);
  retryMs = Math.min(retryMs * 2, RECONNECT_MAX_MS);
}

function signedOut() {
  const badge = $("connection-status");
  badge.dataset.state = "signed-out";
  badge.textContent = "signed out";
  eventLog.add("connection", SESSION_LOST);
  showError(SESSION_LOST);
}

function onMessage(type, message) {
  let data;
  try {
    data = JSON.parse(message.data);
  } catch {
    return;
  }
  const [kind, text] = describeMessage(type, data);
  eventLog.add(kind, text);
  if (type === "device") {
    onDevice(data);
    return;
  }
  const known = state.tasks.find((t) => t.id === data.task_id);
  if (type === "task" && known) {
    known.status = data.status;
    renderTasks($("task-list"), state.tasks, state.openId);
  }
  refreshTasksSoon();
  if (data.task_id === state.openId) {
    if (type === "task") setOpenStatus(data.status);
    refreshGraphSoon();
  }
}

// ---- the header: info, submit, cancel, resume ----

async function submit(body) {
  const answer = await act(() => api("api/tasks", { method: "POST", body }));
  if (answer?.id) {
    await refreshTasks();
    openTask(answer.id);
  }
}

function wireHeader() {
  const fileInput = $("submit-file");
  fileInput.addEventListener("change", async () => {
    const file = fileInput.files?.[0];
    if (!file) return;
    const content = await file.text();
    fileInput.value = "";
    await submit({ file_name: file.name, content });
  });
  $("submit-text-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const box = $("submit-text");
    const text = box.value.trim();
    if (!text) return;
    await submit({ text });
    if (!$("submit-error").textContent) box.value = "";
  });
  $("cancel-button").addEventListener("click", async () => {
    const id = state.openId;
    const answer = await act(() => api(`api/tasks/${encodeURIComponent(id)}/cancel`, { method: "POST" }));
    if (answer?.status && id === state.openId) setOpenStatus(answer.status);
    refreshTasksSoon();
    refreshGraphSoon();
  });
  $("resume-button").addEventListener("click", async () => {
    const id = state.openId;
    const answer = await act(() => api(`api/tasks/${encodeURIComponent(id)}/resume`, { method: "POST" }));
    if (answer?.id) {
      await refreshTasks();
      if (answer.id === state.openId) refreshGraph();
      else openTask(answer.id);
    }
  });
  $("task-list").addEventListener("click", (event) => {
    const row = event.target.closest("[data-task-id]");
    if (row) openTask(row.dataset.taskId);
  });
  $("task-list").addEventListener("keydown", (event) => {
    const row = event.target.closest("[data-task-id]");
    if (row && event.key === "Enter") openTask(row.dataset.taskId);
  });
}

async function loadInfo() {
  try {
    state.info = await api("api/info");
  } catch (error) {
    showError(error.message);
    return;
  }
  const info = state.info;
  $("fleet-name").textContent = info.fleet;
  $("mode").textContent = info.read_only ? `${info.mode} · read-only` : info.mode;
  $("version").textContent = info.version ? `v${info.version}` : "";
  $("submit-file").disabled = info.read_only;
  if (info.read_only) $("submit-file").parentElement.title = "this console only reads the store";
  $("submit-text-form").hidden = !info.can_plan || info.read_only;
  document.title = `${info.fleet} · fleetmind console`;
  updateButtons();
}

/** What end-to-end tests read: the graph lives on a canvas, so its model is exposed here. */
window.fleetmindConsole = {
  graphNodes: () => graph.graphNodes(),
  graphEdges: () => graph.cy.edges().map((e) => ({ source: e.data("source"), target: e.data("target") })),
  graphPositions: () => graph.positions(),
  nodeScreenPosition: (id) => graph.screenPosition(id),
  openTask: (id) => openTask(id),
  openTaskId: () => state.openId,
  expand: (parentId) => graph.expand(parentId),
  layoutStats: () => ({ ...graph.stats }),
  connected: () => $("connection-status").dataset.state === "live",
  signedOut: () => $("connection-status").dataset.state === "signed-out",
};

async function start() {
  wireHeader();
  setConnected(false);
  await loadInfo();
  const wanted = new URLSearchParams(location.hash.slice(1)).get("task");
  if (wanted) openTask(wanted);
  connect();
  setInterval(() => renderDevices($("devices"), state.devices), 15_000);
}

start();
