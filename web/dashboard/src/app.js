// weftctl dashboard's page: polls the JSON API (cli/dashboard/server.h) and draws it. Every
// document may be an error ({error, source, hint}, HTTP 503): the panel that needs it says so
// instead of going blank. window.weft exposes the state for the browser test.
'use strict';

const REFRESH_MS = 2000;
const TAP_MS = 1000;
const SECURITY_COLOURS = {
  mutual_tls: '#1a9850', same_node: '#2c7fb8', plaintext: '#d73027', mixed: '#999999',
  unknown: '#999999',
};

const weft = { updates: 0, docs: {}, series: {}, seriesSince: 0, tapNext: 0, cy: null,
  selected: null, showServices: true };
window.weft = weft;

// ---- helpers -------------------------------------------------------------------------------

function $(sel) { return document.querySelector(sel); }

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v;
    else if (k.startsWith('data-')) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

// The same formats as `weftctl stat` (cli/stat.cc).
function seconds(s) {
  if (s === null || s === undefined || Number.isNaN(s)) return '-';
  if (s < 1e-3) return `${(s * 1e6).toFixed(0)}µs`;
  if (s < 1) return `${(s * 1e3).toFixed(1)}ms`;
  return `${s.toFixed(2)}s`;
}
function percent(f) { return `${(f * 100).toFixed(2)}%`; }
function duration(s) {
  const neg = s < 0;
  s = Math.abs(s);
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600),
    m = Math.floor((s % 3600) / 60);
  const text = d > 0 ? `${d}d${h}h` : (h > 0 ? `${h}h${m}m` : `${m}m`);
  return neg ? `${text} ago` : `in ${text}`;
}

async function api(path) {
  try {
    const r = await fetch(path, { cache: 'no-store' });
    const doc = await r.json();
    if (!r.ok || doc.error) return { error: doc.error ? doc : { error: `HTTP ${r.status}` } };
    return { doc };
  } catch (e) {
    return { error: { error: `the dashboard server is not answering (${e.message})`,
      source: 'dashboard', hint: 'is weftctl dashboard still running?' } };
  }
}

function showError(panel, err) {
  const box = document.querySelector(`.error[data-for="${panel}"]`);
  if (!box) return;
  if (!err) { box.hidden = true; box.textContent = ''; return; }
  box.hidden = false;
  box.replaceChildren(el('b', {}, `${err.source || 'error'}: `), err.error || 'unknown error',
    err.hint ? el('span', { class: 'hint' }, err.hint) : null);
}

// ---- overview ------------------------------------------------------------------------------

function renderOverview(ov) {
  const enrolled = ov.pods.filter((p) => p.enrolled).length;
  $('#pods-count').textContent = `${enrolled} of ${ov.pods.length} in the mesh`;
  $('#namespaces').replaceChildren(...ov.namespaces.map((n) => el('span', {
    class: `chip ${n.enrolled ? 'on' : 'off'}`, 'data-namespace': n.name,
    title: n.enrolled ? 'weft.dev/mesh=enabled' : 'not labelled weft.dev/mesh=enabled',
  }, `${n.name} ${n.enrolled_pods}/${n.pods}`)));
  const rows = ov.pods.map((p) => el('tr', {
    'data-pod': `${p.namespace}/${p.name}`, 'data-enrolled': String(p.enrolled),
  },
  el('td', {}, `${p.namespace}/${p.name}`),
  el('td', {}, el('span', { class: p.enrolled && p.captured ? 'yes' : 'no' },
    p.enrolled ? (p.captured ? '✓ in the mesh' : '! enrolled, not captured') : '✗ not in the mesh'),
  el('span', { class: 'why' }, p.reason)),
  el('td', {}, p.node),
  el('td', { class: 'num' }, p.ip),
  el('td', { class: 'id', title: p.identity }, p.identity)));
  $('#pods tbody').replaceChildren(...rows);
  const stream = (s) => (s ? `${s.connected ? '' : 'DISCONNECTED '}v${s.version_acked}` +
    (s.version_acked !== s.version_sent ? ` (sent v${s.version_sent})` : '') +
    (s.nacks ? `, ${s.nacks} NACK: ${s.last_nack_error}` : '') : '-');
  $('#nodes tbody').replaceChildren(...ov.nodes.map((n) => el('tr', { 'data-node': n.name },
    el('td', {}, n.name),
    el('td', { title: n.capture_reason || '' }, n.capture || 'unknown'),
    el('td', {}, stream(n.ztunnel)),
    el('td', {}, stream(n.agent)))));
}

// ---- graph ---------------------------------------------------------------------------------

const GRAPH_STYLE = [
  { selector: 'node', style: {
    label: 'data(label)', 'font-size': 11, 'text-valign': 'bottom', 'text-margin-y': 4,
    'text-wrap': 'wrap', 'text-max-width': 110,
    width: 30, height: 30, 'background-color': '#e8f5ee', 'border-width': 3,
    'border-color': '#1a9850', color: '#1d2330' } },
  { selector: 'node[meshed = "no"]', style: {
    'background-color': '#f3f4f6', 'border-color': '#9ca3af', 'border-style': 'dashed' } },
  { selector: 'node[meshed = "partly"]', style: { 'border-color': '#f59e0b' } },
  { selector: 'node[kind = "unknown"]', style: { shape: 'diamond', 'border-color': '#9ca3af',
    'background-color': '#f3f4f6' } },
  // Services (as in Kiali): triangles, violet, between their callers and their workloads.
  { selector: 'node[kind = "service"]', style: { shape: 'triangle', width: 28, height: 26,
    'background-color': '#ede9fe', 'border-color': '#7c3aed', 'border-width': 2,
    'border-style': 'solid' } },
  { selector: 'node[kind = "service"][meshed = "no"]', style: { 'border-style': 'dashed' } },
  { selector: 'edge', style: {
    width: 'data(width)', 'line-color': 'data(colour)', 'target-arrow-color': 'data(colour)',
    'target-arrow-shape': 'triangle', 'curve-style': 'bezier', label: 'data(label)',
    'font-size': 10, 'text-rotation': 'autorotate', 'text-background-color': '#fff',
    'text-background-opacity': 0.85, 'text-background-padding': 2, color: '#374151' } },
  { selector: 'edge[security = "plaintext"]', style: { 'line-style': 'dashed' } },
  { selector: 'edge[?active]', style: { 'line-opacity': 1 } },
  { selector: 'edge[!active]', style: { 'line-opacity': 0.45 } },
  { selector: 'edge[denied_total > 0]', style: { color: '#b10026', 'font-weight': 'bold' } },
  { selector: ':selected', style: { 'overlay-color': '#2563eb', 'overlay-opacity': 0.15 } },
];

function edgeElement(e) {
  const denied = e.denied_total > 0 ? ` · ⛔ ${e.denied_total} denied` : '';
  return { group: 'edges', data: {
    id: e.id, source: e.source, target: e.target, security: e.security,
    colour: SECURITY_COLOURS[e.security] || '#999', active: e.active,
    width: 2 + Math.min(6, Math.log10(1 + e.rate) * 2), denied_total: e.denied_total,
    label: e.active ? `${e.rate_label}${denied}` : denied.replace(' · ', ''), edge: e } };
}

// The edges the graph shows: through Service nodes (source -> Service -> workload) or not.
function graphEdges(g) {
  return weft.showServices && g.service_edges ? g.service_edges : g.edges;
}

function nodeLabel(n) {
  if (n.kind === 'unknown') return 'unknown callers';
  if (n.kind === 'service') return n.label;
  return `${n.workload}\n${n.namespace}`;
}

function renderGraph(g) {
  $('#graph-window').textContent = `rates over the last ${g.window_seconds.toFixed(0)} s`;
  const nodes = g.nodes.filter((n) => weft.showServices || n.kind !== 'service').map((n) => ({
    group: 'nodes', data: { id: n.id, label: nodeLabel(n), meshed: n.meshed, kind: n.kind,
      node: n } }));
  const edges = graphEdges(g).map(edgeElement);
  if (!weft.cy) {
    weft.cy = cytoscape({ container: $('#graph'), style: GRAPH_STYLE,
      minZoom: 0.3, maxZoom: 3 });
    weft.cy.on('tap', 'node, edge', (ev) => { weft.selected = ev.target.id(); renderDetails(); });
  }
  const cy = weft.cy;
  const want = new Set([...nodes, ...edges].map((x) => x.data.id));
  let changed = false;
  cy.elements().forEach((x) => { if (!want.has(x.id())) { x.remove(); changed = true; } });
  for (const x of [...nodes, ...edges]) {
    const have = cy.getElementById(x.data.id);
    if (have.nonempty()) have.data(x.data);
    else { cy.add(x); changed = true; }
  }
  if (changed) {
    cy.layout({ name: 'breadthfirst', directed: true, spacingFactor: 1.4, padding: 30,
      animate: false }).run();
  }
}

function statRows(stat) {
  if (!stat) return [];
  const http = stat.protocol === 'http';
  return [
    ['success', http ? percent(stat.request_success_rate) : percent(stat.success_rate)],
    ['rate', http ? `${stat.requests_per_second.toFixed(1)} rps`
      : `${stat.connections_per_second.toFixed(1)} conn/s`],
    ['latency p50 / p95 / p99', [http ? stat.request_p50_seconds : stat.p50_seconds,
      http ? stat.request_p95_seconds : stat.p95_seconds,
      http ? stat.request_p99_seconds : stat.p99_seconds].map(seconds).join(' / ')],
    // Share of the connections that closed (none yet on a kept-alive pool: '-').
    ['meshed', stat.connections > 0 ? percent(stat.meshed) : '-'],
  ];
}

function renderDetails() {
  const box = $('#details');
  const id = weft.selected;
  const s = weft.docs.signals || {};
  if (!id) return;
  const kv = (rows) => el('table', {}, ...rows.map(([k, v]) => el('tr', {}, el('th', {}, k),
    el('td', {}, v))));
  const g = weft.docs.graph;
  const edge = (g ? graphEdges(g) : []).find((e) => e.id === id);
  box.dataset.id = id;
  if (edge) {
    box.dataset.kind = 'edge';
    const stats = weft.showServices && s.service_edges ? s.service_edges : s.edges;
    const stat = (stats || []).find((e) => e.id === id);
    const name = (x) => x.replace(/^svc:([^/]*)\/(.*)$/, '$2.$1 (Service)');
    box.replaceChildren(el('b', {}, `${name(edge.source)} → ${name(edge.target)}`), kv([
      ['security', `${edge.security} ${JSON.stringify(edge.security_counts)}`],
      ['protocol', edge.protocol], ['rate', edge.rate_label],
      ['denied', `${edge.denied} in the window, ${edge.denied_total} in all`],
      ['seen by', edge.reporter === 'both' ? 'both sides\' ztunnels (per call)'
        : `the ${edge.reporter}'s ztunnel`], ...statRows(stat)]));
    return;
  }
  const node = (g?.nodes || []).find((n) => n.id === id &&
    (weft.showServices || n.kind !== 'service'));
  if (!node) {
    delete box.dataset.id;
    delete box.dataset.kind;
    box.textContent = 'Click a workload, a Service or an edge for its details.';
    return;
  }
  box.dataset.kind = node.kind;
  if (node.kind === 'service') {
    renderServiceDetails(box, node, kv);
    return;
  }
  const [ns, wl] = id.split('/');
  const stat = (s.workloads || []).find((w) => w.namespace === ns && w.workload === wl);
  const pods = (weft.docs.overview?.pods || []).filter((p) => p.namespace === ns &&
    p.workload === wl);
  const policies = pods.flatMap((p) => weft.docs.health?.policies?.[`${ns}/${p.name}`] || []);
  box.replaceChildren(el('b', {}, id), kv([
    ['in the mesh', `${node.meshed} (${node.enrolled_pods}/${node.pods} pods)`],
    ['pods', pods.map((p) => `${p.name} on ${p.node} (${p.ip})`).join(', ') || '-'],
    ['policies', [...new Set(policies.map((p) => `${p.kind} ${p.namespace}/${p.name}`))]
      .join(', ') || 'none'],
    ...statRows(stat)]));
}

// A Service: its ports and endpoints, the workloads that served it, its routes and
// TrafficPolicies, and its golden signals (over the window, or since start when idle).
function renderServiceDetails(box, node, kv) {
  const s = weft.docs.signals || {};
  const ref = `${node.namespace}/${node.name}`;
  const win = (s.services || []).find((x) => x.id === node.id);
  const total = (s.service_totals || []).find((x) => x.id === node.id);
  const idle = !win || (win.protocol === 'http' ? win.requests === 0 : win.connections === 0);
  const svc = (weft.docs.overview?.services || []).find((x) => x.namespace === node.namespace &&
    x.name === node.name);
  const policies = weft.docs.health?.service_policies?.[ref] || [];
  const served = (weft.docs.graph?.service_edges || []).filter((e) => e.source === node.id)
    .map((e) => `${e.target} (${e.active ? e.rate_label : 'idle'})`);
  box.replaceChildren(el('b', {}, `Service ${node.label}`), kv([
    ['hostname', node.hostname || '-'],
    ['addresses', svc ? `${svc.addresses.join(', ')} · ports ${svc.ports.join(', ')}` : '-'],
    ['endpoints', svc ? `${svc.ready_endpoints}/${svc.endpoints} ready, ${node.enrolled_pods} ` +
      'in the mesh' : 'not in weftd\'s config'],
    ['served by', served.join(', ') || 'no traffic yet'],
    ['routes and traffic policies', policies.length === 0 ? 'none'
      : policies.map((p) => `${p.kind} ${p.namespace}/${p.name} (${p.detail})`).join('; ')],
    ['signals', idle ? (total ? 'since start (idle in the window)' : 'no traffic yet')
      : `over the last ${s.window_seconds.toFixed(0)} s`],
    ...statRows(idle ? total : win)]));
}

// ---- golden signals ------------------------------------------------------------------------

function sparkline(holder, colour) {
  const opts = { width: 120, height: 34, class: 'spark', legend: { show: false },
    cursor: { show: false }, scales: { x: { time: true } }, axes: [{ show: false },
      { show: false }], series: [{}, { stroke: colour, width: 1.5, fill: `${colour}22`,
      spanGaps: true }] };
  return new uPlot(opts, [[], []], holder);
}

function renderSignals(s, totals) {
  $('#signals-window').textContent = `over the last ${s.window_seconds.toFixed(0)} s`;
  const byId = new Map(totals.map((t) => [`${t.namespace}/${t.workload}`, t]));
  const tbody = $('#signals tbody');
  const seen = new Set();
  for (const w of s.workloads) {
    const id = `${w.namespace}/${w.workload}`;
    seen.add(id);
    const total = byId.get(id);
    const http = w.protocol === 'http';
    const idle = http ? w.requests === 0 : w.connections === 0;
    const show = idle && total ? total : w;
    let row = tbody.querySelector(`tr[data-workload="${CSS.escape(id)}"]`);
    if (!row) {
      row = el('tr', { 'data-workload': id });
      for (const f of ['name', 'meshed', 'success', 'rate', 'p50', 'p95', 'p99', 'total']) {
        row.append(el('td', { class: f === 'name' ? '' : 'num', 'data-field': f }));
      }
      const rateCell = el('td', {}), p99Cell = el('td', {});
      row.append(rateCell, p99Cell);
      tbody.append(row);
      weft.series[id] = weft.series[id] || [[], [], []];
      row.plots = [sparkline(rateCell, '#2563eb'), sparkline(p99Cell, '#d97706')];
    }
    row.dataset.mode = idle ? 'total' : 'window';
    row.dataset.protocol = show.protocol;
    row.className = idle ? 'since' : '';
    const cell = (f, v) => { row.querySelector(`[data-field="${f}"]`).textContent = v; };
    const any = http ? show.requests > 0 : show.connections > 0;
    cell('name', id + (w.seen_from_source_only ? ' *' : ''));
    cell('meshed', show.connections > 0 ? percent(show.meshed) : '-');
    cell('success', any ? percent(http ? show.request_success_rate : show.success_rate) : '-');
    cell('rate', idle ? '0' : (http ? `${w.requests_per_second.toFixed(1)} rps`
      : `${w.connections_per_second.toFixed(1)} conn/s`));
    cell('p50', seconds(http ? show.request_p50_seconds : show.p50_seconds));
    cell('p95', seconds(http ? show.request_p95_seconds : show.p95_seconds));
    cell('p99', seconds(http ? show.request_p99_seconds : show.p99_seconds));
    cell('total', total ? `${(http ? total.requests : total.connections).toFixed(0)} ${
      http ? 'reqs' : 'conns'}` : '-');
    const [t, rate, p99] = weft.series[id] || [[], [], []];
    row.plots[0].setData([t, rate]);
    row.plots[1].setData([t, p99]);
  }
  for (const row of [...tbody.querySelectorAll('tr')]) {
    if (!seen.has(row.dataset.workload)) row.remove();
  }
}

function addSeries(doc) {
  for (const [id, points] of Object.entries(doc.series)) {
    const s = weft.series[id] || (weft.series[id] = [[], [], []]);
    for (const p of points) {
      s[0].push(p[0]);
      s[1].push(p[1]);
      s[2].push(p[5] === null ? null : p[5] * 1000);
      weft.seriesSince = Math.max(weft.seriesSince, p[0]);
    }
    while (s[0].length > 300) s.forEach((a) => a.shift());
  }
}

// ---- health --------------------------------------------------------------------------------

function renderHealth(h) {
  $('#config-version').textContent = `config v${h.config_version}`;
  const rejected = [...h.rejected, ...h.file_errors];
  $('#rejected').replaceChildren(rejected.length === 0
    ? el('div', { class: 'ok' }, '✓ weftd accepted every object')
    : el('div', {}, el('div', { class: 'bad' }, `${rejected.length} object(s) rejected by weftd:`),
      ...rejected.map((r) => el('div', { class: 'item' }, typeof r === 'string' ? r
        : Object.entries(r).map(([k, v]) => `${k}: ${v}`).join(' · ')))));
  const rows = Object.entries(h.policies).map(([w, list]) => el('tr', { 'data-policies': w },
    el('td', {}, w), el('td', {}, list.length === 0 ? el('span', { class: 'why' }, 'none')
      : list.map((p) => `${p.kind} ${p.namespace}/${p.name} (${p.detail})`).join('; '))));
  $('#policies tbody').replaceChildren(...rows);
  const expiry = (c) => {
    if (c.seconds_left === undefined) return '?';
    return duration(c.seconds_left) + (c.state === 'ok' ? '' : ` (${c.state.replace('_', ' ')})`);
  };
  const certs = h.nodes.flatMap((n) => n.certificates.map((c) => el('tr', {},
    el('td', {}, n.name), el('td', { class: 'id', title: c.identity }, c.identity),
    el('td', { class: c.state === 'ok' ? '' : 'bad' }, expiry(c)))));
  $('#certs tbody').replaceChildren(...certs);
}

// ---- header --------------------------------------------------------------------------------

function renderSummary() {
  const ov = weft.docs.overview, g = weft.docs.graph;
  const items = [];
  if (ov) {
    items.push(['pods in the mesh', `${ov.pods.filter((p) => p.enrolled).length}/${ov.pods.length}`]);
  }
  if (g) {
    const mtls = g.edges.filter((e) => e.security === 'mutual_tls' || e.security === 'same_node');
    items.push(['edges mTLS or same node', `${mtls.length}/${g.edges.length}`]);
    const denied = g.edges.reduce((a, e) => a + e.denied_total, 0);
    items.push(['denied', String(denied), denied > 0]);
  }
  $('#summary').replaceChildren(...items.map(([k, v, bad]) => el('span', { class: bad ? 'bad' : '' },
    el('b', {}, v), ` ${k}`)));
}

// ---- loops ---------------------------------------------------------------------------------

const PANELS = { overview: renderOverview, graph: renderGraph, health: renderHealth };

async function refresh() {
  const names = ['meta', 'overview', 'graph', 'signals', 'health'];
  const got = await Promise.all(names.map((n) => api(`api/${n}`)));
  const series = await api(`api/series?since=${weft.seriesSince}`);
  if (series.doc) addSeries(series.doc);
  const errors = [];
  names.forEach((n, i) => {
    const { doc, error } = got[i];
    if (n !== 'meta') showError(n, error);
    if (error) {
      errors.push(error);
      delete weft.docs[n];
      return;
    }
    weft.docs[n] = doc;
    try {
      if (PANELS[n]) PANELS[n](doc);
      if (n === 'signals') renderSignals(doc, doc.totals || []);
    } catch (e) {
      showError(n, { source: 'page', error: `cannot show this: ${e.message}` });
    }
  });
  if (got[0].doc) $('#source').textContent = got[0].doc.source;
  const unique = [...new Map(errors.map((e) => [e.error, e])).values()];
  const banner = $('#banner');
  banner.hidden = unique.length === 0;
  banner.textContent = unique.map((e) => `⚠ ${e.source}: ${e.error}`).join('\n');
  const upd = $('#updated');
  if (got[0].doc) {
    const age = Date.now() / 1000 - got[0].doc.updated_unix;
    upd.textContent = `updated ${new Date(got[0].doc.updated_unix * 1000).toLocaleTimeString()}`;
    upd.classList.toggle('stale', age > 15);
  } else {
    upd.textContent = 'not connected';
    upd.classList.add('stale');
  }
  renderSummary();
  renderDetails();
  weft.updates++;
}

function tapRow(e) {
  const who = (w, addr) => w || `${addr} (not in the mesh)`;
  return el('tr', { 'data-tap': String(e.seq) },
    el('td', {}, new Date(e.unix_ms).toLocaleTimeString()),
    el('td', {}, who(e.src_workload, e.src_addr)), el('td', {}, who(e.dst_workload, e.dst_addr)),
    el('td', {}, `${e.method} ${e.authority || ''}${e.path}`),
    el('td', { class: e.status >= 400 || !e.status ? 'bad' : '' },
      `${e.status || 'no response'}${e.local_reply ? ' (ztunnel)' : ''}`),
    el('td', { class: 'num' }, `${(e.latency_ms || 0).toFixed(1)}ms`), el('td', {}, e.node));
}

async function tap() {
  const { doc, error } = await api(`api/tap?since=${weft.tapNext}`);
  showError('tap', error);
  if (doc) {
    weft.tapNext = doc.next;
    $('#tap-note').textContent = doc.note;
    const tbody = $('#tap tbody');
    for (const e of doc.events) tbody.prepend(tapRow(e));
    while (tbody.rows.length > 60) tbody.deleteRow(tbody.rows.length - 1);
  }
}

function onToggleServices() {
  weft.showServices = $('#show-services').checked;
  if (weft.docs.graph) renderGraph(weft.docs.graph);
  renderDetails();
}

async function loop(fn, ms) {
  for (;;) {
    await fn();
    await new Promise((r) => setTimeout(r, ms));
  }
}

$('#show-services').addEventListener('change', onToggleServices);
loop(refresh, REFRESH_MS);
loop(tap, TAP_MS);
