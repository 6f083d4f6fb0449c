/**
 * Federation test support: gateways (a FederationNode on a bus, with a server list the test edits) and
 * waiting on a capability index without sleeping.
 */
import { createLogger } from '../../shared/log.js';
import type { FederationBus } from '../../shared/ports/federation-bus.js';
import type { CapabilityIndex } from '../../federation/capability-index.js';
import { startFederationNode, type FederationNode } from '../../federation/federation-node.js';
import { definitionHash, type LocalServer } from '../../federation/registry-publisher.js';

export const silent = createLogger((process.env.MCPGW_TEST_LOG as 'silent') ?? 'silent');

export interface TestGateway {
  readonly id: string;
  readonly region: string;
  readonly node: FederationNode;
  /** The servers this gateway publishes; edit, then `node.publisher.refresh()`. */
  servers: LocalServer[];
}

export async function startTestGateway(o: {
  bus: FederationBus;
  region: string;
  regions: readonly string[];
  id: string;
  servers?: LocalServer[];
  heartbeatMs?: number;
  downAfterMs?: number;
  antiEntropyMs?: number;
  role?: 'single' | 'edge' | 'core';
  drPartners?: Record<string, string>;
}): Promise<TestGateway> {
  const gw: { servers: LocalServer[] } = { servers: o.servers ?? [] };
  const node = await startFederationNode({
    bus: o.bus,
    region: o.region,
    regions: o.regions,
    gatewayId: o.id,
    url: `http://127.0.0.1:1/${o.id}`,
    source: () => gw.servers,
    heartbeatMs: o.heartbeatMs ?? 100,
    downAfterMs: o.downAfterMs ?? 600,
    antiEntropyMs: o.antiEntropyMs ?? 30_000,
    ...(o.role && { role: o.role }),
    ...(o.drPartners && { drPartners: o.drPartners }),
    log: silent,
  });
  return Object.assign(gw, { id: o.id, region: o.region, node });
}

/** A server entry with the given tools (prompts and resources empty), healthy unless told otherwise. */
export function server(name: string, tools: string[], extra: Partial<LocalServer> = {}): LocalServer {
  return {
    name,
    transport: 'stdio',
    health: { state: 'ready' },
    listed: true,
    tools: tools.map((t) => ({ name: t, hash: definitionHash({ name: t }) })),
    prompts: [],
    resources: [],
    ...extra,
  };
}

/** Resolves once `done()` holds, checked now and after every index event; rejects after `timeoutMs`. */
export function until(
  index: CapabilityIndex,
  done: () => boolean,
  what: string,
  timeoutMs = 10_000,
): Promise<void> {
  if (done()) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      stop();
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
    }, timeoutMs);
    const stop = index.onChange(() => {
      if (!done()) return;
      clearTimeout(timer);
      stop();
      resolve();
    });
  });
}

export function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
}
