// What of a task graph is drawn: wide fan-outs fold into one "+N more" node.
//
// A node with more than `limit` children that have no other parent shows those children as one
// placeholder (until the user expands it); a node whose only parent is folded away folds into
// the same placeholder, so a fan-out of chains folds whole. Joins stay visible.

export const FAN_OUT_LIMIT = 20;
export const MORE_PREFIX = "+more/";

/**
 * Decide which subtasks fold into which placeholder and which edges are drawn.
 * @param {{id: string}[]} subtasks
 * @param {{source: string, target: string}[]} edges
 * @param {Set<string>} expanded parents whose fan-out the user opened
 * @returns {{hiddenBy: Map<string, string>, groups: Map<string, {parent: string, members: string[]}>,
 *            edges: {source: string, target: string}[]}}
 */
export function collapseView(subtasks, edges, expanded, limit = FAN_OUT_LIMIT) {
  const parents = new Map(subtasks.map((s) => [s.id, []]));
  const children = new Map(subtasks.map((s) => [s.id, []]));
  for (const edge of edges) {
    if (!parents.has(edge.target) || !children.has(edge.source)) continue;
    parents.get(edge.target).push(edge.source);
    children.get(edge.source).push(edge.target);
  }
  const hiddenBy = new Map();
  const groups = new Map();
  const foldedInto = new Map();
  for (const id of topologicalOrder(subtasks, parents, children)) {
    const mine = parents.get(id);
    if (foldedInto.has(id)) hiddenBy.set(id, foldedInto.get(id));
    else if (mine.length === 1 && hiddenBy.has(mine[0])) hiddenBy.set(id, hiddenBy.get(mine[0]));
    if (hiddenBy.has(id)) {
      groups.get(hiddenBy.get(id)).members.push(id);
      continue;
    }
    if (expanded.has(id)) continue;
    const only = children.get(id).filter((c) => parents.get(c).length === 1);
    if (only.length <= limit) continue;
    const placeholder = MORE_PREFIX + id;
    groups.set(placeholder, { parent: id, members: [] });
    for (const c of only) foldedInto.set(c, placeholder);
  }
  const drawn = new Map();
  for (const edge of edges) {
    if (!parents.has(edge.target) || !children.has(edge.source)) continue;
    const source = hiddenBy.get(edge.source) ?? edge.source;
    const target = hiddenBy.get(edge.target) ?? edge.target;
    if (source === target) continue;
    drawn.set(`${source}\u0000${target}`, { source, target });
  }
  return { hiddenBy, groups, edges: [...drawn.values()] };
}

/** Sources first; nodes on a cycle (which a valid graph never has) come last. */
function topologicalOrder(subtasks, parents, children) {
  const waiting = new Map(subtasks.map((s) => [s.id, parents.get(s.id).length]));
  const order = subtasks.filter((s) => waiting.get(s.id) === 0).map((s) => s.id);
  for (let head = 0; head < order.length; head++) {
    for (const c of children.get(order[head])) {
      waiting.set(c, waiting.get(c) - 1);
      if (waiting.get(c) === 0) order.push(c);
    }
  }
  if (order.length < subtasks.length) {
    const placed = new Set(order);
    for (const s of subtasks) if (!placed.has(s.id)) order.push(s.id);
  }
  return order;
}
