/**
 * Consistent pagination: the pages of one listing are cut from the snapshot its first page saw, so a
 * registry change between page 1 and page 2 never mixes two versions of the list; a cursor whose
 * snapshot is gone gets a clear error.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { RunningNode } from '../../cli/single.js';
import { runtimeServerSchema } from '../../shared/config/schema.js';
import { MCP_HEADERS, raw, rawSession, startGateway } from '../helpers/gateway.js';
import { ROOT } from '../helpers/net.js';

const SCRIPTED = `${ROOT}dist/test/fixtures/scripted-server.js`;
const scripted = (name: string, tools: string[]) => ({
  name,
  transport: 'stdio',
  command: process.execPath,
  args: [SCRIPTED],
  env: { FIXTURE_CATALOG: JSON.stringify({ tools }), FIXTURE_NAME: name },
});

let gw: RunningNode;
before(async () => {
  gw = await startGateway({
    aggregate: { pageSize: 4 },
    servers: [scripted('alpha', ['a1', 'a2', 'a3']), scripted('beta', ['b1', 'b2', 'b3'])],
  });
});
after(() => gw.close());

async function list(sid: string, cursor?: string): Promise<any> {
  const r = await raw(`${gw.url}/mcp`, {
    headers: { ...MCP_HEADERS, 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' },
    body: { jsonrpc: '2.0', id: 1, method: 'tools/list', params: cursor ? { cursor } : {} },
  });
  return r.json;
}

async function listAll(sid: string, from?: string): Promise<string[]> {
  const out: string[] = [];
  let cursor = from;
  do {
    const r = await list(sid, cursor);
    assert.ok(r.result, JSON.stringify(r));
    out.push(...r.result.tools.map((t: any) => t.name));
    cursor = r.result.nextCursor;
  } while (cursor);
  return out;
}

test('page 2 comes from the snapshot of page 1 although the registry changed in between', async () => {
  const sid = await rawSession(`${gw.url}/mcp`);
  const listing = await listAll(sid);
  assert.ok(listing.length > 8, 'several pages');
  // The same listing again, with beta removed and gamma added between its pages.
  const again = await list(sid);
  await gw.stores.registry.delete('beta', 'operator');
  await gw.stores.registry.upsert(runtimeServerSchema.parse(scripted('gamma', ['g1'])), 'operator');
  const deadline = Date.now() + 5000;
  while (gw.core.backend('beta') || !gw.core.backend('gamma')) {
    assert.ok(Date.now() < deadline, 'the registry change was not applied');
    await new Promise((r) => setTimeout(r, 20));
  }
  const rest = await listAll(sid, again.result.nextCursor);
  assert.deepEqual([...again.result.tools.map((t: any) => t.name), ...rest], listing);
  assert.ok(listing.some((n) => n.startsWith('beta__')));
  // A new listing sees the new registry (once gamma's process is up).
  let fresh = await listAll(sid);
  while (!fresh.includes('gamma__g1') && Date.now() < deadline + 5000) {
    await new Promise((r) => setTimeout(r, 50));
    fresh = await listAll(sid);
  }
  assert.ok(fresh.includes('gamma__g1') && !fresh.some((n) => n.startsWith('beta__')));
});

test("another session's cursor, or a forged one, is refused with a clear error", async () => {
  const one = await rawSession(`${gw.url}/mcp`);
  const two = await rawSession(`${gw.url}/mcp`);
  const first = await list(one);
  assert.ok(first.result.nextCursor);
  const stolen = await list(two, first.result.nextCursor);
  assert.equal(stolen.error.code, -32602);
  assert.equal(stolen.error.data.code, 'GW_INVALID_CURSOR');
  assert.match(stolen.error.message, /expired cursor for tools\/list: list again without a cursor/);
});
