/**
 * Regional registries in sync over the two-region topology of this suite's own nats-servers (each region
 * its own JetStream domain, joined by a leaf node, each mirroring the other's registry): changes in A
 * reach B's index (convergence measured), A's loss leaves B with A's last known entries and A marked down
 * within the bound, A's return reconciles, and a gateway whose own NATS dies keeps answering from its last
 * known index and reconciles when it comes back.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { configSchema } from '../../shared/config/schema.js';
import { jetstreamManager, StorageType } from '@nats-io/jetstream';
import { NatsBus } from '../../shared/adapters/nats/federation-bus.js';
import { CapabilityIndex } from '../../federation/capability-index.js';
import { startNatsTopology, type NatsTopology } from '../helpers/nats-cluster.js';
import {
  percentile,
  server,
  silent,
  startTestGateway,
  until,
  type TestGateway,
} from '../helpers/federation.js';

const REGIONS = ['a', 'b'];
// The defaults a deployment gets: region-down within 3 s of the last heartbeat.
const DEFAULTS = configSchema.parse({ federation: {} }).federation!;

describe('federation registry over two NATS regions', () => {
  let topo: NatsTopology;
  const buses: NatsBus[] = [];
  let a1: TestGateway;
  let b1: TestGateway;
  const bus = async (region: string) => {
    const b = await NatsBus.connect({ servers: topo.server(region).url, name: `test-${region}` });
    buses.push(b);
    return b;
  };

  before(async () => {
    topo = await startNatsTopology(REGIONS);
    const opts = { regions: REGIONS, heartbeatMs: DEFAULTS.heartbeatMs, downAfterMs: DEFAULTS.downAfterMs };
    a1 = await startTestGateway({ ...opts, bus: await bus('a'), region: 'a', id: 'a1' });
    b1 = await startTestGateway({ ...opts, bus: await bus('b'), region: 'b', id: 'b1' });
  });
  after(async () => {
    await Promise.all([a1?.node.close(), b1?.node.close()]);
    await Promise.all(buses.map((b) => b.close()));
    await topo?.close();
  });

  test('a server added in A, then its tool list changed, shows in B’s index', async () => {
    const index = b1.node.index;
    await until(index, () => index.regionStatus('a').state === 'up', 'region a up in b1');
    a1.servers = [server('weather', ['forecast'], { classification: 'Internal', residency: ['a'] })];
    await a1.node.publisher.refresh();
    await until(index, () => index.whoServes('weather__forecast').length === 1, 'weather__forecast in b1');
    const [who] = index.whoServes('weather__forecast');
    assert.deepEqual(
      { ...who, hash: typeof who!.hash },
      {
        region: 'a',
        gateway: 'a1',
        url: 'http://127.0.0.1:1/a1',
        server: 'weather',
        kind: 'tool',
        health: 'ready',
        reachable: true,
        classification: 'Internal',
        residency: ['a'],
        hash: 'string',
      },
    );
    assert.equal(index.whoServes('weather')[0]?.kind, 'server');

    a1.servers = [server('weather', ['forecast', 'alerts'])];
    await a1.node.publisher.refresh();
    await until(index, () => index.whoServes('weather__alerts').length === 1, 'weather__alerts in b1');
    a1.servers = [server('weather', ['alerts'])];
    await a1.node.publisher.refresh();
    await until(index, () => index.whoServes('weather__forecast').length === 0, 'forecast gone in b1');
    // A's own gateway sees its region's entry too, from its own bucket.
    assert.equal(a1.node.index.whoServes('weather__alerts')[0]?.region, 'a');
  });

  test('convergence A -> B over 50 registry changes: p99 within 100 ms', async () => {
    const index = b1.node.index;
    const samples: number[] = [];
    for (let i = 0; i < 50; i++) {
      const tool = `tool${i}`;
      const t0 = performance.now();
      a1.servers = [server('weather', ['alerts']), server('maps', [tool])];
      await a1.node.publisher.refresh();
      await until(index, () => index.whoServes(`maps__${tool}`).length === 1, `maps__${tool} in b1`);
      samples.push(performance.now() - t0);
    }
    const p50 = percentile(samples, 50);
    const p99 = percentile(samples, 99);
    console.log(
      `registry convergence A->B over ${samples.length} changes: p50 ${p50.toFixed(2)} ms, p99 ${p99.toFixed(2)} ms`,
    );
    assert.ok(p99 <= 100, `p99 ${p99.toFixed(2)} ms`);
  });

  test('a gateway that leaves is dropped at once; one that stops heartbeating in a live region expires', async () => {
    const index = b1.node.index;
    const a2 = await startTestGateway({
      bus: await bus('a'),
      region: 'a',
      regions: REGIONS,
      id: 'a2',
      servers: [server('weather', ['alerts'])],
      heartbeatMs: DEFAULTS.heartbeatMs,
      downAfterMs: DEFAULTS.downAfterMs,
    });
    await until(index, () => index.whoServes('weather__alerts').length === 2, 'a2 in b1');
    await a2.node.close();
    await until(index, () => index.whoServes('weather__alerts').length === 1, 'a2 gone from b1');
    assert.equal(index.whoServes('weather__alerts')[0]?.gateway, 'a1');
    assert.equal(index.regionStatus('a').state, 'up');

    // a3 crashes: its connection is gone without a goodbye, while a1 keeps region A alive.
    const a3Bus = await NatsBus.connect({ servers: topo.server('a').url });
    const a3 = await startTestGateway({
      bus: a3Bus,
      region: 'a',
      regions: REGIONS,
      id: 'a3',
      servers: [server('weather', ['alerts'])],
      heartbeatMs: DEFAULTS.heartbeatMs,
      downAfterMs: DEFAULTS.downAfterMs,
    });
    await until(index, () => index.whoServes('weather__alerts').length === 2, 'a3 in b1');
    await a3Bus.nc.close();
    const crashedAt = Date.now();
    await until(index, () => index.whoServes('weather__alerts').length === 1, 'a3 expired in b1');
    const took = Date.now() - crashedAt;
    assert.ok(took <= 3_000, `a3 expired ${took} ms after its crash`);
    assert.equal(index.regionStatus('a').gateways.find((g) => g.gateway === 'a3')?.up, false);
    assert.equal(index.regionStatus('a').state, 'up');
    await a3.node.close();
  });

  test('region A killed: B keeps A’s last known entries and marks A down within the bound', async () => {
    const index = b1.node.index;
    a1.servers = [server('weather', ['alerts']), server('maps', ['route'])];
    await a1.node.publisher.refresh();
    await until(index, () => index.whoServes('maps__route').length === 1, 'maps__route in b1');
    await topo.server('a').kill();
    const killedAt = Date.now();
    await until(index, () => index.regionStatus('a').state === 'down', 'region a down in b1', 10_000);
    const st = index.regionStatus('a');
    const afterHeartbeat = st.since - st.lastHeartbeatAt!;
    console.log(
      `region a down in b1 ${afterHeartbeat} ms after its last heartbeat (${st.since - killedAt} ms after the kill; downAfterMs ${DEFAULTS.downAfterMs})`,
    );
    assert.ok(afterHeartbeat <= 3_000, `${afterHeartbeat} ms`);
    assert.ok(afterHeartbeat >= DEFAULTS.downAfterMs, 'not before downAfterMs');
    const kept = index.whoServes('maps__route');
    assert.equal(kept.length, 1);
    assert.deepEqual([kept[0]!.region, kept[0]!.gateway, kept[0]!.reachable], ['a', 'a1', false]);
    assert.equal(index.regionStatus('b').state, 'up');

    // A gateway of B starting now still learns A's last known registry from B's mirror.
    const fresh = new CapabilityIndex({
      bus: await bus('b'),
      region: 'b',
      regions: REGIONS,
      downAfterMs: DEFAULTS.downAfterMs,
      antiEntropyMs: 30_000,
      log: silent,
    });
    await fresh.start();
    try {
      assert.deepEqual(
        fresh.whoServes('weather__alerts').map((s) => [s.region, s.gateway, s.reachable]),
        [['a', 'a1', false]],
      );
      assert.equal(fresh.regionStatus('a').state, 'down');
    } finally {
      fresh.stop();
    }
  });

  test('region A restarted: its gateway republishes what changed meanwhile and B converges', async () => {
    // While A's NATS is down, A's gateway loses a server and gains another.
    a1.servers = [server('weather', ['alerts']), server('search', ['query'])];
    await topo.server('a').restart();
    const index = b1.node.index;
    await until(
      index,
      () =>
        index.regionStatus('a').state === 'up' &&
        index.whoServes('search__query').length === 1 &&
        index.whoServes('maps__route').length === 0,
      'b1 converged on A’s new registry',
    );
    assert.deepEqual(
      index.whoServes('search__query').map((s) => [s.region, s.gateway, s.reachable]),
      [['a', 'a1', true]],
    );
    assert.deepEqual(
      index
        .servers('a')
        .map((s) => s.body.name)
        .sort(),
      ['search', 'weather'],
    );
  });

  test('B’s NATS killed: b1 answers from its last known index, then reconciles on reconnect', async () => {
    const index = b1.node.index;
    const bBus = buses[1]!;
    const down = new Promise<void>((r) => {
      const stop = bBus.onConnection((s) => s === 'down' && (stop(), r()));
    });
    await topo.server('b').kill();
    await down;
    assert.equal(bBus.connected, false);
    // A changes meanwhile: B's mirror cannot see it until B is back.
    a1.servers = [server('weather', ['alerts'])];
    await a1.node.publisher.refresh();
    // Longer than downAfterMs: nothing expires while b1 cannot hear anyone.
    await sleep(DEFAULTS.downAfterMs + 300);
    assert.deepEqual(
      index.whoServes('search__query').map((s) => [s.region, s.gateway, s.reachable]),
      [['a', 'a1', true]],
      'routing goes on from the last known index',
    );
    assert.equal(index.regionStatus('a').state, 'up');

    // Every region change b1 makes from here on is logged: a false "region down" would be a flap.
    const flaps: string[] = [];
    const stopFlaps = index.onChange((e) => {
      if (e.type === 'region' && !e.up) flaps.push(e.region);
    });
    const restartedAt = Date.now();
    await topo.server('b').restart();
    await until(
      index,
      () =>
        index.whoServes('search__query').length === 0 &&
        index.whoServes('weather__alerts')[0]?.reachable === true,
      'b1 dropped search after reconnecting',
    );
    console.log(`b1 reconciled ${Date.now() - restartedAt} ms after B's server was restarted`);
    assert.equal(bBus.connected, true);
    // Past the point where a stale heartbeat would have expired: no region went down meanwhile.
    await sleep(DEFAULTS.downAfterMs + 300);
    stopFlaps();
    assert.deepEqual(flaps, []);
    assert.equal(index.regionStatus('a').state, 'up');
    assert.equal(index.regionStatus('b').state, 'up');
  });

  test('a mirror that stops carrying a region’s heartbeats: liveness is read from the origin', async () => {
    // Seen with server 2.9.10 under load: B's mirror of A keeps A's server keys but never receives a
    // gateway's heartbeat key. Made here on purpose: B's mirror is replaced by one that carries only
    // server keys.
    a1.servers = [server('weather', ['alerts'])];
    await a1.node.publisher.refresh();
    await until(b1.node.index, () => b1.node.index.whoServes('weather__alerts').length === 1, 'alerts in b1');
    const bBus = buses[1]!;
    const jsm = await jetstreamManager(bBus.nc);
    await jsm.streams.delete('KV_reg_a_mirror');
    await jsm.streams.add({
      name: 'KV_reg_a_mirror',
      mirror: { name: 'KV_reg_a', domain: 'a', filter_subject: '$KV.reg_a.srv.>' },
      storage: StorageType.File,
    });
    // A gateway of B that starts now opens the broken mirror: without its origin it would never see A's
    // gateway, so region A would never be up and nothing of A routable.
    const b2 = await startTestGateway({
      bus: await bus('b'),
      region: 'b',
      regions: REGIONS,
      id: 'b2',
      heartbeatMs: DEFAULTS.heartbeatMs,
      downAfterMs: DEFAULTS.downAfterMs,
    });
    try {
      const index = b2.node.index;
      await until(
        index,
        () =>
          index.regionStatus('a').state === 'up' && index.whoServes('weather__alerts')[0]?.reachable === true,
        'region a up in b2 through a heartbeat-less mirror',
        DEFAULTS.downAfterMs * 4,
      );
      const flaps: string[] = [];
      const stop = index.onChange((e) => {
        if (e.type === 'region' && !e.up) flaps.push(e.region);
        if (e.type === 'gateway' && !e.up) flaps.push(`${e.region}/${e.gateway}`);
      });
      // Past several heartbeat windows: A stays up, in b2 and in b1 (whose watch was on the old mirror).
      await sleep(DEFAULTS.downAfterMs * 3);
      stop();
      assert.deepEqual(flaps, []);
      assert.equal(index.regionStatus('a').state, 'up');
      assert.equal(b1.node.index.regionStatus('a').state, 'up');
      // A change in A reaches B while its mirror is broken: the origin's registry is read whole.
      a1.servers = [server('weather', ['alerts', 'radar'])];
      await a1.node.publisher.refresh();
      await until(index, () => index.whoServes('weather__radar').length === 1, 'radar in b2', 10_000);
      a1.servers = [server('weather', ['radar'])];
      await a1.node.publisher.refresh();
      await until(
        index,
        () => index.whoServes('weather__alerts').length === 0,
        'alerts gone from b2',
        10_000,
      );
      assert.equal(index.regionStatus('a').state, 'up');
    } finally {
      await b2.node.close();
    }
  });
});
