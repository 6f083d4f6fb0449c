/**
 * Federation test support: gateways (a FederationNode on a bus, with a server list the test edits) and
 * waiting on a capability index without sleeping.
 */
import { randomUUID } from 'node:crypto';
import { request } from 'undici';
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

/** `fn()`'s value once it stops throwing; its last error after `ms` (tried every `everyMs`). */
export async function eventually<T>(fn: () => Promise<T>, ms = 20_000, everyMs = 200): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() > end) throw err;
      await new Promise((r) => setTimeout(r, everyMs));
    }
  }
}

/**
 * An `initialize` of `scope` sent straight to a core's internal API as an edge would (a signed token),
 * optionally asking it to stand in for region `drFor` (DR pairing): the status, the refusal header and
 * the body.
 */
export async function initializeAtCore(
  coreUrl: string,
  token: string,
  scope: string,
  drFor?: string,
): Promise<{ status: number; refused: unknown; text: string }> {
  const res = await request(`${coreUrl}/internal/v1/sessions/${randomUUID()}/request`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${token}`,
      'content-type': 'application/json',
      'x-mcpgw-edge-instance': 'probe',
      ...(drFor !== undefined && { 'x-mcpgw-dr-for': drFor }),
    },
    body: JSON.stringify({
      scope,
      message: {
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: {
          protocolVersion: '2025-06-18',
          capabilities: {},
          clientInfo: { name: 'probe', version: '1' },
        },
      },
    }),
    headersTimeout: 5_000,
  });
  return { status: res.statusCode, refused: res.headers['x-mcpgw-refused'], text: await res.body.text() };
}

export function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
}
