/**
 * DR pairing on the in-process bus (federation/dr-pairing.ts): the passive region stands in for the
 * active one only after the active region has no live core, under one lease for the whole region; the
 * active region's cores defer to it meanwhile; failback releases the lease and both go back.
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { InProcessBus } from '../../shared/adapters/memory/federation-bus.js';
import { ConfigError, validateConfig } from '../../shared/config/load.js';
import { GatewayError } from '../../shared/errors.js';
import { server, startTestGateway, type TestGateway } from '../helpers/federation.js';

const pairs = { a: 'b' };
const live: TestGateway[] = [];
after(async () => {
  await Promise.all(live.map((g) => g.node.close()));
});

async function core(bus: InProcessBus, region: string, id: string): Promise<TestGateway> {
  const g = await startTestGateway({
    bus,
    region,
    regions: ['a', 'b'],
    id,
    servers: [server('shared', ['echo'])],
    heartbeatMs: 50,
    downAfterMs: 300,
    role: 'core',
    drPartners: pairs,
  });
  live.push(g);
  return g;
}

async function until(done: () => boolean, what: string, ms = 5_000): Promise<void> {
  const end = Date.now() + ms;
  while (!done()) {
    if (Date.now() > end) throw new Error(`not ${what} after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const fenced = (fn: () => void) =>
  assert.throws(fn, (e: unknown) => e instanceof GatewayError && e.code === 'GW_DR_FENCED');

test('the partner stands in only while the active region has no live core; failback releases it', async () => {
  const bus = new InProcessBus();
  const a = await core(bus, 'a', 'core-a');
  const [b1, b2] = [await core(bus, 'b', 'core-b1'), await core(bus, 'b', 'core-b2')];
  await until(() => b1.node.index.gateways().some((g) => g.gateway === 'core-a' && g.up), 'a seen');
  // a is up: b refuses to stand in, a serves as itself.
  await new Promise((r) => setTimeout(r, 400));
  for (const g of [b1, b2]) fenced(() => g.node.dr!.gate('shared', 'a'));
  a.node.dr!.gate('shared', undefined);
  assert.equal(a.node.dr!.supersededBy(), undefined);

  // a's only core stops: after its silence, one lease for b (either core), and both b cores serve for a.
  await a.node.close();
  live.splice(live.indexOf(a), 1);
  await until(() => b1.node.dr!.servesFor('a') && b2.node.dr!.servesFor('a'), 'b standing in for a');
  b1.node.dr!.gate('shared', 'a');
  b2.node.dr!.gate('shared', 'a');

  // a's core returns: b lets go (and refuses at once), then a no longer defers to b.
  const back = await core(bus, 'a', 'core-a');
  await until(() => !b1.node.dr!.servesFor('a') && !b2.node.dr!.servesFor('a'), 'b letting go');
  fenced(() => b1.node.dr!.gate('shared', 'a'));
  await until(() => back.node.dr!.supersededBy() === undefined, 'a no longer superseded');
  back.node.dr!.gate('shared', undefined);
  // A server b does not serve is never deferred (no replica to stand in with).
  back.node.dr!.gate('only-a', undefined);
});

test('a region that never had a live core is not taken over while the index still calls it unknown', async () => {
  const bus = new InProcessBus();
  const b = await core(bus, 'b', 'core-b');
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(b.node.index.regionStatus('a').state, 'unknown');
  assert.equal(b.node.dr!.servesFor('a'), false);
});

test('config: drPartners naming an unknown region or a region itself is refused, with the path', () => {
  const doc = (drPartners: Record<string, string>) => ({
    region: 'a',
    federation: { regions: ['a', 'b'], drPartners },
  });
  assert.deepEqual(validateConfig(doc({ a: 'b', b: 'a' }), 't.yaml').federation?.drPartners, {
    a: 'b',
    b: 'a',
  });
  assert.throws(
    () => validateConfig(doc({ a: 'a' }), 't.yaml'),
    (e: unknown) =>
      e instanceof ConfigError && /federation\.drPartners\.a.*its own DR partner/s.test(e.message),
  );
  assert.throws(
    () => validateConfig(doc({ a: 'c' }), 't.yaml'),
    (e: unknown) => e instanceof ConfigError && /"c" is not in federation\.regions/.test(e.message),
  );
});
