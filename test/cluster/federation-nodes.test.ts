/**
 * Federation wired into real gateway nodes (cli/single.ts): each node publishes its own stdio servers'
 * catalogs and sees the other region's, over the two-region NATS topology; with `federation: {}` a node
 * runs it in-process, needing no NATS.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { validateConfig } from '../../shared/config/load.js';
import { startGateway } from '../helpers/gateway.js';
import { ROOT } from '../helpers/net.js';
import { startNatsTopology, type NatsTopology } from '../helpers/nats-cluster.js';
import { until } from '../helpers/federation.js';
import type { RunningNode } from '../../cli/single.js';

const SCRIPTED = `${ROOT}dist/test/fixtures/scripted-server.js`;
const stdio = (name: string, tools: string[], extra: Record<string, unknown> = {}) => ({
  name,
  transport: 'stdio',
  command: process.execPath,
  args: [SCRIPTED],
  env: { FIXTURE_CATALOG: JSON.stringify({ tools }) },
  ...extra,
});
const fast = { heartbeatMs: 100, downAfterMs: 600, antiEntropyMs: 5000 };

describe('federation in gateway nodes', () => {
  let topo: NatsTopology;
  const nodes: RunningNode[] = [];
  before(async () => {
    topo = await startNatsTopology(['a', 'b']);
  });
  after(async () => {
    await Promise.all(nodes.map((n) => n.close()));
    await topo?.close();
  });

  test("a node in region B finds region A's tools, on A's gateway, healthy", async () => {
    const a = await startGateway({
      region: 'a',
      servers: [stdio('weather', ['forecast'], { classification: 'Confidential', residency: ['a'] })],
      federation: {
        bus: 'nats',
        natsUrls: [topo.server('a').url],
        regions: ['a', 'b'],
        gatewayId: 'gw-a',
        ...fast,
      },
    });
    nodes.push(a);
    const b = await startGateway({
      region: 'b',
      servers: [stdio('maps', ['route'])],
      federation: {
        bus: 'nats',
        natsUrls: [topo.server('b').url],
        regions: ['a', 'b'],
        gatewayId: 'gw-b',
        ...fast,
      },
    });
    nodes.push(b);
    const index = b.federation!.index;
    // A new mirror across the leaf connection can take several seconds to start on nats-server 2.9
    // (docs/federation.md); anti-entropy repairs what its first read missed.
    await until(
      index,
      () => index.whoServes('weather__forecast').length === 1,
      'weather__forecast in B',
      30_000,
    );
    const [who] = index.whoServes('weather__forecast');
    assert.deepEqual(
      [who!.region, who!.gateway, who!.url, who!.health, who!.reachable, who!.classification, who!.residency],
      ['a', 'gw-a', a.url, 'ready', true, 'Confidential', ['a']],
    );
    // The fixture's own tools are there too; B's own server is in its own index.
    assert.equal(index.whoServes('weather__pid').length, 1);
    await until(b.federation!.index, () => index.whoServes('maps__route').length === 1, 'maps__route in B');
    assert.equal(index.whoServes('maps__route')[0]?.region, 'b');
    assert.equal(index.regionStatus('a').state, 'up');

    // A node that stops leaves the registry: B drops its entries without waiting for expiry.
    await a.close();
    await until(index, () => index.whoServes('weather__forecast').length === 0, 'weather gone from B');
  });

  test('`federation: {}` runs in-process: the node indexes its own servers', async () => {
    const n = await startGateway({ servers: [stdio('weather', ['forecast'])], federation: fast });
    nodes.push(n);
    const index = n.federation!.index;
    await until(index, () => index.whoServes('weather__forecast').length === 1, 'own tool indexed');
    assert.deepEqual(
      index.whoServes('weather__forecast').map((s) => [s.region, s.url, s.health]),
      [['local', n.url, 'ready']],
    );
    assert.equal(index.regionStatus('local').state, 'up');
  });

  test('a node without a federation block starts none', async () => {
    const n = await startGateway({ servers: [] });
    nodes.push(n);
    assert.equal(n.federation, undefined);
  });

  test('bad federation config is refused with the key named', () => {
    assert.throws(
      () => validateConfig({ federation: { bus: 'nats' } }, 'test', {}),
      /federation\.natsUrls.*needs natsUrls/s,
    );
    assert.throws(
      () => validateConfig({ federation: { heartbeatMs: 5000, downAfterMs: 1000 } }, 'test', {}),
      /downAfterMs must be longer than heartbeatMs/,
    );
    assert.throws(
      () => validateConfig({ federation: { natsUrls: ['http://x'] } }, 'test', {}),
      /nats:\/\/ or tls:\/\//,
    );
  });
});
