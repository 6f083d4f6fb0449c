/** Pipeline plugins loaded from config: hooks, interceptors and error handling on a live request path. */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
      plugins: [
        {
          module: './plugin-example.js',
          options: {
            blockedTools: ['scripted__forbidden'],
            softFail: ['nowhere__optional'],
            crashOn: ['scripted__hello_crash'],
          },
        },
      ],
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

test('a hook that throws a plain error gives GW_PLUGIN_ERROR naming the plugin', async () => {
  const r = await call(7, 'scripted__hello_crash');
  assert.equal(r.error.code, -32603);
  assert.equal(r.error.data.code, 'GW_PLUGIN_ERROR');
  assert.equal(r.error.data.plugin, 'example');
  assert.match(r.error.message, /plugin "example" failed: a bug in the plugin/);
});

test('a request interceptor rewrites the request and a response interceptor stamps the result', async () => {
  const r = await call(2, 'scripted__rewrite_me');
  assert.deepEqual(JSON.parse(r.result.content[0].text), { tool: 'hello', arguments: { rewritten: true } });
  assert.equal(typeof r.result._meta['example/seen'], 'number');
});

test('an error handler recovers a failed request; the post-hook sees every answer', async () => {
  const before = (await call(3, 'scripted__hello')).result._meta['example/answered'];
  const r = await call(4, 'nowhere__optional'); // no such server or tool: the handler turns the error into a result
  assert.ok(r.result, JSON.stringify(r));
  assert.deepEqual([r.result.content, r.result.isError], [[], false]);
  assert.equal(
    typeof r.result._meta['example/seen'],
    'number',
    'response interceptors see recovered answers',
  );
  const unknown = await call(5, 'nowhere__missing'); // not soft: the error stays
  assert.equal(unknown.error.data.code, 'GW_UNKNOWN_TOOL');
  const after = (await call(6, 'scripted__hello')).result._meta['example/answered'];
  assert.equal(after - before, 3, 'the post-hook counted the three answers in between');
});

test('a plugin named as an npm package resolves from the config file directory', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mcpgw-plugin-'));
  const pkg = join(dir, 'node_modules', 'mcpgw-plugin-tag');
  mkdirSync(pkg, { recursive: true });
  writeFileSync(
    join(pkg, 'package.json'),
    JSON.stringify({ name: 'mcpgw-plugin-tag', type: 'module', main: 'index.js' }),
  );
  writeFileSync(
    join(pkg, 'index.js'),
    `export default (options) => ({
      name: 'tag',
      interceptResponse(res) {
        if ('error' in res) return;
        return { ...res, result: { ...res.result, _meta: { ...res.result._meta, 'tag/by': options.tag } } };
      },
    });\n`,
  );
  const config = validateConfig(
    {
      listen: { port: 0 },
      log: { level: 'silent' },
      plugins: [{ module: 'mcpgw-plugin-tag', options: { tag: 'from-npm' } }],
      servers: [
        {
          name: 'scripted',
          transport: 'stdio',
          command: process.execPath,
          args: [`${ROOT}dist/test/fixtures/scripted-server.js`],
          env: { FIXTURE_CATALOG: JSON.stringify({ tools: ['hello'] }) },
        },
      ],
    },
    'npm-plugin',
    {},
  );
  const node = await startSingleNode(config, { log: createLogger('silent'), baseDir: dir });
  try {
    const url = `${node.url}/mcp`;
    const s = await rawSession(url);
    const r = await raw(url, {
      headers: { ...MCP_HEADERS, 'mcp-session-id': s },
      body: {
        jsonrpc: '2.0',
        id: 1,
        method: 'tools/call',
        params: { name: 'scripted__hello', arguments: {} },
      },
    });
    assert.equal(r.json.result._meta['tag/by'], 'from-npm');
  } finally {
    await node.close();
    rmSync(dir, { recursive: true, force: true });
  }
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
