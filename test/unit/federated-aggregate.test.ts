/**
 * The federated aggregate's merging and routing, over in-process CoreServices that answer like cores
 * (the cluster test, test/cluster/federation-aggregate.test.ts, runs it over real processes): remote
 * items are appended to the last local page under aggregate names (long ones hashed and mapped back),
 * a scope this region lists stays local, a residency-excluded scope is not listed, policy hides items,
 * a remote core's list_changed reaches the client once and the next list is read afresh.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createLogger } from '../../shared/log.js';
import type { JsonRpcMessage, JsonRpcRequest, JsonRpcResponse } from '../../shared/mcp/jsonrpc.js';
import type { CoreService, CoreSessionHandle, OpenSessionOptions } from '../../shared/ports/core-service.js';
import { FederatedAggregate, type FederatedScope } from '../../edge/forward/federated-aggregate.js';

type Catalog = Record<string, string[]>;

/** A CoreService whose sessions list `catalog[scope]` (two per page) and echo calls with their scope. */
function fakeCore(catalog: Catalog, calls: string[] = []) {
  const sinks: Array<(m: JsonRpcMessage) => void> = [];
  const core: CoreService = {
    hasScope: () => true,
    readiness: () => ({ ready: true, servers: {} }),
    close: async () => {},
    openSession(o: OpenSessionOptions): CoreSessionHandle {
      sinks.push((m) => o.unrelated.send(m));
      const reply = (req: JsonRpcRequest, result: Record<string, unknown>): JsonRpcResponse => ({
        jsonrpc: '2.0',
        id: req.id,
        result,
      });
      return {
        id: o.id,
        async request(req) {
          if (req.method === 'initialize')
            return reply(req, { capabilities: { tools: {} }, protocolVersion: '2025-06-18' });
          if (req.method === 'tools/list') {
            const all = catalog[o.scope] ?? [];
            const start = Number(req.params?.cursor ?? 0);
            const page = all
              .slice(start, start + 2)
              .map((name) => ({ name, inputSchema: { type: 'object' } }));
            return reply(req, {
              tools: page,
              ...(start + 2 < all.length && { nextCursor: String(start + 2) }),
            });
          }
          if (req.method === 'tools/call') {
            calls.push(`${o.scope}:${String(req.params?.name)}`);
            return reply(req, {
              content: [{ type: 'text', text: `${o.scope}:${String(req.params?.name)}` }],
            });
          }
          return reply(req, {});
        },
        notify: () => {},
        respond: () => true,
        close: async () => {},
        detach: async () => {},
      };
    },
  };
  return { core, push: (m: JsonRpcMessage) => sinks.forEach((s) => s(m)) };
}

let n = 0;
const req = (method: string, params: Record<string, unknown> = {}): JsonRpcRequest => ({
  jsonrpc: '2.0',
  id: ++n,
  method,
  params,
});

async function listAll(s: CoreSessionHandle): Promise<string[]> {
  const names: string[] = [];
  let cursor: unknown;
  do {
    const r = (await s.request(req('tools/list', cursor === undefined ? {} : { cursor }), {
      send() {},
    })) as unknown as {
      result: { tools: Array<{ name: string }>; nextCursor?: string };
    };
    names.push(...r.result.tools.map((t) => t.name));
    cursor = r.result.nextCursor;
  } while (cursor !== undefined);
  return names;
}

function setup(scopes: FederatedScope[], visible?: (scope: string, name: string) => boolean) {
  const calls: string[] = [];
  const local = fakeCore({ aggregate: ['weather__forecast', 'weather__radar', 'shared__echo'] }, calls);
  const remote = fakeCore(
    {
      maps: ['route', 'x'.repeat(70)],
      shared: ['echo'],
      finance: ['ledger__post', 'ledger__balance'],
      secret: ['leak'],
    },
    calls,
  );
  const fed = new FederatedAggregate({
    inner: local.core,
    remote: remote.core,
    scopes: () => scopes,
    ...(visible && { visible: (_p, _k, scope, name) => visible(scope, name) }),
    log: createLogger('silent'),
  });
  const unrelated: JsonRpcMessage[] = [];
  const s = fed.openSession({
    id: 's1',
    principal: 'anonymous',
    scope: 'aggregate',
    unrelated: { send: (m) => unrelated.push(m) },
  });
  return { fed, s, calls, unrelated, remote };
}

test('remote scopes are appended to the last page, named as in the aggregate, and calls go to them', async () => {
  const { s, calls } = setup([
    { scope: 'maps', domain: false, allowed: true },
    { scope: 'finance', domain: true, allowed: true },
    { scope: 'shared', domain: false, allowed: true },
    { scope: 'secret', domain: false, allowed: false },
  ]);
  await s.request(req('initialize', { protocolVersion: '2025-06-18', capabilities: {} }), { send() {} });
  const names = await listAll(s);
  const long = names.find((x) => x.startsWith('maps__x'));
  assert.ok(long && long.length <= 64 && /^[a-zA-Z0-9_-]+$/.test(long), String(long));
  assert.deepEqual(
    names.filter((x) => x !== long),
    [
      'weather__forecast',
      'weather__radar',
      'shared__echo',
      'maps__route',
      'finance__ledger__post',
      'finance__ledger__balance',
    ],
    'shared stays local (listed once), secret is not allowed',
  );
  const call = async (name: string) =>
    JSON.stringify(await s.request(req('tools/call', { name, arguments: {} }), { send() {} }));
  assert.match(await call('maps__route'), /maps:route/);
  assert.match(await call(long), new RegExp(`maps:${'x'.repeat(70)}`), 'the hashed name maps back');
  assert.match(await call('finance__ledger__post'), /finance:ledger__post/);
  assert.match(await call('shared__echo'), /aggregate:shared__echo/);
  assert.match(await call('weather__forecast'), /aggregate:weather__forecast/);
  assert.deepEqual(calls, [
    'maps:route',
    `maps:${'x'.repeat(70)}`,
    'finance:ledger__post',
    'aggregate:shared__echo',
    'aggregate:weather__forecast',
  ]);
});

test('policy hides remote items and refuses their call as an unknown tool', async () => {
  const { s, calls } = setup(
    [{ scope: 'finance', domain: true, allowed: true }],
    (scope, name) => !(scope === 'finance' && name === 'ledger__post'),
  );
  const names = await listAll(s);
  assert.ok(names.includes('finance__ledger__balance') && !names.includes('finance__ledger__post'));
  const r = (await s.request(req('tools/call', { name: 'finance__ledger__post' }), {
    send() {},
  })) as unknown as {
    error: { message: string; data: { code: string } };
  };
  assert.equal(r.error.data.code, 'GW_UNKNOWN_TOOL');
  assert.equal(calls.length, 0);
});

test("a remote core's list_changed reaches the client once, and the next list is read again", async () => {
  const scopes: FederatedScope[] = [{ scope: 'maps', domain: false, allowed: true }];
  const { s, unrelated, remote } = setup(scopes);
  assert.ok((await listAll(s)).includes('maps__route'));
  remote.push({ jsonrpc: '2.0', method: 'notifications/tools/list_changed' });
  remote.push({ jsonrpc: '2.0', method: 'notifications/tools/list_changed' });
  await new Promise((r) => setTimeout(r, 60));
  assert.deepEqual(
    unrelated.map((m) => (m as { method: string }).method),
    ['notifications/tools/list_changed'],
  );
  scopes.push({ scope: 'finance', domain: true, allowed: true });
  assert.ok((await listAll(s)).includes('finance__ledger__post'), 'the cached remote list was dropped');
});
