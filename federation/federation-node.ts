/**
 * One gateway's part in the federation: it publishes its region's registry entries and heartbeats,
 * keeps the global capability index, and contends for its region's leader lease. The composition root
 * hands it a bus (in-process or NATS) and a source of this gateway's servers.
 */
import type { Logger } from '../shared/log.js';
import type { FederationBus } from '../shared/ports/federation-bus.js';
import { CapabilityIndex } from './capability-index.js';
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
  log: Logger;
  now?: () => number;
}

export interface FederationNode {
  readonly index: CapabilityIndex;
  readonly publisher: RegistryPublisher;
  readonly lease: RegionLease;
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
  let closed: Promise<void> | undefined;
  return {
    index,
    publisher,
    lease,
    close: () =>
      (closed ??= (async () => {
        index.stop();
        await lease.stop();
        await publisher.stop();
      })()),
  };
}
