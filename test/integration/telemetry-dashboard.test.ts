/**
 * The dashboard in a real browser (Debian's headless Chromium driven by playwright-core): it asks for the
 * admin token, keeps it in sessionStorage (never the URL), shows live traffic (the request count rising,
 * the top tools) and each server's health, and fetches nothing but the gateway. A screenshot is saved
 * (its path printed) for a human to look at.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { chromium, type BrowserContext } from 'playwright-core';
import { startSingleNode, type RunningNode } from '../../cli/single.js';
import { validateConfig } from '../../shared/config/load.js';
import { createLogger } from '../../shared/log.js';
import { recorderHttp } from '../fixtures/trace-recorder.js';
import { ROOT } from '../helpers/net.js';
import { connectSdk, type SdkClient } from '../helpers/sdk-clients.js';

const ADMIN_TOKEN = 'dashboard-admin-token-5f0c2a9e';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

let http: { url: string; server: Server };
let gw: RunningNode;
let client: SdkClient;
let browser: BrowserContext;
let profile: string;

before(async () => {
  http = await recorderHttp();
  const config = validateConfig(
    {
      listen: { host: '127.0.0.1', port: 0 },
      log: { level: 'silent' },
      admin: { token: ADMIN_TOKEN },
      servers: [
        {
          name: 'recstdio',
          transport: 'stdio',
          command: process.execPath,
          args: [`${ROOT}dist/test/fixtures/trace-recorder.js`],
        },
        { name: 'rechttp', transport: 'streamable-http', url: http.url },
        // A server that is down, so the page has a failed health to show.
        {
          name: 'gone',
          transport: 'streamable-http',
          url: 'http://127.0.0.1:9/mcp',
          timeouts: { connectMs: 500 },
        },
      ],
    },
    'test',
    {},
  );
  gw = await startSingleNode(config, { log: createLogger('silent') });
  client = await connectSdk('v2', `${gw.url}/mcp`);
  profile = mkdtempSync(join(tmpdir(), 'mcpgw-chromium-'));
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    args: CHROMIUM_ARGS,
    headless: true,
    viewport: { width: 1400, height: 900 },
  });
});

after(async () => {
  await browser?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
  await client?.close();
  await gw?.close();
  http?.server.close();
});

it('the dashboard asks for the token, then shows live traffic and server health', async () => {
  const page = await browser.newPage();
  const foreign: string[] = [];
  page.on('request', (r) => {
    if (!r.url().startsWith(gw.url)) foreign.push(r.url());
  });
  await page.goto(`${gw.url}/dashboard`);
  await page.locator('#login').waitFor({ state: 'visible' });
  await page.fill('#token', ADMIN_TOKEN);
  await page.click('#loginForm button');
  await page.locator('#status.live').waitFor();
  assert.equal(
    await page.evaluate(() => (globalThis as any).sessionStorage.getItem('mcpgw.adminToken')),
    ADMIN_TOKEN,
  );
  assert.ok(!page.url().includes(ADMIN_TOKEN), 'the token is never in the URL');

  const shown = async () => Number(await page.locator('#kRequests').textContent());
  const start = await shown();
  // Traffic while the page watches: the count must rise on its own (the page is not reloaded).
  let stop = false;
  const traffic = (async () => {
    let i = 0;
    while (!stop) {
      await client.callTool({ name: i % 3 === 0 ? 'recstdio__whoami' : 'rechttp__whoami', arguments: {} });
      if (++i % 10 === 0) await client.callTool({ name: 'nosuch__tool', arguments: {} }).catch(() => {});
    }
  })();
  try {
    await page.waitForFunction(
      (n) => Number((globalThis as any).document.getElementById('kRequests').textContent) >= n,
      start + 30,
      {
        timeout: 20_000,
      },
    );
  } finally {
    stop = true;
    await traffic;
  }
  assert.ok((await shown()) >= start + 30);

  await page.locator('tr[data-server="rechttp"] td[data-state="ready"]').waitFor();
  await page.locator('tr[data-server="recstdio"] td[data-state="ready"]').waitFor();
  await page.locator('tr[data-server="gone"] td[data-state="failed"]').waitFor();
  const tools = await page.locator('#tools tbody').textContent();
  assert.match(tools ?? '', /rechttp__whoami/);
  const tenants = await page.locator('#tenants tbody').textContent();
  assert.match(tenants ?? '', /default/);
  assert.match((await page.locator('#node').textContent()) ?? '', /single · region local/);
  assert.ok((await page.locator('#cRate rect').count()) > 0, 'the rate chart has bars');
  assert.ok((await page.locator('#cLatency path').count()) === 2, 'p50 and p95 lines');
  await page.locator('#topology h2', { hasText: 'regions' }).waitFor();

  const dir = join(ROOT, 'dist', 'test-output');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, 'dashboard.png');
  await page.screenshot({ path: file, fullPage: true });
  process.stdout.write(`dashboard screenshot: ${file}\n`);
  assert.deepEqual(foreign, [], 'the page loads nothing from anywhere but the gateway');

  // A reload keeps the session's token: no second prompt.
  await page.reload();
  await page.locator('#status.live').waitFor();
  assert.equal(await page.locator('#login').isVisible(), false);
  await page.close();
});

it("the page's live feed refuses a wrong token", async () => {
  const r = await fetch(`${gw.url}/admin/live`, { headers: { authorization: 'Bearer wrong-token-1234567' } });
  assert.equal(r.status, 401);
  await r.body?.cancel();
});
