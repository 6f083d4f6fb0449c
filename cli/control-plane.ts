/**
 * Wires the control plane (docs/federation.md, "Control plane") into a node: opens the bus before the
 * node listens, reads the bucket and puts its policies and quota limits in force, and gives the admin
 * API a policy store that writes the bus instead of the node's own database.
 */
import { hostname } from 'node:os';
import type { GatewayConfig } from '../shared/config/schema.js';
import type { Logger } from '../shared/log.js';
import type { FederationBus } from '../shared/ports/federation-bus.js';
import { ControlRevisionConflict, type ControlPlane } from '../shared/ports/control-plane.js';
import type { GatewayCore } from '../core/mcp/gateway-core.js';
import type { Quotas } from '../edge/quota/quotas.js';
import { VersionConflictError, type AdminStore, type PolicyEntry } from '../edge/admin-api/store.js';
import { BusControlPlane, CONTROL_HISTORY } from '../federation/control-plane.js';
import { connectFederationBus } from './federation.js';

export interface RunningControlPlane {
  readonly plane: BusControlPlane;
  /** The bus it opened; handed to the federation node, which closes it. */
  readonly bus: FederationBus;
  readonly policies: boolean;
  close(): Promise<void>;
}

/** Whether this node's config asks for the control plane (policies, quotas or both). */
export function wantsControlPlane(config: GatewayConfig): boolean {
  const c = config.federation?.controlPlane;
  return c !== undefined && (c.policies || c.quotas);
}

/**
 * Connects the bus and applies the bucket's current values (resolves once they are in force): a
 * restarted gateway takes requests with the cluster's policies and limits, never the file's alone.
 */
export async function startControlPlane(
  config: GatewayConfig,
  o: { core?: Pick<GatewayCore, 'applyPolicies'>; quotas?: Quotas; gatewayId: () => string; log: Logger },
): Promise<RunningControlPlane | undefined> {
  const c = config.federation?.controlPlane;
  if (!c || !wantsControlPlane(config)) return undefined;
  const bus = await connectFederationBus(
    config,
    config.federation?.gatewayId ?? `${hostname()}-${process.pid}`,
  );
  try {
    const core = c.policies ? o.core : undefined;
    const quotas = c.quotas ? o.quotas : undefined;
    if (c.policies && !core) o.log.warn({}, 'control plane: policies are enforced by cores; none here');
    const plane = new BusControlPlane({
      bus,
      // One control plane for the federation lives in one region's JetStream (federation.controlPlane.region).
      bucket: await bus.bucket(c.bucket, {
        history: CONTROL_HISTORY,
        ...(c.region !== undefined && c.region !== config.region && { region: c.region }),
      }),
      gatewayId: o.gatewayId,
      ...(core && {
        policies: { baseline: config.policy, apply: (g, t) => core.applyPolicies(g, t) },
      }),
      ...(quotas && { quotas: { apply: (limits) => quotas.setLimits(limits) } }),
      antiEntropyMs: config.federation!.antiEntropyMs,
      log: o.log,
    });
    await plane.start();
    o.log.info({ bucket: c.bucket, policies: c.policies, quotas: c.quotas }, 'control plane started');
    return { plane, bus, policies: core !== undefined, close: () => plane.close() };
  } catch (err) {
    await bus.close();
    throw new Error(`control plane: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * The admin API's policy store on a node whose policies come from the bus: policies are read from and
 * written to the control plane (versions are bus revisions); the change log stays the node's own.
 */
export function busPolicyStore(local: AdminStore, plane: ControlPlane): AdminStore {
  const entry = (p: Awaited<ReturnType<ControlPlane['policy']>>): PolicyEntry | undefined =>
    p && {
      scope: p.scope,
      version: p.revision,
      policy: p.policy,
      updatedAt: p.updatedAt,
      updatedBy: p.updatedBy,
    };
  const conflict = (err: unknown, scope: string): never => {
    if (err instanceof ControlRevisionConflict)
      throw new VersionConflictError(scope, err.expected, err.actual);
    throw err;
  };
  return {
    record: (c) => local.record(c),
    changes: (o) => local.changes(o),
    policies: async () => (await plane.policies()).map((p) => entry(p)!),
    policy: async (scope) => entry(await plane.policy(scope)),
    putPolicy: async (scope, policy, by, expected) => {
      try {
        return entry(await plane.putPolicy(scope, policy, by, expected))!;
      } catch (err) {
        return conflict(err, scope);
      }
    },
    deletePolicy: async (scope, by, expected) => {
      try {
        return await plane.deletePolicy(scope, by, expected);
      } catch (err) {
        return conflict(err, scope);
      }
    },
    watchPolicies: async (listener) => {
      const stop = plane.onApplied(listener);
      return async () => void stop();
    },
  };
}
