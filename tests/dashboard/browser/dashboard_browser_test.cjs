// weftctl dashboard in a real browser: headless Debian Chromium driven by puppeteer-core against
// a live `weftctl up` tea shop. Checks what a person would: the page loads with no console
// errors, lists every pod with its enrolment (and updates after `weftctl label`), draws the
// graph with Service nodes (caller -> Service -> workload; a click on a Service opens its
// signals and its route) and, with the "Service nodes" toggle off, workload to workload, each
// edge with its security, shows golden signals equal to `weftctl stat`'s (within rounding),
// shows the store's policy and the denial on the cart's edge after `weftctl apply`, and says
// what is wrong (never a blank page) when the mesh is down or Prometheus is unreachable.
// Screenshots go to OUT_DIR.
//
// Environment: WEFTCTL, TEASHOP_MANIFESTS, TEASHOP_POLICIES, TEASHOP_TRAFFIC, NODE_MODULES (with
// puppeteer-core), OUT_DIR; CHROMIUM (default /usr/bin/chromium). Exit 77 = skipped (ctest's
// SKIP_RETURN_CODE): only when Chromium is missing or we are not root.
'use strict';

const { execFileSync, spawn } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

const env = (k, d) => process.env[k] || d;
const WEFTCTL = env('WEFTCTL');
const CHROMIUM = env('CHROMIUM', '/usr/bin/chromium');
const OUT = env('OUT_DIR', path.join(os.tmpdir(), 'weft-dashboard-browser'));
const SKIP = 77;

if (!fs.existsSync(CHROMIUM)) {
  console.log(`SKIPPED: no Chromium at ${CHROMIUM} (apt-get install chromium; bash scripts/deps.sh)`);
  process.exit(SKIP);
}
if (process.getuid() !== 0) {
  console.log('SKIPPED: weftctl up needs root (network namespaces, cgroups, iptables)');
  process.exit(SKIP);
}
const puppeteer = require(path.join(env('NODE_MODULES'), 'puppeteer-core'));

const name = `dashb${process.pid}`;
const stateRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'weft-dashb-'));
fs.mkdirSync(OUT, { recursive: true });
const children = [];
let failures = 0, passes = 0;

function weftctl(args, opts = {}) {
  const [cmd, ...rest] = args;
  return execFileSync(WEFTCTL, [cmd, '--name', name, '--state-root', stateRoot, ...rest],
    { encoding: 'utf8', timeout: opts.timeout || 120000, stdio: ['ignore', 'pipe', 'pipe'] });
}

function check(what, ok, detail = '') {
  if (ok) { passes++; console.log(`[  OK  ] ${what}`); } else {
    failures++;
    console.log(`[ FAIL ] ${what}${detail ? `\n         ${detail}` : ''}`);
  }
  return ok;
}

async function eventually(fn, ms = 20000) {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    try { last = await fn(); } catch (e) { last = undefined; }
    if (last) return last;
    if (Date.now() > end) return last;
    await new Promise((r) => setTimeout(r, 250));
  }
}

// Starts `weftctl dashboard ARGS`; resolves to its URL.
function dashboard(args) {
  return new Promise((resolve, reject) => {
    const p = spawn(WEFTCTL, ['dashboard', '--interval', '500ms', '--timeout', '1s', ...args],
      { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(p);
    let out = '';
    p.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/http:\/\/\S+\//);
      if (m) resolve(m[0]);
    });
    p.stderr.on('data', (d) => { out += d; });
    p.on('exit', (code) => reject(new Error(`weftctl dashboard exited ${code}: ${out}`)));
  });
}

async function shot(page, file) {
  const p = path.join(OUT, file);
  await page.screenshot({ path: p, fullPage: true });
  console.log(`         screenshot: ${p}`);
}

// The page's pods: {"ns/name": enrolled}.
const podsOf = (page) => page.$$eval('#pods tbody tr', (rows) =>
  Object.fromEntries(rows.map((r) => [r.dataset.pod, r.dataset.enrolled === 'true'])));
const edgesOf = (page) => page.evaluate(() => (window.weft.cy ? window.weft.cy.edges().map(
  (e) => ({ id: e.id(), security: e.data('security'), denied: e.data('denied_total'),
    label: e.data('label') })) : []));
const serviceNodesOf = (page) => page.evaluate(() => (window.weft.cy ? window.weft.cy
  .nodes('[kind = "service"]').map((n) => ({ id: n.id(), label: n.data('label'),
    shape: n.style('shape') })) : []));

// A real mouse click on a node of the graph (where Cytoscape drew it).
async function clickNode(page, id) {
  const at = await page.evaluate((nodeId) => {
    const n = window.weft.cy.getElementById(nodeId);
    if (n.empty()) return null;
    const box = document.querySelector('#graph').getBoundingClientRect();
    const p = n.renderedPosition();
    return { x: box.left + p.x, y: box.top + p.y };
  }, id);
  if (!at) return false;
  await page.mouse.click(at.x, at.y);
  return true;
}

// Both views of the graph: through Service nodes (the default), then, after a click on the
// toggle, workload to workload; the toggle is left on.
async function checkServiceNodes(page) {
  weftctl(['apply', '-f', path.join(env('TEASHOP_TRAFFIC'), 'catalogue-route.yaml'), '--wait']);
  weftctl(['exec', 'legacy/client', '--', 'weft-teashop', '--role', 'load', '--target',
    'http://frontend.shop', '--duration', '2s']);
  const viaServices = await eventually(async () => {
    const e = Object.fromEntries((await edgesOf(page)).map((x) => [x.id, x]));
    const ok = e['legacy/client->svc:shop/frontend']?.security === 'plaintext' &&
      e['svc:shop/frontend->shop/frontend'] &&
      e['shop/frontend->svc:shop/cart']?.security === 'mutual_tls' &&
      e['svc:shop/cart->shop/cart']?.security === 'mutual_tls' &&
      e['svc:shop/catalogue->shop/catalogue-0']?.security === 'same_node' &&
      e['svc:shop/catalogue->shop/catalogue-1']?.security === 'mutual_tls' &&
      !e['shop/frontend->shop/cart'];
    return ok && e;
  });
  check('graph with Service nodes: legacy client -> frontend.shop plaintext -> frontend, ' +
    'frontend -> cart.shop -> cart mutual_tls, catalogue.shop -> catalogue-0 same_node and ' +
    'catalogue-1 mutual_tls', !!viaServices, JSON.stringify(await edgesOf(page)));
  const services = await serviceNodesOf(page);
  const labels = services.map((n) => n.label).sort();
  check('every Service is a triangle labelled name.namespace',
    JSON.stringify(labels) === JSON.stringify(['cart.shop', 'catalogue.shop', 'frontend.shop',
      'recommendation.shop', 'store.shop']) && services.every((n) => n.shape === 'triangle'),
    JSON.stringify(services));
  check('a click on the catalogue Service node', await clickNode(page, 'svc:shop/catalogue'));
  const details = await eventually(() => page.$eval('#details', (d) =>
    d.dataset.kind === 'service' && d.textContent.includes('HTTPRoute shop/catalogue') &&
    /success\s*\d/.test(d.textContent) && d.textContent));
  check('opens its details: the route and its golden signals', !!details,
    await page.$eval('#details', (d) => d.textContent));
  await shot(page, 'dashboard-service-details.png');

  await page.click('#show-services');
  const direct = await eventually(async () => {
    const e = Object.fromEntries((await edgesOf(page)).map((x) => [x.id, x]));
    const ok = e['shop/frontend->shop/cart']?.security === 'mutual_tls' &&
      e['legacy/client->shop/frontend']?.security === 'plaintext' &&
      e['shop/frontend->shop/catalogue-0']?.security === 'same_node' &&
      (await serviceNodesOf(page)).length === 0;
    return ok && e;
  });
  check('Service nodes toggled off: workload to workload, frontend->cart mutual_tls, legacy ' +
    'client->frontend plaintext, frontend->catalogue-0 same_node', !!direct,
    JSON.stringify(await edgesOf(page)));
  await page.click('#show-services');
  check('toggled on again: the Service nodes are back',
    !!await eventually(async () => (await serviceNodesOf(page)).length === 5));
}

// "12.3ms" / "450µs" / "1.20s" -> seconds; "99.50%" -> fraction; "123 reqs" -> 123; with half
// a unit of the last digit shown (the rounding).
function parse(text) {
  const m = /^(\d+)(?:\.(\d+))?\s*(µs|ms|s|%|reqs|conns)?/.exec(text.trim());
  if (!m) return { value: NaN, rounding: 0 };
  const scale = { 'µs': 1e-6, ms: 1e-3, s: 1, '%': 0.01 }[m[3]] ?? 1;
  const decimals = m[2] ? m[2].length : 0;
  return { value: parseFloat(`${m[1]}.${m[2] || 0}`) * scale,
    rounding: 0.5 * 10 ** -decimals * scale };
}

// The page's golden signals (idle rows show totals) against `weftctl stat --window 0 --json`.
async function compareWithStat(page) {
  const stat = JSON.parse(weftctl(['stat', '--window', '0', '--json']));
  const rows = await page.$$eval('#signals tbody tr', (trs) => trs.map((r) => ({
    id: r.dataset.workload, mode: r.dataset.mode,
    cells: Object.fromEntries([...r.querySelectorAll('[data-field]')].map((c) =>
      [c.dataset.field, c.textContent])) })));
  const mismatches = [];
  for (const s of stat.filter((x) => x.protocol === 'http')) {
    const row = rows.find((r) => r.id === `${s.namespace}/${s.workload}`);
    if (!row || row.mode !== 'total') { mismatches.push(`${s.workload}: row ${row ? row.mode : 'missing'}`); continue; }
    const want = { success: s.request_success_rate, p50: s.request_p50_seconds,
      p95: s.request_p95_seconds, p99: s.request_p99_seconds, total: s.requests };
    for (const [f, v] of Object.entries(want)) {
      const got = parse(row.cells[f]);
      if (!(Math.abs(got.value - v) <= got.rounding * 1.001)) {
        mismatches.push(`${s.workload} ${f}: page "${row.cells[f]}" stat ${v}`);
      }
    }
  }
  return { ok: mismatches.length === 0 && stat.length > 0, mismatches };
}

async function healthyMesh(browser) {
  weftctl(['up', '--nodes', '2', '--capture', 'iptables', env('TEASHOP_MANIFESTS')],
    { timeout: 180000 });
  const url = await dashboard(['--name', name, '--state-root', stateRoot, '--window', '3s']);
  const page = await browser.newPage();
  await page.setViewport({ width: 1500, height: 1200 });
  const consoleErrors = [];
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => consoleErrors.push(e.message));
  await page.goto(url, { waitUntil: 'load' });

  let pods = await eventually(async () => {
    const p = await podsOf(page);
    return Object.keys(p).length === 7 && p;
  });
  check('every pod of the tea shop is listed', pods && Object.keys(pods).length === 7,
    JSON.stringify(pods));
  check('none enrolled before weftctl label', pods && Object.values(pods).every((e) => !e));

  weftctl(['label', 'namespace', 'shop', 'weft.dev/mesh=enabled', '--wait']);
  pods = await eventually(async () => {
    const p = await podsOf(page);
    return p['shop/frontend'] && p['shop/store'] && !p['legacy/client'] && p;
  });
  check('the page shows the shop enrolled after weftctl label, the legacy client not', !!pods,
    JSON.stringify(pods));

  const tapRows = page.waitForSelector('#tap tbody tr', { timeout: 20000 }).then(() => true,
    () => false);
  weftctl(['exec', 'legacy/client', '--', 'weft-teashop', '--role', 'load', '--target',
    'http://frontend.shop', '--duration', '3s']);
  check('live requests appear in the page during the load', await tapRows);
  await checkServiceNodes(page);
  await shot(page, 'dashboard-enrolled.png');

  const cmp = await eventually(async () => {
    const c = await compareWithStat(page);
    return c.ok ? c : undefined;
  }, 25000) || await compareWithStat(page);
  check('golden signals match weftctl stat --window 0 (within rounding)', cmp.ok,
    cmp.mismatches.join('; '));

  weftctl(['apply', '-f', path.join(env('TEASHOP_POLICIES'), 'store-deny-except-frontend.yaml'),
    '--wait']);
  try {
    weftctl(['exec', 'shop/cart', '--', 'curl', '-sS', '-m', '3', 'http://store.shop/healthz']);
  } catch (e) { /* refused, as it should be */ }
  const policy = await eventually(() => page.$eval('#policies tr[data-policies="shop/store"]',
    (r) => r.textContent.includes('store-deny-except-frontend')));
  check('the store\'s policy is listed after weftctl apply', !!policy);
  const denied = await eventually(async () => {
    const e = (await edgesOf(page)).find((x) => x.id === 'shop/cart->svc:shop/store');
    return e && e.denied >= 1 && e;
  });
  check('the denial shows on the cart -> store.shop edge', !!denied && /denied/.test(denied.label),
    JSON.stringify(denied));
  await page.evaluate(() => { window.weft.selected = 'shop/cart->svc:shop/store'; });
  await eventually(() => page.$eval('#details', (d) => d.textContent.includes('denied')));
  await shot(page, 'dashboard.png');
  check('no console errors while the mesh is healthy', consoleErrors.length === 0,
    consoleErrors.join('\n         '));
  return page;
}

async function brokenMesh(browser, page) {
  // The mesh goes down under the open page.
  weftctl(['down']);
  const banner = await eventually(() => page.$eval('#banner', (b) => !b.hidden &&
    b.textContent.includes('no mesh named') && b.textContent));
  check('mesh down: the page says so', !!banner, String(banner));
  const graphError = await page.$eval('.error[data-for="graph"]', (b) => !b.hidden);
  check('mesh down: the graph panel shows the error', graphError);
  await shot(page, 'dashboard-mesh-down.png');
  // Prometheus unreachable (and no weftd): every panel says what is wrong.
  const url = await dashboard(['--prometheus', 'http://127.0.0.1:1', '--weftd', '127.0.0.1:1']);
  const p2 = await browser.newPage();
  await p2.setViewport({ width: 1500, height: 900 });
  await p2.goto(url, { waitUntil: 'load' });
  const prom = await eventually(() => p2.$eval('.error[data-for="graph"]', (b) => !b.hidden &&
    b.textContent.includes('Prometheus at http://127.0.0.1:1') && b.textContent));
  check('Prometheus unreachable: the graph panel names it', !!prom, String(prom));
  const text = await p2.$eval('body', (b) => b.innerText.length);
  check('never a blank page', text > 200);
  await shot(p2, 'dashboard-prometheus-unreachable.png');
}

async function main() {
  const browser = await puppeteer.launch({ executablePath: CHROMIUM, headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
  try {
    const page = await healthyMesh(browser);
    await brokenMesh(browser, page);
  } finally {
    await browser.close();
  }
}

main().catch((e) => check('the test ran to its end', false, e.stack)).finally(() => {
  for (const c of children) c.kill('SIGTERM');
  try { weftctl(['down']); } catch (e) { /* already down */ }
  fs.rmSync(stateRoot, { recursive: true, force: true });
  console.log(`${passes} passed, ${failures} failed`);
  process.exit(failures === 0 && passes > 0 ? 0 : 1);
});
