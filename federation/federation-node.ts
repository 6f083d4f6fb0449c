/**
 * One gateway's part in the federation: it publishes its region's registry entries and heartbeats,
 * keeps the global capability index, and contends for its region's leader lease. The composition root
 * hands it a bus (in-process or NATS) and a source of this gateway's servers.
 */
import type { Logger } from '../shared/log.js';
import type { FederationBus } from '../shared/ports/federation-bus.js';
import { CapabilityIndex } from './capability-index.js';
import { DrPairing } from './dr-pairing.js';
import { RegionLease } from './region-lease.js';
import { RegistryPublisher, type RegistrySource } from './registry-publisher.js';
import { registryBucket } from './subjects.js';

export interface FederationNodeOptions {
  bus: FederationBus;
  region: string;
  /** Every region of the federation (this one included); the others are read from mirrors. */
  regions: readonly string[];
  gatewayId: string;
  url: string;
  source: RegistrySource;
  heartbeatMs: number;
  downAfterMs: number;
  antiEntropyMs: number;
  role?: 'single' | 'edge' | 'core';
  audience?: string;
  /** role core: the domain namespace it joins under. */
  domain?: string;
  /** DR pairing, active -> passive region (`federation.drPartners`); used by cores only. */
  drPartners?: Readonly<Record<string, string>>;
  /** The DR witness region (`federation.drWitness`). */
  drWitness?: string;
  log: Logger;
  now?: () => number;
}

export interface FederationNode {
  readonly index: CapabilityIndex;
  readonly publisher: RegistryPublisher;
  readonly lease: RegionLease;
  /** Present on a core of a federation with DR pairs. */
  readonly dr?: DrPairing;
  close(): Promise<void>;
}

export async function startFederationNode(o: FederationNodeOptions): Promise<FederationNode> {
  const log = o.log.child({ component: 'federation', region: o.region, gateway: o.gatewayId });
  const publisher = new RegistryPublisher({ ...o, log });
  const index = new CapabilityIndex({ ...o, log });
  // Its own heartbeat first, so that the index finds this region up when it starts.
  await publisher.start();
  await index.start();
  const lease = new RegionLease({
    bucket: await o.bus.bucket(registryBucket(o.region)),
    region: o.region,
    gatewayId: o.gatewayId,
    ttlMs: o.downAfterMs,
    log,
    ...(o.now && { now: o.now }),
  });
  lease.start();
  index.onChange((e) => {
    if (e.type === 'region')
      log.info({ peer: e.region, up: e.up }, `federation: region ${e.region} ${e.up ? 'up' : 'down'}`);
  });
  // Only cores are reached by edges for a region: they alone stand in for one and are fenced.
  const pairs = o.drPartners ?? {};
  const dr =
    o.role === 'core' && Object.keys(pairs).length > 0
      ? new DrPairing({
          bus: o.bus,
          index,
          region: o.region,
          gatewayId: o.gatewayId,
          partners: pairs,
          ttlMs: o.downAfterMs,
          ...(o.drWitness !== undefined && { witness: o.drWitness }),
          log,
          ...(o.now && { now: o.now }),
        })
      : undefined;
  await dr?.start();
  let closed: Promise<void> | undefined;
  return {
    index,
    publisher,
    lease,
    ...(dr && { dr }),
    close: () =>
      (closed ??= (async () => {
        await dr?.stop();
        index.stop();
        await lease.stop();
        await publisher.stop();
      })()),
  };
}
