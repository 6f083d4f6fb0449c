/**
 * Backend pools benchmark (`node dist/bench/pools.js`; not part of `npm run bench`'s default run):
 *
 * 1. bookkeeping: what the pool adds per call in process — a balancer pick over three replicas, the
 *    replica's opossum breaker around the call, passive health (EWMA, success rate), the retry budget's
 *    deposit and the outcome check — against a bare awaited call, in ns per call.
 * 2. p99 with one replica 10x slower: three pool-backend replicas (fast, fast, 10x slow), a gateway per
 *    balancer (round-robin, latency), short sessions that each pick their replica at open, and the p50/p99
 *    of their calls.
 *
 *   node dist/bench/pools.js [--only bookkeeping,slow-replica] [--calls 200000] [--sessions 200]
 *                            [--concurrency 4] [--fast-ms 20]
 */
import { parseArgs } from 'node:util';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createBalancer } from '../core/pool/balancer.js';
import { outcomeOf } from '../core/pool/call-outcome.js';
import { ReplicaBreaker } from '../core/pool/replica-breaker.js';
import { ReplicaHealth } from '../core/pool/replica-health.js';
import { RetryBudget } from '../core/pool/retry-budget.js';
import { validateConfig } from '../shared/config/load.js';
import { createLogger } from '../shared/log.js';
import type { JsonRpcResponse } from '../shared/mcp/jsonrpc.js';
import { startSingleNode } from '../cli/single.js';
import { freePort, spawnChild, stopAll, waitForListening } from './procs.js';

const here = dirname(fileURLToPath(import.meta.url)); // <root>/dist/bench
const FIXTURE = join(here, '..', 'test', 'fixtures', 'pool-backend.js');

const { values } = parseArgs({
  options: {
    only: { type: 'string', default: 'bookkeeping,slow-replica' },
    calls: { type: 'string', default: '200000' },
    sessions: { type: 'string', default: '200' },
    concurrency: { type: 'string', default: '4' },
    'fast-ms': { type: 'string', default: '20' },
  },
});
const only = new Set(values.only!.split(','));

async function bookkeeping(): Promise<void> {
  const n = Number(values.calls);
  const answer: JsonRpcResponse = { jsonrpc: '2.0', id: 1, result: { content: [] } };
  const call = async () => answer;
  const policy = {
    healthyThreshold: 2,
    unhealthyThreshold: 3,
    slowStartMs: 0,
    ejectMs: 5000,
    activeChecks: true,
  };
  const breakerPolicy = {
    errorThresholdPercentage: 50,
    volumeThreshold: 5,
    resetTimeoutMs: 5000,
    rollingWindowMs: 10_000,
  };
  const replicas = [0, 1, 2].map((i) => {
    const health = new ReplicaHealth(policy);
    return {
      weight: 1,
      inflight: 0,
      health,
      get ewmaMs() {
        return health.ewmaMs;
      },
      effectiveWeight: (now: number) => health.ramp(now),
      breaker: new ReplicaBreaker(`bench/${i}`, breakerPolicy, () => {}),
    };
  });
  const budget = new RetryBudget(10, 20);
  const results: Record<string, number> = {};
  for (let round = 0; round < 3; round++) {
    let t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) await call();
    const bare = Number(process.hrtime.bigint() - t0) / n;
    for (const name of ['round-robin', 'least-connections', 'weighted', 'latency'] as const) {
      const balancer = createBalancer(name);
      t0 = process.hrtime.bigint();
      for (let i = 0; i < n; i++) {
        const now = Date.now();
        budget.deposit();
        const r = balancer.pick(replicas, now)!;
        r.inflight++;
        const start = performance.now();
        const res = await r.breaker.fire(call);
        r.inflight--;
        if (outcomeOf(res) === 'answered') r.health.callSucceeded(performance.now() - start);
      }
      const per = Number(process.hrtime.bigint() - t0) / n - bare;
      results[name] = Math.min(results[name] ?? Infinity, per);
    }
    results.bare = Math.min(results.bare ?? Infinity, bare);
  }
  for (const r of replicas) r.breaker.shutdown();
  console.log(
    `bookkeeping per call (best of 3 rounds, ${n} calls each; bare awaited call ${results.bare!.toFixed(0)} ns):`,
  );
  for (const [k, v] of Object.entries(results))
    if (k !== 'bare') console.log(`  ${k.padEnd(18)} +${(v / 1000).toFixed(2)} µs`);
}

async function slowReplica(): Promise<void> {
  const fast = Number(values['fast-ms']);
  const urls: string[] = [];
  for (const [name, delay] of [
    ['fast1', fast],
    ['fast2', fast],
    ['slow', fast * 10],
  ] as const) {
    const port = await freePort();
    const c = spawnChild(name, process.execPath, [
      FIXTURE,
      '--port',
      String(port),
      '--name',
      name,
      '--delay-ms',
      String(delay),
    ]);
    await waitForListening(c);
    urls.push(`http://127.0.0.1:${port}/mcp`);
  }
  const headers = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
  for (const balancer of ['round-robin', 'latency']) {
    const config = validateConfig(
      {
        listen: { host: '127.0.0.1', port: 0 },
        log: { level: 'silent' },
        servers: [
          { name: 'svc', transport: 'streamable-http', replicas: urls, balancer, health: { intervalMs: 0 } },
        ],
      },
      'bench',
      {},
    );
    const node = await startSingleNode(config, { log: createLogger('silent') });
    const mcp = `${node.url}/mcp`;
    const post = async (sid: string | undefined, body: unknown) => {
      const res = await fetch(mcp, {
        method: 'POST',
        headers: sid ? { ...headers, 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' } : headers,
        body: JSON.stringify(body),
      });
      const text = await res.text();
      return { sid: res.headers.get('mcp-session-id'), json: text ? JSON.parse(text) : undefined };
    };
    const latencies: number[] = [];
    let left = Number(values.sessions);
    await Promise.all(
      Array.from({ length: Number(values.concurrency) }, async () => {
        while (left-- > 0) {
          const init = await post(undefined, {
            jsonrpc: '2.0',
            id: 1,
            method: 'initialize',
            params: {
              protocolVersion: '2025-11-25',
              capabilities: {},
              clientInfo: { name: 'bench', version: '1' },
            },
          });
          const sid = init.sid!;
          await post(sid, { jsonrpc: '2.0', method: 'notifications/initialized' });
          await post(sid, {
            jsonrpc: '2.0',
            id: 2,
            method: 'tools/call',
            params: { name: 'svc__put', arguments: {} },
          });
          const t0 = performance.now();
          const r = await post(sid, {
            jsonrpc: '2.0',
            id: 3,
            method: 'tools/call',
            params: { name: 'svc__read', arguments: {} },
          });
          latencies.push(performance.now() - t0);
          if (!r.json?.result) throw new Error(`call failed: ${JSON.stringify(r.json)}`);
          await fetch(mcp, { method: 'DELETE', headers: { 'mcp-session-id': sid } });
        }
      }),
    );
    latencies.sort((a, b) => a - b);
    const p = (q: number) => latencies[Math.min(latencies.length - 1, Math.ceil(q * latencies.length) - 1)]!;
    console.log(
      `slow replica (${fast} ms, ${fast} ms, ${fast * 10} ms) ${balancer.padEnd(12)} p50 ${p(0.5).toFixed(1)} ms  p99 ${p(0.99).toFixed(1)} ms  (${latencies.length} calls)`,
    );
    await node.close();
  }
  await stopAll();
}

try {
  if (only.has('bookkeeping')) await bookkeeping();
  if (only.has('slow-replica')) await slowReplica();
} finally {
  await stopAll();
}
