/**
 * The pool's pure parts: balancers (weights, slow start, power of two choices), the retry budget and
 * backoff, what a backend's answer means for retries, and the cache's canonical keys and field filter.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createBalancer, type Balanced } from '../../core/pool/balancer.js';
import { outcomeOf } from '../../core/pool/call-outcome.js';
import { ReplicaHealth } from '../../core/pool/replica-health.js';
import { backoffMs, RetryBudget } from '../../core/pool/retry-budget.js';
import { canonical, filterResult, withoutGatewayMeta } from '../../core/pool/tool-cache.js';

const member = (weight: number, ewmaMs = 0, inflight = 0, ramp = 1): Balanced & { id: number } => ({
  id: Math.random(),
  weight,
  ewmaMs,
  inflight,
  effectiveWeight: () => weight * ramp,
});

function share(name: Parameters<typeof createBalancer>[0], members: Balanced[], n = 6000): number[] {
  const b = createBalancer(name);
  const counts = members.map(() => 0);
  for (let i = 0; i < n; i++) counts[members.indexOf(b.pick(members, Date.now())!)]!++;
  return counts.map((c) => c / n);
}

describe('balancers', () => {
  test('weighted gives each replica its weight share', () => {
    const s = share('weighted', [member(1), member(2), member(3)]);
    assert.deepEqual(
      s.map((x) => Math.round(x * 6)),
      [1, 2, 3],
    );
  });

  test('round-robin alternates, and a replica in slow start gets its ramp share', () => {
    const s = share('round-robin', [member(1), member(1), member(1, 0, 0, 0.1)]);
    assert.ok(Math.abs(s[0]! - s[1]!) < 0.05);
    assert.ok(s[2]! < 0.12, `slow-start share ${s[2]}`);
  });

  test('least-connections prefers the replica with fewer calls in flight', () => {
    const s = share('least-connections', [member(1, 0, 5), member(1, 0, 0), member(1, 0, 5)]);
    assert.equal(s[1], 1);
  });

  test('latency (P2C over EWMA) almost never picks a replica 10x slower', () => {
    const s = share('latency', [member(1, 10), member(1, 10), member(1, 100)]);
    assert.ok(s[2]! < 0.02, `slow share ${s[2]}`);
  });

  test('an unmeasured replica is tried once, not piled onto', () => {
    const b = createBalancer('latency');
    const fresh = member(1, 0, 1);
    const known = member(1, 50, 3);
    for (let i = 0; i < 100; i++) assert.equal(b.pick([fresh, known], 0), known);
  });
});

describe('health', () => {
  const policy = {
    healthyThreshold: 2,
    unhealthyThreshold: 2,
    slowStartMs: 1000,
    ejectMs: 500,
    activeChecks: true,
  };
  test('ejects after consecutive failures, recovers after consecutive checks, then ramps', () => {
    const h = new ReplicaHealth(policy);
    assert.equal(h.callFailed('x', 0), false);
    assert.equal(h.callFailed('x', 0), true);
    assert.equal(h.usable(10_000), false, 'active checks: only they bring it back');
    assert.equal(h.checked(true, 100), undefined);
    assert.equal(h.checked(true, 200), 'recovered');
    assert.ok(h.ramp(200) < 0.11 && h.ramp(700) > 0.5 && h.ramp(1200) === 1);
    assert.equal(h.score(1200), Math.round(h.successRate * 1000) / 1000);
  });
  test('without active checks an ejection lapses', () => {
    const h = new ReplicaHealth({ ...policy, activeChecks: false });
    h.callFailed('x', 0);
    h.callFailed('x', 0);
    assert.equal(h.usable(100), false);
    assert.equal(h.usable(600), true);
  });
});

describe('retries', () => {
  test('the budget allows its share of requests, beyond the burst', () => {
    const b = new RetryBudget(10, 2);
    assert.ok(b.withdraw() && b.withdraw());
    assert.equal(b.withdraw(), false, 'burst spent');
    for (let i = 0; i < 100; i++) b.deposit();
    let granted = 0;
    while (b.withdraw()) granted++;
    assert.equal(granted, 2, '100 requests at 10% refill the 2-token bucket');
  });
  test('backoff is jittered under an exponential ceiling', () => {
    assert.equal(
      backoffMs(3, 10, 1000, () => 0.999),
      39,
    );
    assert.equal(
      backoffMs(20, 10, 1000, () => 0.999),
      999,
    );
    assert.equal(
      backoffMs(1, 10, 1000, () => 0),
      0,
    );
  });
  test('outcomes: answered, never sent, maybe sent, timeout', () => {
    const err = (code: string, message: string) => ({
      jsonrpc: '2.0' as const,
      id: 1,
      error: { code: -32603, message, data: { code } },
    });
    assert.equal(outcomeOf({ jsonrpc: '2.0', id: 1, result: { isError: true } }), 'answered');
    assert.equal(outcomeOf({ jsonrpc: '2.0', id: 1, error: { code: -32602, message: 'bad' } }), 'answered');
    assert.equal(
      outcomeOf(err('GW_BACKEND_UNAVAILABLE', 'backend unreachable: connection refused (ECONNREFUSED)')),
      'not-sent',
    );
    assert.equal(
      outcomeOf(err('GW_BACKEND_UNAVAILABLE', 'backend connection lost (other side closed)')),
      'maybe-sent',
    );
    assert.equal(outcomeOf(err('GW_BACKEND_TIMEOUT', 'late')), 'timeout');
  });
});

describe('cache keys and fields', () => {
  test('canonical JSON sorts keys at every level', () => {
    assert.equal(
      canonical({ b: 1, a: { d: [2, { z: 1, y: 2 }], c: null } }),
      '{"a":{"c":null,"d":[2,{"y":2,"z":1}]},"b":1}',
    );
  });
  test('a field filter keeps the asked paths in structuredContent and its text block', () => {
    const sc = { a: 1, b: { c: 2, d: 3 }, list: [{ x: 1, y: 2 }] };
    const r = filterResult({ content: [{ type: 'text', text: JSON.stringify(sc) }], structuredContent: sc }, [
      'b.c',
      'list.x',
    ]);
    assert.deepEqual(r.structuredContent, { b: { c: 2 }, list: [{ x: 1 }] });
    assert.deepEqual(JSON.parse((r.content as any)[0].text), { b: { c: 2 }, list: [{ x: 1 }] });
  });
  test("the gateway's own _meta keys never reach the backend", () => {
    assert.deepEqual(
      withoutGatewayMeta({ name: 't', _meta: { 'io.mcpgw/fields': ['a'], progressToken: 1 } }),
      {
        name: 't',
        _meta: { progressToken: 1 },
      },
    );
  });
});

describe('pool configuration', () => {
  const base = { name: 'svc', transport: 'streamable-http' };
  test('`url` is one replica; `replicas` may mix URLs and {url, weight}', async () => {
    const { validateConfig } = await import('../../shared/config/load.js');
    const one = validateConfig({ servers: [{ ...base, url: 'http://127.0.0.1:1/mcp' }] }, 't', {});
    assert.deepEqual((one.servers[0] as any).replicas, [{ url: 'http://127.0.0.1:1/mcp', weight: 1 }]);
    const many = validateConfig(
      {
        servers: [
          { ...base, replicas: ['http://127.0.0.1:1/mcp', { url: 'http://127.0.0.1:2/mcp', weight: 3 }] },
        ],
      },
      't',
      {},
    );
    assert.deepEqual(
      (many.servers[0] as any).replicas.map((r: any) => r.weight),
      [1, 3],
    );
    assert.equal((many.servers[0] as any).url, 'http://127.0.0.1:1/mcp');
  });
  test('neither or both of url and replicas is an error naming the key', async () => {
    const { validateConfig } = await import('../../shared/config/load.js');
    assert.throws(() => validateConfig({ servers: [base] }, 't', {}), /servers\.0\.url.*either "url"/s);
    assert.throws(
      () =>
        validateConfig({ servers: [{ ...base, url: 'http://a/mcp', replicas: ['http://b/mcp'] }] }, 't', {}),
      /either "url"/,
    );
    assert.throws(() => validateConfig({ pools: { sharedState: 'redis' } }, 't', {}), /needs redis\.url/);
  });
});
