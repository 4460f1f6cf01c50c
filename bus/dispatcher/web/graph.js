// The topology as SVG, drawn by hand, as the flow runs: left to right, each topic once, then the
// routes reading it, then the topics they write (a streaming route's output), then the routes
// reading those, and so on (the README's diagram). A route names the service behind its endpoint
// (the route's "service", else the endpoint's host:port); its dead-letter topic sits beside what
// it writes. A failing route shows its last error and since when. No library; DOM calls only.
// Texts in the reader's language (i18n.js); names of topics, routes and services as they are.
import { t, clock, shortDateTime, stateText, errorText } from './i18n.js';
const NS = 'http://www.w3.org/2000/svg';
const NODE_W = 196;
const NODE_H = 40;
const ROUTE_H = 54; // a route: name, service and figures, and its error while failing
const COL_GAP = 44;
const ROW_GAP = 12;
const TOP = 34;
const LEFT = 12;

function svg(tag, attrs = {}, text) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

function shorten(s, max) {
  return s.length <= max ? s : `${s.slice(0, max - 1)}…`;
}

// The service a route delivers to, as people name it.
export function serviceOf(route) {
  if (route.service) return route.service;
  const m = /^https?:\/\/([^/]+)/.exec(route.endpoint || '');
  return m ? m[1] : route.endpoint || '?';
}

// "14:02:11" (today) or "3 Dec 14:02" from an RFC 3339 time, in the reader's language.
export function sinceText(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const today = new Date().toDateString() === d.toDateString();
  return today ? clock(d) : shortDateTime(d);
}

// One box with a title line and optional further lines; returns the group.
function node(x, y, h, kind, lines, full) {
  const g = svg('g', { class: `node ${kind}`, transform: `translate(${x},${y})` });
  g.append(svg('title', {}, full || lines[0].text));
  g.append(svg('rect', { width: NODE_W, height: h, rx: 7 }));
  const ys = lines.length === 1 ? [25] : lines.length === 2 ? [17, 32] : [16, 30, 45];
  lines.forEach((l, i) => {
    const max = l.cls === 'label' ? 26 : 36;
    const text = svg('text', { x: 10, y: ys[i], class: l.cls });
    // a line may start with the data's own words (an endpoint's error), marked verbatim
    if (l.verbatim) {
      const v = shorten(l.verbatim, max);
      text.append(svg('tspan', { class: 'verbatim' }, v));
      if (v.length < max) text.append(document.createTextNode(shorten(l.text, max - v.length)));
    } else {
      text.textContent = shorten(l.text, max);
    }
    g.append(text);
  });
  return g;
}

function edge(from, to, kind) {
  const x1 = from.x + NODE_W;
  const y1 = from.y + from.h / 2;
  const x2 = to.x;
  const y2 = to.y + to.h / 2;
  const mx = (x1 + x2) / 2;
  return svg('path', { class: `edge ${kind}`, d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`,
    'marker-end': `url(#arrow-${kind})` });
}

// Depth of each topic in the flow: 0 for a topic no route writes (published from outside), else
// one more than the deepest topic whose route writes it. Bounded: a cycle stops growing.
function topicDepths(routes) {
  const depth = new Map();
  for (const r of routes) depth.set(r.topic, 0);
  for (const r of routes) if (r.output && !depth.has(r.output)) depth.set(r.output, 0);
  for (let pass = 0; pass < routes.length + 1; pass++) {
    let changed = false;
    for (const r of routes) {
      if (!r.output) continue;
      const d = Math.min(depth.get(r.topic) + 1, routes.length);
      if (d > depth.get(r.output)) {
        depth.set(r.output, d);
        changed = true;
      }
    }
    if (!changed) break;
  }
  return depth;
}

// topology: GET /v1/topology; stats: route name -> {state, rate, lag, lastError, failingSince}.
export function drawGraph(container, topology, stats) {
  const routes = [...topology.routes].sort((a, b) =>
    a.topic.localeCompare(b.topic) || a.name.localeCompare(b.name));
  const partitions = new Map(topology.topics.map((t) => [t.name, t.partitions]));
  const depth = topicDepths(routes);

  // columns: topics of depth d in 2d, routes reading them in 2d + 1; dead-letter topics (which no
  // route reads) beside what their route writes
  const cols = [];
  const place = (col, item) => {
    while (cols.length <= col) cols.push([]);
    cols[col].push(item);
    return item;
  };
  const at = new Map(); // key -> placed item
  const byDepth = [...depth.entries()].sort((a, b) => a[1] - b[1] || a[0].localeCompare(b[0]));
  for (const [t, d] of byDepth) at.set(`t:${t}`, place(2 * d, { key: `t:${t}`, kind: 'topic', name: t }));
  for (const r of routes) {
    at.set(`r:${r.name}`, place(2 * depth.get(r.topic) + 1, { key: `r:${r.name}`, kind: 'route', route: r }));
  }
  for (const r of routes) {
    if (r.dead_letter && !at.has(`t:${r.dead_letter}`)) {
      at.set(`t:${r.dead_letter}`, place(2 * depth.get(r.topic) + 2,
        { key: `t:${r.dead_letter}`, kind: 'topic dlq', name: r.dead_letter }));
    }
  }
  // within a column, follow the order of what feeds each node, to keep edges from crossing
  const feeds = new Map();
  for (const r of routes) {
    feeds.set(`r:${r.name}`, `t:${r.topic}`);
    if (r.output && !feeds.has(`t:${r.output}`)) feeds.set(`t:${r.output}`, `r:${r.name}`);
    if (r.dead_letter && !feeds.has(`t:${r.dead_letter}`)) feeds.set(`t:${r.dead_letter}`, `r:${r.name}`);
  }
  let y0 = 0;
  cols.forEach((col, c) => {
    const rank = (it) => {
      const f = at.get(feeds.get(it.key));
      return (it.kind === 'topic dlq' ? 1e6 : 0) + (f && f.y !== undefined ? f.y : 0);
    };
    col.sort((a, b) => rank(a) - rank(b) || a.key.localeCompare(b.key));
    let y = TOP;
    for (const it of col) {
      it.x = LEFT + c * (NODE_W + COL_GAP);
      it.y = y;
      it.h = it.kind === 'route' ? ROUTE_H : NODE_H;
      y += it.h + ROW_GAP;
    }
    y0 = Math.max(y0, y);
  });

  const width = LEFT + Math.max(cols.length, 1) * (NODE_W + COL_GAP) - COL_GAP + LEFT;
  const height = y0 + 4;
  const root = svg('svg', { viewBox: `0 0 ${width} ${height}`, width: '100%', role: 'img',
    'aria-label': t('graph_label') });
  const defs = svg('defs');
  for (const kind of ['in', 'stream', 'dlq']) {
    const m = svg('marker', { id: `arrow-${kind}`, viewBox: '0 0 10 10', refX: 9, refY: 5,
      markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' });
    m.append(svg('path', { d: 'M0,0 L10,5 L0,10 z', class: `arrowhead ${kind}` }));
    defs.append(m);
  }
  root.append(defs);
  cols.forEach((_, c) => root.append(svg('text', { x: LEFT + c * (NODE_W + COL_GAP), y: 18,
    class: 'col-head' }, c % 2 === 0 ? t('col_topics') : t('col_routes'))));

  const edges = svg('g', { class: 'edges' });
  const nodes = svg('g', { class: 'nodes' });
  root.append(edges, nodes);
  for (const col of cols) {
    for (const it of col) {
      if (it.kind !== 'route') {
        const n = partitions.get(it.name);
        const sub = it.kind === 'topic dlq' ? t('dead_letters')
          : n === 1 ? t('partition') : n ? t('partitions', { n }) : t('topic');
        nodes.append(node(it.x, it.y, it.h, it.kind, [{ text: it.name, cls: 'label' },
          { text: sub, cls: 'sub' }], it.name));
        continue;
      }
      const r = it.route;
      const st = stats.get(r.name);
      const state = st ? st.state : 'unknown';
      const rate = st && Number.isFinite(st.rate) ? t('per_second', { n: st.rate.toFixed(1) }) : '–';
      const service = serviceOf(r);
      const lines = [{ text: r.name, cls: 'label' },
        { text: `→ ${service} · ${rate} · ${t('lag_short', { n: st ? st.lag : '–' })}`, cls: 'sub' }];
      const mode = t(`mode_${r.mode}`) === `mode_${r.mode}` ? r.mode : t(`mode_${r.mode}`);
      let full = `${r.name} (${stateText(state)}, ${mode}): ${r.topic} → ${service} ${r.endpoint}`;
      if (st && st.failingSince && st.lastError) {
        const error = errorText(st.lastError);
        lines.push({ verbatim: error, text: ` · ${t('since', { time: sinceText(st.failingSince) })}`,
          cls: 'error' });
        full += `\n${t('failing_title', { time: sinceText(st.failingSince), error })}`;
      }
      const g = node(it.x, it.y, it.h, `route ${state}`, lines, full);
      g.dataset.route = r.name;
      nodes.append(g);
      edges.append(edge(at.get(`t:${r.topic}`), it, 'in'));
      if (r.output) edges.append(edge(it, at.get(`t:${r.output}`), 'stream'));
      if (r.dead_letter) edges.append(edge(it, at.get(`t:${r.dead_letter}`), 'dlq'));
    }
  }
  container.replaceChildren(root);
  // a line longer than its box (Korean text is wider than the English the lengths above were
  // chosen for) is squeezed to fit
  for (const text of root.querySelectorAll('g.node text')) {
    if (text.getComputedTextLength() > NODE_W - 16) {
      text.setAttribute('textLength', NODE_W - 16);
      text.setAttribute('lengthAdjust', 'spacingAndGlyphs');
    }
  }
}
