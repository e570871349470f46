// A layered left-to-right layout for task graphs (a small Sugiyama-style layout).
//
// Layers come from the longest path from the sources, the order inside a layer from barycenter
// sweeps (fewer crossings), and each node's vertical place from its neighbours' places. It is
// a pure function of plain data so that it can run in a web worker and stay off the page's
// main thread at a thousand subtasks.

const LAYER_GAP = 70;
const NODE_GAP = 14;
const SWEEPS = 6;
/** A layer of more nodes than this is drawn as several columns, so that an opened fan-out of
 * hundreds is a block rather than one column too tall to see whole. */
const WRAP_AT = 40;

/**
 * Place the nodes of a directed graph in layers from left to right.
 * @param {{id: string, w: number, h: number}[]} nodes
 * @param {{source: string, target: string}[]} edges
 * @returns {Record<string, {x: number, y: number}>} the centre of every node
 */
export function layeredLayout(nodes, edges) {
  const index = new Map(nodes.map((node, i) => [node.id, i]));
  const parents = nodes.map(() => []);
  const children = nodes.map(() => []);
  for (const edge of edges) {
    const s = index.get(edge.source);
    const t = index.get(edge.target);
    if (s === undefined || t === undefined || s === t) continue;
    children[s].push(t);
    parents[t].push(s);
  }
  const layerOf = assignLayers(nodes.length, parents, children);
  const layers = [];
  layerOf.forEach((layer, i) => {
    while (layers.length <= layer) layers.push([]);
    layers[layer].push(i);
  });
  orderLayers(layers, parents, children, nodes.length);
  const y = placeVertically(layers, parents, children, nodes);
  const positions = {};
  let x = 0;
  for (const layer of layers) {
    const width = Math.max(...layer.map((i) => nodes[i].w));
    const columns = Math.ceil(layer.length / WRAP_AT);
    const rows = Math.ceil(layer.length / columns);
    layer.forEach((i, k) => {
      const column = Math.floor(k / rows); // a wrapped layer's columns (see stack)
      positions[nodes[i].id] = { x: x + column * (width + NODE_GAP) + width / 2, y: y[i] };
    });
    x += columns * width + (columns - 1) * NODE_GAP + LAYER_GAP;
  }
  return positions;
}

/** Longest path from the sources (Kahn's order); nodes on a cycle go after the rest. */
function assignLayers(count, parents, children) {
  const layerOf = new Array(count).fill(0);
  const waiting = parents.map((list) => list.length);
  const queue = [];
  for (let i = 0; i < count; i++) if (waiting[i] === 0) queue.push(i);
  let seen = 0;
  for (let head = 0; head < queue.length; head++) {
    const i = queue[head];
    seen++;
    for (const c of children[i]) {
      layerOf[c] = Math.max(layerOf[c], layerOf[i] + 1);
      if (--waiting[c] === 0) queue.push(c);
    }
  }
  if (seen < count) {
    const last = Math.max(0, ...queue.map((i) => layerOf[i])) + 1;
    for (let i = 0; i < count; i++) if (waiting[i] > 0) layerOf[i] = last;
  }
  return layerOf;
}

/** Barycenter sweeps, down then up: each node moves toward the mean rank of its neighbours. */
function orderLayers(layers, parents, children, count) {
  const rank = new Float64Array(count);
  for (const layer of layers) layer.forEach((i, r) => (rank[i] = r));
  const sortBy = (layer, neighbours) => {
    const key = new Map();
    for (const i of layer) {
      const list = neighbours[i];
      if (list.length === 0) key.set(i, rank[i]);
      else key.set(i, list.reduce((sum, n) => sum + rank[n], 0) / list.length);
    }
    layer.sort((a, b) => key.get(a) - key.get(b) || rank[a] - rank[b]);
    layer.forEach((i, r) => (rank[i] = r));
  };
  for (let sweep = 0; sweep < SWEEPS; sweep++) {
    if (sweep % 2 === 0) for (let l = 1; l < layers.length; l++) sortBy(layers[l], parents);
    else for (let l = layers.length - 2; l >= 0; l--) sortBy(layers[l], children);
  }
}

/** Stack each layer in its order, pulled toward its parents' (then children's) heights. */
function placeVertically(layers, parents, children, nodes) {
  const y = new Float64Array(nodes.length);
  for (const layer of layers) stack(layer, nodes, y, null);
  const pass = (order, neighbours) => {
    for (const l of order) {
      const layer = layers[l];
      const wanted = layer.map((i) => {
        const list = neighbours[i];
        return list.length ? list.reduce((sum, n) => sum + y[n], 0) / list.length : y[i];
      });
      stack(layer, nodes, y, wanted);
    }
  };
  const down = layers.map((_, l) => l).slice(1);
  pass(down, parents);
  pass([...down].reverse().map((l) => l - 1), children);
  pass(down, parents);
  return y;
}

/** Place a layer's nodes top to bottom without overlap, as close to `wanted` as it allows.
 * A layer too tall to read (an opened fan-out of hundreds) is wrapped into columns of rows,
 * centred where its nodes want to be; the caller puts each column beside the last. */
function stack(layer, nodes, y, wanted) {
  if (layer.length > WRAP_AT) {
    const columns = Math.ceil(layer.length / WRAP_AT);
    const rows = Math.ceil(layer.length / columns);
    const height = Math.max(...layer.map((i) => nodes[i].h)) + NODE_GAP;
    const middle = wanted ? wanted.reduce((sum, w) => sum + w, 0) / wanted.length : 0;
    layer.forEach((i, k) => (y[i] = middle + ((k % rows) - (rows - 1) / 2) * height));
    return;
  }
  let bottom = -Infinity;
  const placed = layer.map((i, k) => {
    const half = nodes[i].h / 2;
    const want = wanted ? wanted[k] : bottom === -Infinity ? 0 : bottom + NODE_GAP + half;
    const centre = Math.max(want, bottom + NODE_GAP + half);
    bottom = centre + half;
    return centre;
  });
  let shift = 0;
  if (wanted) shift = wanted.reduce((sum, w, k) => sum + w - placed[k], 0) / layer.length;
  else shift = -(placed[0] + placed[placed.length - 1]) / 2;
  layer.forEach((i, k) => (y[i] = placed[k] + shift));
}
