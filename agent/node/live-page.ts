/**
 * The live page the admin port serves at `/live` (loopback only): one self-contained HTML document
 * (no CDN, no external file) that polls `/live.json` every second and draws the feed
 * (telemetry/live-feed.ts): pods grouped by node and namespace, edges between them (mutual TLS
 * solid green with a lock, plaintext dashed red, both seen dashed orange) labelled with request
 * rate, success rate and p99 (or connections and bytes for plain TCP), a table of the edges, and
 * the recent denials with their deciding policy.
 *
 * Every name on the page comes from the state (pod, namespace, policy names) and is written with
 * textContent / setAttribute, never as markup. The page's elements carry data- attributes (vertex
 * and edge ids, mTLS state, totals) so a test can read what it shows.
 */
import { RawBody } from './http-endpoints';

/** Where the page is served and where it reads from. */
export const LIVE_PATHS = { page: '/live', feed: '/live.json' } as const;

/** How often the page polls the feed. */
export const LIVE_POLL_MS = 1000;

/** Only what the page itself carries, and its own origin for the feed. */
const CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:";

const STYLE = String.raw`
:root { --bg:#0f1419; --panel:#171d24; --fg:#d8dee6; --dim:#8a96a3; --mtls:#3fb950; --plain:#f85149; --mixed:#d29922; --box:#1f2730; --line:#2d3742; }
* { box-sizing: border-box; }
body { margin:0; font:13px/1.4 system-ui, sans-serif; background:var(--bg); color:var(--fg); }
header { display:flex; gap:16px; align-items:baseline; padding:10px 16px; background:var(--panel); border-bottom:1px solid var(--line); }
header h1 { font-size:16px; margin:0; }
#status { color:var(--dim); }
#status.down { color:var(--plain); }
main { padding:12px 16px; }
#graph { width:100%; overflow-x:auto; background:var(--panel); border:1px solid var(--line); border-radius:6px; }
#graph svg { display:block; }
.column-title { fill:var(--fg); font-weight:600; font-size:13px; }
.ns-title { fill:var(--dim); font-size:11px; }
.vertex rect { fill:var(--box); stroke:var(--line); rx:5; }
.vertex.local rect { stroke:#58a6ff; }
.vertex .name { fill:var(--fg); font-size:12px; font-weight:600; }
.vertex .sub { fill:var(--dim); font-size:10px; }
.edge { fill:none; stroke-width:2; }
.edge.mutual_tls { stroke:var(--mtls); }
.edge.none { stroke:var(--plain); stroke-dasharray:6 4; }
.edge.mixed { stroke:var(--mixed); stroke-dasharray:8 3 2 3; }
.edge-label { font-size:11px; paint-order:stroke; stroke:var(--panel); stroke-width:3px; }
.edge-label.mutual_tls { fill:var(--mtls); } .edge-label.none { fill:var(--plain); } .edge-label.mixed { fill:var(--mixed); }
.lock { fill:var(--mtls); }
h2 { font-size:14px; margin:18px 0 6px; }
table { border-collapse:collapse; width:100%; background:var(--panel); }
th, td { text-align:left; padding:4px 8px; border-bottom:1px solid var(--line); white-space:nowrap; }
th { color:var(--dim); font-weight:500; }
td.num { text-align:right; font-variant-numeric:tabular-nums; }
.tag { padding:0 6px; border-radius:8px; font-size:11px; }
.tag.mutual_tls { background:#12351c; color:var(--mtls); } .tag.none { background:#3d1517; color:var(--plain); } .tag.mixed { background:#3a2a0b; color:var(--mixed); }
.empty { color:var(--dim); padding:12px; }
`;

const SCRIPT = String.raw`
'use strict';
var SVGNS = 'http://www.w3.org/2000/svg';
var FEED = '/live.json';
var POLL_MS = __POLL_MS__;
var COL_W = 440, BOX_W = 200, BOX_H = 38, ROW_H = 48, TOP = 44, LEFT = 30;

function el(tag, attrs, text) {
  var e = tag.indexOf('svg:') === 0 ? document.createElementNS(SVGNS, tag.slice(4)) : document.createElement(tag);
  if (attrs) for (var k in attrs) if (attrs[k] !== undefined && attrs[k] !== null) e.setAttribute(k, String(attrs[k]));
  if (text !== undefined) e.textContent = text;
  return e;
}
function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
function fmtRate(r) { return r >= 100 ? r.toFixed(0) : r >= 10 ? r.toFixed(1) : r.toFixed(2); }
function fmtMs(ms) { return ms === null ? '-' : ms >= 100 ? ms.toFixed(0) + ' ms' : ms >= 1 ? ms.toFixed(1) + ' ms' : ms.toFixed(2) + ' ms'; }
function fmtPct(x) { return x === null ? '-' : (x * 100).toFixed(x === 1 || x === 0 ? 0 : 1) + '%'; }
function fmtBytes(n) { return n >= 1048576 ? (n / 1048576).toFixed(1) + ' MB' : n >= 1024 ? (n / 1024).toFixed(1) + ' kB' : n + ' B'; }
function mtlsText(m) { return m === 'mutual_tls' ? 'mTLS' : m === 'none' ? 'plaintext' : 'mixed'; }

function vertexLabel(v) {
  if (v.kind === 'pod') return { name: v.name, sub: v.namespace + (v.workload && v.workload !== v.name ? ' \u00b7 ' + v.workload : '') };
  if (v.kind === 'service') return { name: v.name, sub: 'Service \u00b7 ' + v.namespace };
  if (v.kind === 'identity') return { name: v.name, sub: 'identity \u00b7 ' + (v.namespace || '?') };
  return { name: v.name, sub: 'outside the mesh' };
}
function displayName(v) { return v ? (v.namespace ? v.namespace + '/' + v.name : v.name) : '?'; }

function columnOf(v) {
  if (v.node) return v.node;
  return v.kind === 'service' ? 'Services' : 'outside the mesh';
}

function layout(feed) {
  var groups = {};
  feed.vertices.forEach(function (v) { var c = columnOf(v); (groups[c] = groups[c] || []).push(v); });
  var names = Object.keys(groups).sort(function (a, b) {
    var rank = function (n) { return n === feed.node ? 0 : n === 'Services' ? 2 : n === 'outside the mesh' ? 3 : 1; };
    return rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0);
  });
  var pos = {}, columns = [], height = 0;
  names.forEach(function (name, ci) {
    var x = LEFT + ci * COL_W, y = TOP, lastNs = null, rows = [];
    groups[name].sort(function (a, b) { return displayName(a) < displayName(b) ? -1 : 1; }).forEach(function (v) {
      var ns = v.namespace || '';
      if (ns !== lastNs) { rows.push({ ns: ns, y: y + 12 }); y += 18; lastNs = ns; }
      pos[v.id] = { x: x, y: y, v: v };
      y += ROW_H;
    });
    columns.push({ name: name, x: x, rows: rows });
    height = Math.max(height, y);
  });
  // room on the right for the labels of edges that bulge out of the last column
  return { pos: pos, columns: columns, width: LEFT * 2 + Math.max(1, names.length) * COL_W - (COL_W - BOX_W) + 200, height: height + 20 };
}

function edgeText(e) {
  var parts = [];
  if (e.requests.total > 0) {
    parts.push(fmtRate(e.requests.perSecond) + ' rps', fmtPct(e.requests.successRate), 'p99 ' + fmtMs(e.requests.p99Ms));
  } else {
    parts.push(e.tcp.active + ' open', fmtRate(e.tcp.perSecond) + ' conn/s', fmtBytes(e.tcp.bytesFromClient + e.tcp.bytesToClient));
  }
  return parts.join(' \u00b7 ');
}

function drawGraph(feed, byId) {
  var box = document.getElementById('graph');
  clear(box);
  if (feed.vertices.length === 0) { box.appendChild(el('div', { class: 'empty' }, 'No traffic through this node\'s proxy yet.')); return; }
  var L = layout(feed);
  var svg = el('svg:svg', { width: L.width, height: L.height, viewBox: '0 0 ' + L.width + ' ' + L.height, role: 'img', 'aria-label': 'mesh graph' });
  var defs = el('svg:defs');
  ['mutual_tls', 'none', 'mixed'].forEach(function (m) {
    var mk = el('svg:marker', { id: 'arrow-' + m, viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' });
    mk.appendChild(el('svg:path', { d: 'M0,0 L10,5 L0,10 z', class: 'edge-label ' + m, style: 'stroke:none' }));
    defs.appendChild(mk);
  });
  svg.appendChild(defs);
  L.columns.forEach(function (c) {
    svg.appendChild(el('svg:text', { x: c.x, y: 22, class: 'column-title' }, c.name === feed.node ? c.name + ' (this node)' : c.name));
    c.rows.forEach(function (r) { if (r.ns) svg.appendChild(el('svg:text', { x: c.x, y: r.y, class: 'ns-title' }, 'namespace ' + r.ns)); });
  });
  var edgeLayer = el('svg:g', { class: 'edges' });
  var labelLayer = el('svg:g', { class: 'labels' });
  feed.edges.forEach(function (e, i) {
    var a = L.pos[e.source], b = L.pos[e.destination];
    if (!a || !b) return;
    // between columns: from the side facing the destination to the side facing the source; within one: out and back on the right
    var y1 = a.y + BOX_H / 2, y2 = b.y + BOX_H / 2, x1, x2, c1, c2;
    if (b.x > a.x) { x1 = a.x + BOX_W; x2 = b.x; }
    else if (b.x < a.x) { x1 = a.x; x2 = b.x + BOX_W; }
    if (x1 !== undefined) { var dx = (x2 - x1) / 2; c1 = [x1 + dx, y1]; c2 = [x2 - dx, y2]; }
    else { x1 = a.x + BOX_W; x2 = b.x + BOX_W; var bulge = 70 + 16 * (i % 4); c1 = [x1 + bulge, y1]; c2 = [x2 + bulge, y2]; }
    var d = 'M' + x1 + ',' + y1 + ' C' + c1[0] + ',' + c1[1] + ' ' + c2[0] + ',' + c2[1] + ' ' + x2 + ',' + y2;
    edgeLayer.appendChild(el('svg:path', { d: d, class: 'edge ' + e.mtls, 'data-edge': e.id, 'data-mtls': e.mtls, 'marker-end': 'url(#arrow-' + e.mtls + ')' }));
    var mx = (x1 + 3 * c1[0] + 3 * c2[0] + x2) / 8, my = (y1 + 3 * c1[1] + 3 * c2[1] + y2) / 8;
    var g = el('svg:g', { class: 'edge-tag', 'data-edge': e.id, transform: 'translate(' + mx.toFixed(1) + ',' + (my - 4).toFixed(1) + ')' });
    if (e.mtls === 'mutual_tls') {
      var lock = el('svg:g', { class: 'lock', transform: 'translate(-4,-22)' });
      lock.appendChild(el('svg:rect', { x: 0, y: 4, width: 8, height: 6, rx: 1 }));
      lock.appendChild(el('svg:path', { d: 'M1.5,4 V2.5 a2.5,2.5 0 0 1 5,0 V4', fill: 'none', stroke: 'currentColor', style: 'stroke:var(--mtls)' }));
      lock.appendChild(el('svg:title', null, 'mutual TLS'));
      g.appendChild(lock);
    }
    g.appendChild(el('svg:text', { x: 0, y: 0, 'text-anchor': 'middle', class: 'edge-label ' + e.mtls }, (e.mtls === 'mutual_tls' ? '' : mtlsText(e.mtls) + ' \u00b7 ') + edgeText(e)));
    labelLayer.appendChild(g);
  });
  svg.appendChild(edgeLayer);
  Object.keys(L.pos).forEach(function (id) {
    var p = L.pos[id], v = p.v, lab = vertexLabel(v);
    var g = el('svg:g', { class: 'vertex ' + v.kind + (v.node === feed.node ? ' local' : ''), 'data-vertex': v.id, transform: 'translate(' + p.x + ',' + p.y + ')' });
    g.appendChild(el('svg:rect', { width: BOX_W, height: BOX_H }));
    g.appendChild(el('svg:text', { x: 8, y: 16, class: 'name' }, lab.name));
    g.appendChild(el('svg:text', { x: 8, y: 30, class: 'sub' }, lab.sub));
    if (v.identity) g.appendChild(el('svg:title', null, v.identity));
    svg.appendChild(g);
  });
  svg.appendChild(labelLayer);
  box.appendChild(svg);
}

function busiest(a, b) {
  return (b.requests.perSecond - a.requests.perSecond) || (b.tcp.bytesPerSecond - a.tcp.bytesPerSecond) || (b.requests.total - a.requests.total) || (a.id < b.id ? -1 : 1);
}

function drawEdges(feed, byId) {
  var body = document.getElementById('edges');
  clear(body);
  if (feed.edges.length === 0) { var tr0 = el('tr'); tr0.appendChild(el('td', { colspan: 11, class: 'empty' }, 'none yet')); body.appendChild(tr0); return; }
  feed.edges.slice().sort(busiest).forEach(function (e) {
    var tr = el('tr', { class: 'edge-row', 'data-edge': e.id, 'data-source': e.source, 'data-destination': e.destination, 'data-mtls': e.mtls,
      'data-requests': e.requests.total, 'data-connections': e.tcp.opened, 'data-denied': e.requests.deniedTotal + e.tcp.deniedTotal });
    var mt = el('td'); mt.appendChild(el('span', { class: 'tag ' + e.mtls }, mtlsText(e.mtls)));
    tr.appendChild(el('td', null, displayName(byId[e.source])));
    tr.appendChild(el('td', null, displayName(byId[e.destination]) + (e.service ? ' (' + e.service + ')' : '')));
    tr.appendChild(mt);
    tr.appendChild(el('td', null, e.protocol));
    tr.appendChild(el('td', { class: 'num' }, fmtRate(e.requests.perSecond)));
    tr.appendChild(el('td', { class: 'num' }, fmtPct(e.requests.successRate)));
    tr.appendChild(el('td', { class: 'num' }, fmtMs(e.requests.p99Ms)));
    tr.appendChild(el('td', { class: 'num requests' }, String(e.requests.total)));
    tr.appendChild(el('td', { class: 'num' }, String(e.requests.deniedTotal + e.tcp.deniedTotal)));
    tr.appendChild(el('td', { class: 'num' }, e.tcp.active + ' / ' + e.tcp.opened));
    tr.appendChild(el('td', { class: 'num' }, fmtBytes(e.tcp.bytesFromClient) + ' / ' + fmtBytes(e.tcp.bytesToClient)));
    body.appendChild(tr);
  });
}

function drawDenials(feed, byId) {
  var body = document.getElementById('denials');
  clear(body);
  if (feed.denials.length === 0) { var tr0 = el('tr'); tr0.appendChild(el('td', { colspan: 6, class: 'empty' }, 'none')); body.appendChild(tr0); return; }
  feed.denials.forEach(function (d) {
    var tr = el('tr', { class: 'denial-row', 'data-source': d.source, 'data-destination': d.destination, 'data-policy': d.policy || '' });
    tr.appendChild(el('td', null, new Date(d.at).toLocaleTimeString()));
    tr.appendChild(el('td', null, displayName(byId[d.source]) || d.source));
    tr.appendChild(el('td', null, displayName(byId[d.destination]) || d.destination));
    tr.appendChild(el('td', null, d.kind === 'request' ? 'request (' + d.status + ')' : 'connection'));
    tr.appendChild(el('td', { class: 'policy' }, d.policy || 'no ALLOW policy matched'));
    tr.appendChild(el('td', null, d.reporter));
    body.appendChild(tr);
  });
}

var updates = 0;
function render(feed) {
  var byId = {};
  feed.vertices.forEach(function (v) { byId[v.id] = v; });
  document.getElementById('node').textContent = feed.node;
  document.getElementById('window').textContent = String(feed.windowSeconds);
  drawGraph(feed, byId);
  drawEdges(feed, byId);
  drawDenials(feed, byId);
  updates++;
  var st = document.getElementById('status');
  st.className = '';
  st.textContent = 'updated ' + new Date(feed.at).toLocaleTimeString();
  document.body.setAttribute('data-updates', String(updates));
  document.body.setAttribute('data-feed-at', String(feed.at));
}

function poll() {
  fetch(FEED, { cache: 'no-store' })
    .then(function (r) { if (!r.ok) throw new Error('HTTP ' + r.status); return r.json(); })
    .then(render)
    .catch(function (e) {
      var st = document.getElementById('status');
      st.className = 'down';
      st.textContent = 'cannot read ' + FEED + ' from the agent (' + e.message + '); is it still running?';
    })
    .then(function () { setTimeout(poll, POLL_MS); });
}
poll();
`;

/** The page, ready to serve. Pure. */
export function livePageHtml(pollMs: number = LIVE_POLL_MS): string {
  if (!(Number.isInteger(pollMs) && pollMs > 0)) throw new Error(`live page: pollMs must be a positive whole number of ms (got ${pollMs})`);
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Weft live</title>
<link rel="icon" href="data:,">
<style>${STYLE}</style>
</head>
<body>
<header><h1>Weft live</h1><span>node <b id="node">…</b></span><span>window <span id="window">…</span> s</span><span id="status">loading…</span></header>
<main>
<div id="graph"></div>
<h2>Edges (busiest first)</h2>
<table><thead><tr><th>Source</th><th>Destination</th><th>mTLS</th><th>Protocol</th><th>req/s</th><th>Success</th><th>p99</th><th>Requests</th><th>Denied</th><th>Conns open / total</th><th>Bytes → / ←</th></tr></thead>
<tbody id="edges"></tbody></table>
<h2>Recent denials</h2>
<table><thead><tr><th>Time</th><th>Source</th><th>Destination</th><th>What</th><th>Deciding policy</th><th>Reported by</th></tr></thead>
<tbody id="denials"></tbody></table>
</main>
<script>${SCRIPT.replace('__POLL_MS__', String(pollMs))}</script>
</body>
</html>
`;
}

/** The page as the admin port answers it. */
export function livePage(pollMs?: number): RawBody {
  return new RawBody('text/html; charset=utf-8', livePageHtml(pollMs), { 'content-security-policy': CSP, 'cache-control': 'no-store' });
}
