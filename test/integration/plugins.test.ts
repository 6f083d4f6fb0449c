/** Pipeline plugins loaded from config: hooks, interceptors and error handling on a live request path. */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { RunningNode } from '../../cli/single.js';
import { startSingleNode } from '../../cli/single.js';
import { validateConfig } from '../../shared/config/load.js';
import { createLogger } from '../../shared/log.js';
import { MCP_HEADERS, raw, rawSession } from '../helpers/gateway.js';
import { ROOT } from '../helpers/net.js';

let gw: RunningNode;
let mcp: string;
let sid: string;
const call = async (id: number, name: string) =>
  (
    await raw(mcp, {
      headers: { ...MCP_HEADERS, 'mcp-session-id': sid },
      body: { jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: {} } },
    })
  ).json;

before(async () => {
  const config = validateConfig(
    {
      listen: { port: 0 },
      log: { level: 'silent' },
      plugins: [{ module: './plugin-example.js', options: { blockedTools: ['scripted__forbidden'] } }],
      servers: [
        {
          name: 'scripted',
          transport: 'stdio',
          command: process.execPath,
          args: [`${ROOT}dist/test/fixtures/scripted-server.js`],
          env: { FIXTURE_CATALOG: JSON.stringify({ tools: ['hello', 'forbidden'] }) },
        },
      ],
    },
    'plugins',
    {},
  );
  gw = await startSingleNode(config, { log: createLogger('silent'), baseDir: `${ROOT}dist/test/fixtures` });
  mcp = `${gw.url}/mcp`;
  sid = await rawSession(mcp);
});
after(async () => gw?.close());

test('a pre-processing hook refuses a request with a clear error', async () => {
  const r = await call(1, 'scripted__forbidden');
  assert.equal(r.error.data.code, 'GW_PLUGIN_ERROR');
  assert.match(r.error.message, /blocked by policy/);
});

test('a request interceptor rewrites the request and a response interceptor stamps the result', async () => {
  const r = await call(2, 'scripted__rewrite_me');
  assert.deepEqual(JSON.parse(r.result.content[0].text), { tool: 'hello', arguments: { rewritten: true } });
  assert.equal(typeof r.result._meta['example/seen'], 'number');
});

test('a plugin path that does not exist stops start-up with a clear error', async () => {
  const config = validateConfig(
    { listen: { port: 0 }, log: { level: 'silent' }, plugins: [{ module: './missing-plugin.js' }] },
    'p',
    {},
  );
  await assert.rejects(
    startSingleNode(config, { log: createLogger('silent'), baseDir: `${ROOT}dist/test/fixtures` }),
    /missing-plugin/,
  );
});
