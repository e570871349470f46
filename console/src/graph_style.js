// How the graph looks: status colours (shared with the page's badges) and the cytoscape style.
//
// Colours are data on each node rather than one selector per status: at a thousand nodes every
// selector costs a match per element whenever styles are computed.

export const NODE_W = 150;
export const NODE_H = 46;

/** Big graphs draw edges as "haystack" lines (no arrows): far cheaper to compute and draw. */
export const BIG_GRAPH = 300;

const LOOK = {
  pending: { fill: "#8a9099", ink: "#ffffff", line: "#8a9099" },
  ready: { fill: "#8a9099", ink: "#ffffff", line: "#8a9099" },
  running: { fill: "#1a73e8", ink: "#ffffff", line: "#1a73e8" },
  done: { fill: "#188038", ink: "#ffffff", line: "#188038" },
  failed: { fill: "#d93025", ink: "#ffffff", line: "#d93025" },
  skipped: { fill: "#eceff1", ink: "#6b7178", line: "#c4c8cc" },
  cancelled: { fill: "#eceff1", ink: "#6b7178", line: "#c4c8cc" },
};

/** The colours of a node in `status` (an unknown status looks pending). */
export function lookOf(status) {
  return LOOK[status] ?? LOOK.pending;
}

export const STYLE = [
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
      "min-zoomed-font-size": 6,
      "font-family": "system-ui, sans-serif",
      color: "data(ink)",
      "background-color": "data(fill)",
      "border-color": "data(line)",
      "border-width": 1,
    },
  },
  {
    selector: 'node[kind = "more"]',
    style: { "border-width": 2, "border-style": "dashed", "border-color": "#3c4043" },
  },
  { selector: "node.folded", style: { display: "none" } },
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
  {
    selector: "edge[?fast]",
    style: { "curve-style": "haystack", "haystack-radius": 0, "target-arrow-shape": "none", width: 1 },
  },
];
