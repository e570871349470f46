// The layout's web worker: positions are computed here so that the page never freezes.
import { layeredLayout } from "./layered.js";

self.onmessage = (message) => {
  const { seq, nodes, edges } = message.data;
  const started = performance.now();
  const positions = layeredLayout(nodes, edges);
  self.postMessage({ seq, positions, ms: performance.now() - started });
};
