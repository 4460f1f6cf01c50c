// The topology as SVG, drawn by hand: topics (left) -> routes (middle) -> endpoints and the topics
// routes write to (right: streaming outputs, dead-letter topics). No library; DOM calls only.
const NS = 'http://www.w3.org/2000/svg';
const COL_X = [16, 376, 736];
const NODE_W = 288;
const NODE_H = 40;
const GAP = 14;
const TOP = 34;

function svg(tag, attrs = {}, text) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

function shorten(s, max) {
  return s.length <= max ? s : `${s.slice(0, max - 1)}…`;
}

// One box with a title line and an optional second line; returns the group.
function node(x, y, kind, title, sub, full) {
  const g = svg('g', { class: `node ${kind}`, transform: `translate(${x},${y})` });
  g.append(svg('title', {}, full || title));
  g.append(svg('rect', { width: NODE_W, height: NODE_H, rx: 7 }));
  g.append(svg('text', { x: 12, y: sub ? 17 : 25, class: 'label' }, shorten(title, 38)));
  if (sub) g.append(svg('text', { x: 12, y: 32, class: 'sub' }, shorten(sub, 44)));
  return g;
}

function edge(from, to, kind) {
  const x1 = from.x + NODE_W;
  const y1 = from.y + NODE_H / 2;
  const x2 = to.x;
  const y2 = to.y + NODE_H / 2;
  const mx = (x1 + x2) / 2;
  return svg('path', { class: `edge ${kind}`, d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`,
    'marker-end': `url(#arrow-${kind})` });
}

// topology: GET /v1/topology; stats: route name -> {state, rate, lag} (may lack routes).
export function drawGraph(container, topology, stats) {
  const routes = [...topology.routes].sort((a, b) =>
    a.topic.localeCompare(b.topic) || a.name.localeCompare(b.name));
  const topicsIn = [...new Set(routes.map((r) => r.topic))];
  const partitions = new Map(topology.topics.map((t) => [t.name, t.partitions]));

  // right column: one node per endpoint URL and per written topic, in route order
  const targets = [];
  const targetIndex = new Map();
  const addTarget = (key, kind, title, sub) => {
    if (!targetIndex.has(key)) {
      targetIndex.set(key, targets.length);
      targets.push({ key, kind, title, sub });
    }
    return targetIndex.get(key);
  };
  for (const r of routes) {
    addTarget(`e:${r.endpoint}`, 'endpoint', r.endpoint.replace(/^https?:\/\//, ''), 'endpoint');
    if (r.output) addTarget(`t:${r.output}`, 'topic', r.output, 'output topic');
    if (r.dead_letter) addTarget(`t:${r.dead_letter}`, 'topic dlq', r.dead_letter, 'dead-letter topic');
  }

  const rows = Math.max(topicsIn.length, routes.length, targets.length, 1);
  const height = TOP + rows * (NODE_H + GAP) + 8;
  const width = COL_X[2] + NODE_W + 16;
  const root = svg('svg', { viewBox: `0 0 ${width} ${height}`, width: '100%', role: 'img',
    'aria-label': 'Topology: topics, routes, endpoints' });

  const defs = svg('defs');
  for (const kind of ['in', 'out', 'stream', 'dlq']) {
    const m = svg('marker', { id: `arrow-${kind}`, viewBox: '0 0 10 10', refX: 9, refY: 5,
      markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' });
    m.append(svg('path', { d: 'M0,0 L10,5 L0,10 z', class: `arrowhead ${kind}` }));
    defs.append(m);
  }
  root.append(defs);
  ['Topics', 'Routes', 'Endpoints and written topics'].forEach((h, i) =>
    root.append(svg('text', { x: COL_X[i], y: 18, class: 'col-head' }, h)));

  const pos = (col, i) => ({ x: COL_X[col], y: TOP + i * (NODE_H + GAP) });
  const edges = svg('g', { class: 'edges' });
  const nodes = svg('g', { class: 'nodes' });
  root.append(edges, nodes);

  topicsIn.forEach((t, i) => {
    const p = pos(0, i);
    const n = partitions.get(t);
    nodes.append(node(p.x, p.y, 'topic', t, n ? `${n} partitions` : 'topic'));
  });
  targets.forEach((t, i) => {
    const p = pos(2, i);
    nodes.append(node(p.x, p.y, t.kind, t.title, t.sub, t.key.slice(2)));
  });
  routes.forEach((r, i) => {
    const p = pos(1, i);
    const st = stats.get(r.name);
    const state = st ? st.state : 'unknown';
    const rate = st && Number.isFinite(st.rate) ? `${st.rate.toFixed(1)}/s` : '–';
    const sub = `${r.mode} · ${rate} · lag ${st ? st.lag : '–'}`;
    const g = node(p.x, p.y, `route ${state}`, r.name, sub, `${r.name} (${state})`);
    g.dataset.route = r.name;
    nodes.append(g);
    edges.append(edge(pos(0, topicsIn.indexOf(r.topic)), p, 'in'));
    edges.append(edge(p, pos(2, targetIndex.get(`e:${r.endpoint}`)), 'out'));
    if (r.output) edges.append(edge(p, pos(2, targetIndex.get(`t:${r.output}`)), 'stream'));
    if (r.dead_letter) edges.append(edge(p, pos(2, targetIndex.get(`t:${r.dead_letter}`)), 'dlq'));
  });
  container.replaceChildren(root);
}
