// Small text helpers shared by the panels: durations, times, HTML escaping.

/** "850 ms", "12.3 s", "4 min 05 s". */
export function formatDuration(seconds) {
  if (seconds == null || Number.isNaN(seconds)) return "";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const minutes = Math.floor(seconds / 60);
  return `${minutes} min ${String(Math.round(seconds % 60)).padStart(2, "0")} s`;
}

/** How long ago an ISO time or epoch seconds was, in words ("just now", "3 min ago"). */
export function formatAgo(when, now = Date.now()) {
  const at = toMillis(when);
  if (at == null) return "never";
  const seconds = Math.max(0, (now - at) / 1000);
  if (seconds < 5) return "just now";
  if (seconds < 60) return `${Math.round(seconds)} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  return new Date(at).toLocaleDateString();
}

/** A short local time of day, for task rows and event lines. */
export function formatClock(when) {
  const at = toMillis(when);
  return at == null ? "" : new Date(at).toLocaleTimeString([], { hour12: false });
}

/** Milliseconds since the epoch from an ISO string or epoch seconds (null when unknown). */
export function toMillis(when) {
  if (when == null || when === "") return null;
  if (typeof when === "number") return when * 1000;
  const at = Date.parse(when);
  return Number.isNaN(at) ? null : at;
}

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

/** Text made safe to put inside HTML. */
export function escapeHtml(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ESCAPES[c]);
}
