/**
 * The dashboard: one self-contained page (no CDN, no network beyond this gateway). It asks for the admin
 * token when the API answers 401, keeps it in sessionStorage (never in a URL), reads `/admin/live` (a
 * snapshot per second over SSE, read with fetch so that the token travels in a header) and
 * `/admin/topology`, and draws its charts as hand-written SVG.
 */
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>mcpgw dashboard</title>
<style>
  :root { --bg:#0f1419; --panel:#182029; --line:#2a3542; --text:#d8e0e8; --muted:#8a98a8; --ok:#3fb950;
          --bad:#f85149; --warn:#d29922; --a:#58a6ff; --b:#bc8cff; }
  * { box-sizing: border-box; }
  body { margin:0; font:14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; background:var(--bg); color:var(--text); }
  header { display:flex; align-items:center; gap:16px; padding:12px 20px; border-bottom:1px solid var(--line); }
  header h1 { font-size:18px; margin:0; }
  .pill { padding:2px 10px; border-radius:12px; background:var(--panel); border:1px solid var(--line); color:var(--muted); }
  #status.live { color:var(--ok); border-color:var(--ok); }
  #status.down { color:var(--bad); border-color:var(--bad); }
  main { padding:16px 20px; display:grid; gap:16px; grid-template-columns: repeat(12, 1fr); }
  .panel { background:var(--panel); border:1px solid var(--line); border-radius:8px; padding:12px 14px; }
  .panel h2 { margin:0 0 8px; font-size:13px; text-transform:uppercase; letter-spacing:.06em; color:var(--muted); font-weight:600; }
  .kpis { grid-column: span 12; display:grid; grid-template-columns: repeat(6, 1fr); gap:16px; }
  .kpi .v { font-size:26px; font-weight:600; }
  .kpi .l { color:var(--muted); font-size:12px; }
  .w4 { grid-column: span 4; } .w6 { grid-column: span 6; } .w8 { grid-column: span 8; } .w12 { grid-column: span 12; }
  svg { width:100%; height:140px; display:block; }
  table { width:100%; border-collapse:collapse; }
  th, td { text-align:left; padding:4px 6px; border-bottom:1px solid var(--line); font-variant-numeric: tabular-nums; }
  th { color:var(--muted); font-weight:500; font-size:12px; }
  td.n, th.n { text-align:right; }
  .dot { display:inline-block; width:9px; height:9px; border-radius:50%; margin-right:6px; background:var(--muted); }
  .dot.ready { background:var(--ok); } .dot.failed { background:var(--bad); } .dot.restarting, .dot.starting { background:var(--warn); }
  .empty { color:var(--muted); font-style:italic; }
  .legend span { margin-right:12px; font-size:12px; color:var(--muted); }
  .legend i { display:inline-block; width:10px; height:3px; margin-right:4px; vertical-align:middle; }
  #login { grid-column: span 12; display:none; }
  #login input { background:var(--bg); color:var(--text); border:1px solid var(--line); border-radius:6px; padding:6px 8px; width:320px; }
  #login button { background:var(--a); color:#fff; border:0; border-radius:6px; padding:7px 14px; cursor:pointer; }
  pre { margin:0; white-space:pre-wrap; color:var(--muted); font-size:12px; }
</style>
</head>
<body>
<header>
  <h1>mcpgw</h1>
  <span class="pill" id="node">node: …</span>
  <span class="pill" id="status">connecting…</span>
  <span class="pill" id="updated">–</span>
</header>
<main>
  <section class="panel" id="login">
    <h2>Admin token</h2>
    <form id="loginForm"><input type="password" id="token" autocomplete="off" placeholder="admin.token">
    <button type="submit">Connect</button> <span id="loginMsg" class="empty"></span></form>
  </section>
  <section class="kpis">
    <div class="panel kpi"><div class="l">Requests (window)</div><div class="v" id="kRequests">0</div></div>
    <div class="panel kpi"><div class="l">Rate (req/s, last 10 s)</div><div class="v" id="kRate">0</div></div>
    <div class="panel kpi"><div class="l">Error rate (window)</div><div class="v" id="kErrors">0%</div></div>
    <div class="panel kpi"><div class="l">Latency p50 / p95 (ms)</div><div class="v" id="kLatency">–</div></div>
    <div class="panel kpi"><div class="l">Sessions</div><div class="v" id="kSessions">0</div></div>
    <div class="panel kpi"><div class="l">Quota refusals</div><div class="v" id="kQuota">0</div></div>
  </section>
  <section class="panel w4"><h2>Request rate (req/s, 60 s)</h2><svg id="cRate" viewBox="0 0 400 140" preserveAspectRatio="none"></svg></section>
  <section class="panel w4"><h2>Latency (ms, 60 s)</h2><svg id="cLatency" viewBox="0 0 400 140" preserveAspectRatio="none"></svg>
    <div class="legend"><span><i style="background:var(--a)"></i>p50</span><span><i style="background:var(--b)"></i>p95</span></div></section>
  <section class="panel w4"><h2>Errors (per s, 60 s)</h2><svg id="cErrors" viewBox="0 0 400 140" preserveAspectRatio="none"></svg></section>
  <section class="panel w6"><h2>Servers on this node</h2><table id="servers"><thead><tr><th>server</th><th>transport</th><th>health</th></tr></thead><tbody></tbody></table></section>
  <section class="panel w6"><h2>Topology</h2><div id="topology" class="empty">loading…</div></section>
  <section class="panel w4"><h2>Top tools</h2><table id="tools"><thead><tr><th>tool</th><th class="n">calls</th><th class="n">errors</th><th class="n">p95 ms</th></tr></thead><tbody></tbody></table></section>
  <section class="panel w4"><h2>Top tenants</h2><table id="tenants"><thead><tr><th>tenant</th><th class="n">requests</th><th class="n">errors</th><th class="n">p95 ms</th></tr></thead><tbody></tbody></table></section>
  <section class="panel w4"><h2>Quota refusals by dimension</h2><table id="quota"><thead><tr><th>dimension</th><th class="n">refusals</th></tr></thead><tbody></tbody></table></section>
</main>
<script>
(() => {
  'use strict';
  const KEY = 'mcpgw.adminToken';
  const $ = (id) => document.getElementById(id);
  let stopped = false;
  let topologyStarted = false;
  const headers = () => {
    const t = sessionStorage.getItem(KEY);
    return t ? { authorization: 'Bearer ' + t } : {};
  };
  const text = (el, v) => { el.textContent = String(v); };
  const fmt = (x) => x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2);
  const cell = (tr, v, cls) => { const td = document.createElement('td'); td.textContent = String(v); if (cls) td.className = cls; tr.appendChild(td); return td; };
  const fill = (tableId, rows, toCells, emptyText) => {
    const body = $(tableId).tBodies[0];
    body.replaceChildren();
    if (rows.length === 0) { const tr = body.insertRow(); const td = cell(tr, emptyText, 'empty'); td.colSpan = 4; return; }
    for (const r of rows) toCells(body.insertRow(), r);
  };

  function needLogin(msg) {
    $('login').style.display = 'block';
    text($('loginMsg'), msg || '');
    setStatus('down', 'token needed');
  }
  $('loginForm').addEventListener('submit', (e) => {
    e.preventDefault();
    sessionStorage.setItem(KEY, $('token').value);
    $('token').value = '';
    $('login').style.display = 'none';
    connect();
  });
  function setStatus(cls, t) { const s = $('status'); s.className = 'pill ' + cls; text(s, t); }

  // --- charts: plain SVG paths --------------------------------------------------------------------
  const NS = 'http://www.w3.org/2000/svg';
  function chart(svg, seriesList, opts) {
    const W = 400, H = 140, P = 18;
    svg.replaceChildren();
    const all = seriesList.flatMap((s) => s.values);
    const max = Math.max(opts.minMax || 1, ...all);
    const n = Math.max(1, (seriesList[0] ? seriesList[0].values.length : 1) - 1);
    for (let g = 0; g <= 2; g++) {
      const y = P + (H - 2 * P) * g / 2;
      const line = document.createElementNS(NS, 'line');
      line.setAttribute('x1', '30'); line.setAttribute('x2', String(W)); line.setAttribute('y1', String(y)); line.setAttribute('y2', String(y));
      line.setAttribute('stroke', '#2a3542'); svg.appendChild(line);
      const lab = document.createElementNS(NS, 'text');
      lab.setAttribute('x', '0'); lab.setAttribute('y', String(y + 4)); lab.setAttribute('fill', '#8a98a8'); lab.setAttribute('font-size', '10');
      lab.textContent = fmt(max * (1 - g / 2)); svg.appendChild(lab);
    }
    for (const s of seriesList) {
      const pts = s.values.map((v, i) => [30 + (W - 30) * i / n, P + (H - 2 * P) * (1 - v / max)]);
      if (opts.bars) {
        const bw = Math.max(1, (W - 30) / (n + 1) - 1);
        s.values.forEach((v, i) => {
          if (v <= 0) return;
          const r = document.createElementNS(NS, 'rect');
          const y = P + (H - 2 * P) * (1 - v / max);
          r.setAttribute('x', String(30 + (W - 30) * i / (n + 1))); r.setAttribute('y', String(y));
          r.setAttribute('width', String(bw)); r.setAttribute('height', String(H - P - y)); r.setAttribute('fill', s.color);
          svg.appendChild(r);
        });
        continue;
      }
      const path = document.createElementNS(NS, 'path');
      path.setAttribute('d', pts.map((p, i) => (i ? 'L' : 'M') + p[0].toFixed(1) + ' ' + p[1].toFixed(1)).join(' '));
      path.setAttribute('fill', 'none'); path.setAttribute('stroke', s.color); path.setAttribute('stroke-width', '2');
      svg.appendChild(path);
    }
  }

  // --- live snapshot --------------------------------------------------------------------------------
  function render(s) {
    text($('node'), 'node: ' + s.node.role + ' · region ' + s.node.region);
    text($('updated'), new Date(s.t).toLocaleTimeString());
    const w = s.window || { count: 0, errors: 0, errorRate: 0, p50Ms: 0, p95Ms: 0 };
    text($('kRequests'), w.count);
    const last10 = s.series.slice(-10);
    text($('kRate'), fmt(last10.reduce((a, p) => a + p.count, 0) / Math.max(1, last10.length)));
    text($('kErrors'), (w.errorRate * 100).toFixed(1) + '%');
    text($('kLatency'), w.count ? fmt(w.p50Ms) + ' / ' + fmt(w.p95Ms) : '–');
    text($('kSessions'), s.sessions);
    const q = Object.entries(s.quotaRefusals || {});
    text($('kQuota'), q.reduce((a, e) => a + e[1], 0));
    chart($('cRate'), [{ values: s.series.map((p) => p.count), color: '#58a6ff' }], { bars: true });
    chart($('cLatency'), [
      { values: s.series.map((p) => p.p50Ms), color: '#58a6ff' },
      { values: s.series.map((p) => p.p95Ms), color: '#bc8cff' },
    ], {});
    chart($('cErrors'), [{ values: s.series.map((p) => p.errors), color: '#f85149' }], { bars: true });
    fill('servers', s.servers, (tr, r) => {
      cell(tr, r.name); cell(tr, r.transport || '?');
      const td = cell(tr, ''); const dot = document.createElement('span'); dot.className = 'dot ' + r.state;
      td.appendChild(dot); td.appendChild(document.createTextNode(r.state + (r.error ? ' (' + r.error + ')' : '')));
      td.dataset.state = r.state; tr.dataset.server = r.name;
    }, 'no servers configured');
    fill('tools', s.topTools, (tr, r) => { cell(tr, r.key); cell(tr, r.count, 'n'); cell(tr, r.errors, 'n'); cell(tr, fmt(r.p95Ms), 'n'); }, 'no tool calls yet');
    fill('tenants', s.topTenants, (tr, r) => { cell(tr, r.key); cell(tr, r.count, 'n'); cell(tr, r.errors, 'n'); cell(tr, fmt(r.p95Ms), 'n'); }, 'no requests yet');
    fill('quota', q.map((e) => ({ d: e[0], n: e[1] })), (tr, r) => { cell(tr, r.d); cell(tr, r.n, 'n'); }, 'no refusals');
  }

  async function connect() {
    setStatus('', 'connecting…');
    try {
      const res = await fetch('/admin/live', { headers: headers(), cache: 'no-store' });
      if (res.status === 401) return needLogin(sessionStorage.getItem(KEY) ? 'wrong token' : '');
      if (!res.ok || !res.body) throw new Error('HTTP ' + res.status);
      setStatus('live', 'live');
      if (!topologyStarted) { topologyStarted = true; void topology(); }
      const reader = res.body.getReader();
      const dec = new TextDecoder();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf('\\n\\n')) >= 0) {
          const ev = buf.slice(0, i); buf = buf.slice(i + 2);
          const data = ev.split('\\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5)).join('\\n');
          if (data) render(JSON.parse(data));
        }
      }
      throw new Error('stream ended');
    } catch (err) {
      setStatus('down', 'disconnected: ' + err.message);
      if (!stopped) setTimeout(connect, 2000);
    }
  }

  // --- topology (extensible JSON sections) ----------------------------------------------------------
  async function topology() {
    try {
      const res = await fetch('/admin/topology', { headers: headers(), cache: 'no-store' });
      if (!res.ok) return;
      const t = await res.json();
      const box = $('topology'); box.className = ''; box.replaceChildren();
      for (const [name, value] of Object.entries(t)) {
        if (name === 'servers') continue;
        const h = document.createElement('h2'); h.textContent = name; h.style.marginTop = '8px'; box.appendChild(h);
        const items = Array.isArray(value) ? value : [value];
        if (items.length === 0) { const e = document.createElement('div'); e.className = 'empty'; e.textContent = 'none'; box.appendChild(e); continue; }
        const pre = document.createElement('pre');
        pre.textContent = items.map((v) => typeof v === 'object' && v ? Object.entries(v).map((e) => e[0] + ': ' + (typeof e[1] === 'object' ? JSON.stringify(e[1]) : e[1])).join('  ·  ') : String(v)).join('\\n');
        box.appendChild(pre);
      }
    } catch { /* shown as stale; the live stream reports the connection */ }
    if (!stopped) setTimeout(topology, 5000);
  }

  connect();
})();
</script>
</body>
</html>
`;
