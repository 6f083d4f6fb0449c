/**
 * A 2026 client's input_required round continued on another replica (docs/adr/0004 (d)): two gateways
 * sharing Redis (and so a ReplicaChannel); the call runs on the replica that asked, the retry lands on
 * the other one, which sends it to the owner and relays the answer. A retry whose owner is gone gets
 * GW_CONTINUATION_LOST (an isError result for tools/call).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { Redis } from 'ioredis';
import type { RunningNode } from '../../cli/single.js';
import { MCP_HEADERS, raw, startGateway } from '../helpers/gateway.js';
import { EVERYTHING } from '../helpers/net.js';
import { startRoundRobinProxy, type RoundRobinProxy } from '../helpers/round-robin-proxy.js';

const REDIS_URL = process.env.MCPGW_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const V = '2026-07-28';
const TOOL = 'everything__trigger-sampling-request';

describe('2026 rounds across replicas', { timeout: 90_000 }, () => {
  const prefix = `mcpgw-test-${randomBytes(6).toString('hex')}`;
  let redis: Redis;
  let a: RunningNode;
  let b: RunningNode;
  let proxy: RoundRobinProxy;

  const replica = () =>
    startGateway({
      sessions: { store: 'redis' },
      redis: { url: REDIS_URL, keyPrefix: prefix },
      servers: [
        { name: 'everything', transport: 'stdio', command: process.execPath, args: [EVERYTHING, 'stdio'] },
      ],
    });

  const call = (url: string, extra: object = {}) =>
    raw(`${url}/mcp`, {
      headers: { ...MCP_HEADERS, 'mcp-protocol-version': V, 'mcp-method': 'tools/call', 'mcp-name': TOOL },
      body: {
        jsonrpc: '2.0',
        id: 5,
        method: 'tools/call',
        params: {
          name: TOOL,
          arguments: { prompt: 'across', maxTokens: 5 },
          ...extra,
          _meta: {
            'io.modelcontextprotocol/protocolVersion': V,
            'io.modelcontextprotocol/clientCapabilities': { sampling: {} },
            'io.modelcontextprotocol/clientInfo': { name: 'raw', version: '1' },
          },
        },
      },
    });
  const sampled = {
    role: 'assistant',
    content: { type: 'text', text: 'from B' },
    model: 'm',
    stopReason: 'endTurn',
  };

  before(async () => {
    redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
    await redis.ping().catch((err: unknown) => {
      throw new Error(`these tests need a real Redis at ${REDIS_URL} (set MCPGW_TEST_REDIS_URL): ${err}`);
    });
    [a, b] = await Promise.all([replica(), replica()]);
    proxy = await startRoundRobinProxy([a.url, b.url]);
  });

  after(async () => {
    await proxy?.close();
    await Promise.all([a?.close(), b?.close()]);
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 500);
      if (keys.length > 0) await redis.del(...keys);
      cursor = next;
    } while (cursor !== '0');
    await redis.quit();
  });

  test('asked on A, answered on B: B hands the answers to A and relays the result', async () => {
    const first = await call(a.url);
    assert.equal(first.json.result.resultType, 'input_required');
    const [key] = Object.keys(first.json.result.inputRequests);
    const state = first.json.result.requestState as string;
    const done = await call(b.url, { requestState: state, inputResponses: { [key!]: sampled } });
    assert.equal(done.status, 200);
    assert.equal(done.json.id, 5);
    assert.equal(done.json.result.resultType, 'complete');
    assert.match(JSON.stringify(done.json.result.content), /from B/);
    // Single use, wherever it is tried again.
    const again = await call(b.url, { requestState: state, inputResponses: { [key!]: sampled } });
    assert.equal(again.json.error.data.reason, 'invalid_request_state');
  });

  test('a pinned 2026 client behind a round-robin balancer: every round lands on the other replica', async () => {
    const c = new Client({ name: 'rr-2026', version: '1.0.0' }, {
      capabilities: { sampling: {} },
      versionNegotiation: { mode: { pin: V } },
    } as any);
    c.setRequestHandler('sampling/createMessage', async () => sampled as any);
    await c.connect(new StreamableHTTPClientTransport(new URL(`${proxy.url}/mcp`)));
    for (let i = 0; i < 3; i++) {
      const r: any = await c.callTool({ name: TOOL, arguments: { prompt: `p${i}`, maxTokens: 5 } });
      assert.match(JSON.stringify(r.content), /from B/);
    }
    const calls = proxy.routed.filter((r) => r.rpcMethod === 'tools/call').map((r) => r.upstream);
    assert.ok(calls.includes(0) && calls.includes(1), `both replicas served: ${calls.join(',')}`);
    await c.close();
  });

  test('the owner gone: the retry gets GW_CONTINUATION_LOST as an isError result', async () => {
    const c = await replica();
    const first = await call(c.url);
    const [key] = Object.keys(first.json.result.inputRequests);
    await c.close();
    const lost = await call(b.url, {
      requestState: first.json.result.requestState,
      inputResponses: { [key!]: sampled },
    });
    assert.equal(lost.json.result.isError, true);
    assert.match(lost.json.result.content[0].text, /replica holding this call is gone/);
  });
});
