/**
 * The capability lifecycle of the reference architecture (section 5.3) and its allowed transitions.
 * A transition is a registry write (the server's config), so the registry's history records who made it
 * and when, and every gateway sharing the registry applies it without a restart.
 */
import { GatewayError } from '../../shared/errors.js';
import type { LifecycleStage } from '../../shared/config/governance-schema.js';
import type { ServerConfig } from '../../shared/config/schema.js';
import type { RegistryEntry, RegistryStore } from '../../shared/ports/registry-store.js';

/**
 * Forward through review to production and out; back to draft from preview. A retired capability never
 * comes back as it was: it is re-introduced as a draft and goes through review again.
 */
export const TRANSITIONS: Readonly<Record<LifecycleStage, readonly LifecycleStage[]>> = {
  draft: ['preview', 'active', 'retired'],
  preview: ['draft', 'active', 'retired'],
  active: ['deprecated'],
  deprecated: ['active', 'retired'],
  retired: ['draft'],
};

export function checkTransition(from: LifecycleStage, to: LifecycleStage): void {
  if (from === to || TRANSITIONS[from].includes(to)) return;
  throw new GatewayError(
    'GW_LIFECYCLE_TRANSITION',
    `lifecycle transition ${from} -> ${to} is not allowed (from ${from}: ${TRANSITIONS[from].join(', ')})`,
    { from, to, allowed: TRANSITIONS[from] },
  );
}

/** A tool's own stage, else its server's. */
export function stageOf(server: ServerConfig, tool?: string): LifecycleStage {
  return (tool !== undefined ? server.tools[tool]?.lifecycle : undefined) ?? server.lifecycle;
}

export interface TransitionRequest {
  server: string;
  /** The backend's own tool name; absent: the server's stage. */
  tool?: string;
  to: LifecycleStage;
  deprecationNotice?: string;
  by: string;
}

/**
 * Validates and records a lifecycle transition in the registry (optimistic: a concurrent change makes
 * it fail with RegistryConflictError). Unknown server: undefined.
 */
export async function transitionLifecycle(
  store: RegistryStore,
  t: TransitionRequest,
): Promise<RegistryEntry | undefined> {
  const entry = await store.get(t.server);
  if (!entry) return undefined;
  const s = entry.server;
  checkTransition(stageOf(s, t.tool), t.to);
  let next: ServerConfig;
  if (t.tool === undefined) {
    next = { ...s, lifecycle: t.to, deprecationNotice: t.deprecationNotice ?? s.deprecationNotice };
  } else {
    const own = s.tools[t.tool] ?? {};
    next = {
      ...s,
      tools: {
        ...s.tools,
        [t.tool]: {
          ...own,
          lifecycle: t.to,
          deprecationNotice: t.deprecationNotice ?? own.deprecationNotice,
        },
      },
    };
  }
  return store.upsert(next, t.by, { expectedVersion: entry.version });
}
