/**
 * The control plane on the bus (docs/federation.md, "Control plane"): one KV bucket per region
 * (`mcpgw-control` by default) holding the cluster's access policies (`policy.<scope>`, scope `*` as
 * `policy._global`) and quota limits (`quotas`). Every gateway that opts in watches it and applies each
 * change live.
 *
 * Every entry is checked (envelope, then the body against the config schema) before anything of it is
 * applied: a bad entry is logged with its reason and refused whole, and the key's last good value stays
 * in force. While the bus is away the values applied stay (degraded mode); on reconnect, and every
 * `antiEntropyMs`, the bucket is read whole and reconciled.
 */
import { z } from 'zod';
import { canonicalJson } from '../shared/canonical-json.js';
import { parseQuotaLimits, type QuotaLimits } from '../shared/config/schema.js';
import { policySchema, type PolicyConfig } from '../shared/config/security-schema.js';
import type { Logger } from '../shared/log.js';
import {
  ControlPlaneUnavailable,
  ControlRevisionConflict,
  type ControlPlane,
  type ControlHistoryEntry,
  type ControlPlaneStatus,
  type ControlPolicy,
  type ControlQuotaLimits,
  type ControlRevision,
} from '../shared/ports/control-plane.js';
import {
  KvRevisionConflict,
  type FederationBus,
  type KvBucket,
  type KvEntry,
} from '../shared/ports/federation-bus.js';

export const GLOBAL_SCOPE = '*';
const POLICY_PREFIX = 'policy.';
const GLOBAL_KEY = 'policy._global';
const QUOTAS_KEY = 'quotas';
/** How long a write waits for this gateway's own watch to deliver it before answering anyway. */
const APPLY_WAIT_MS = 5_000;

const SCOPE = /^(\*|[A-Za-z0-9][A-Za-z0-9_.-]{0,127})$/;
const CONTROL_KEY = /^(quotas|policy\.(_global|[A-Za-z0-9][A-Za-z0-9_.-]{0,127}))$/;
/** Revisions the bucket keeps per key (when this gateway is the one creating it). */
export const CONTROL_HISTORY = 32;

export function policyKey(scope: string): string {
  if (!SCOPE.test(scope)) throw new RangeError(`policy scope "${scope}": "*" or a tenant name`);
  return scope === GLOBAL_SCOPE ? GLOBAL_KEY : `${POLICY_PREFIX}${scope}`;
}

const meta = {
  v: z.literal(1, { error: 'unsupported control-plane entry version: this gateway reads version 1' }),
  by: z.string().min(1).max(512),
  at: z.string().min(1).max(64),
  gateway: z.string().min(1).max(128),
};
const policyEnvelope = z
  .object({
    ...meta,
    kind: z.literal('policy'),
    scope: z.string().regex(SCOPE),
    policy: z.record(z.string(), z.unknown()).nullable(),
  })
  .strict();
const quotasEnvelope = z
  .object({ ...meta, kind: z.literal('quotas'), limits: z.record(z.string(), z.unknown()).nullable() })
  .strict();

type Meta = { by: string; at: string; gateway: string };
/** A key's value as applied: a policy, quota limits, or a tombstone (null: removed). */
type Good =
  | (Meta & {
      kind: 'policy';
      scope: string;
      policy: PolicyConfig | null;
      raw: Record<string, unknown> | null;
    })
  | (Meta & { kind: 'quotas'; limits: QuotaLimits | null; raw: Record<string, unknown> | null });

interface Held {
  /** The newest revision seen of the key, good or refused. */
  revision: number;
  /** The last good value, and its own revision. */
  good: Good | undefined;
  goodRevision: number;
  appliedAt: number;
}

export interface ControlPlaneOptions {
  bus: FederationBus;
  bucket: KvBucket;
  /** Named in every entry this gateway writes (read when writing: known once the node listens). */
  gatewayId: () => string;
  /** Present when policies come from the bus: the file's `policy` (the baseline of `*`) and the core. */
  policies?: {
    baseline: PolicyConfig | undefined;
    apply(global: PolicyConfig | undefined, tenants: ReadonlyMap<string, PolicyConfig>): void;
  };
  /** Present when quota limits come from the bus. */
  quotas?: { apply(limits: QuotaLimits): void };
  antiEntropyMs: number;
  log: Logger;
}

/** Decodes one entry of the bucket, or says why it is refused. */
export function decodeControlEntry(key: string, value: unknown): { good: Good } | { problem: string } {
  if (key === QUOTAS_KEY) {
    const e = quotasEnvelope.safeParse(value);
    if (!e.success) return { problem: issue(e.error) };
    if (e.data.limits === null)
      return { good: { ...metaOf(e.data), kind: 'quotas', limits: null, raw: null } };
    const l = parseQuotaLimits(e.data.limits);
    if (!l.ok) return { problem: `limits.${l.problem}` };
    return { good: { ...metaOf(e.data), kind: 'quotas', limits: l.limits, raw: e.data.limits } };
  }
  if (key.startsWith(POLICY_PREFIX)) {
    const e = policyEnvelope.safeParse(value);
    if (!e.success) return { problem: issue(e.error) };
    if (policyKey(e.data.scope) !== key)
      return { problem: `scope "${e.data.scope}" does not belong under key ${key}` };
    const good = { ...metaOf(e.data), kind: 'policy' as const, scope: e.data.scope };
    if (e.data.policy === null) return { good: { ...good, policy: null, raw: null } };
    const p = policySchema.unwrap().safeParse(e.data.policy);
    if (!p.success) return { problem: `policy.${issue(p.error)}` };
    return { good: { ...good, policy: p.data, raw: e.data.policy } };
  }
  return { problem: 'unknown key (this gateway reads policy.<scope> and quotas)' };
}

function issue(err: z.ZodError): string {
  const i = err.issues[0]!;
  const keys = (i as { keys?: string[] }).keys;
  const path = [...i.path.map(String), ...(keys ?? [])].join('.');
  return `${path || 'value'}: ${i.message}`;
}

function metaOf(d: Meta): Meta {
  return { by: d.by, at: d.at, gateway: d.gateway };
}

export class BusControlPlane implements ControlPlane {
  private readonly held = new Map<string, Held>();
  private readonly refused = new Map<string, { revision: number; reason: string; at: number }>();
  private readonly listeners = new Set<() => void | Promise<void>>();
  private readonly waiters = new Set<{ key: string; revision: number; done: () => void }>();
  private readonly log: Logger;
  private inForce: { policies?: string; quotas?: string } = {};
  private stopWatch: (() => void) | undefined;
  private stopConnection: (() => void) | undefined;
  private timer: NodeJS.Timeout | undefined;
  private reconciling: Promise<void> | undefined;
  private started = false;

  constructor(private readonly o: ControlPlaneOptions) {
    this.log = o.log.child({ component: 'control-plane', bucket: o.bucket.name });
  }

  /** Reads the bucket whole and applies it (resolves once in force), then follows every change. */
  async start(): Promise<void> {
    this.stopWatch = await this.o.bucket.watch('', (key, entry) => this.receive(key, entry));
    this.started = true;
    this.applyAll('start');
    this.stopConnection = this.o.bus.onConnection((state) => {
      if (state === 'down')
        this.log.warn({}, 'control plane: bus unreachable; the policies and limits applied stay in force');
      else void this.reconcile('reconnect');
    });
    this.timer = setInterval(() => void this.reconcile('anti-entropy'), this.o.antiEntropyMs);
    this.timer.unref();
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    this.stopConnection?.();
    this.stopWatch?.();
    await this.reconciling;
    for (const w of this.waiters) w.done();
  }

  status(): ControlPlaneStatus {
    return {
      connected: this.o.bus.connected,
      bucket: this.o.bucket.name,
      policies: this.o.policies !== undefined,
      quotas: this.o.quotas !== undefined,
      applied: [...this.held]
        .filter(([, h]) => h.good && (h.good.kind === 'policy' ? h.good.policy : h.good.limits))
        .map(([key, h]) => ({ key, ...this.revisionOf(h.goodRevision, h.good!), appliedAt: h.appliedAt }))
        .sort((a, b) => a.key.localeCompare(b.key)),
      refused: [...this.refused].map(([key, r]) => ({ key, ...r })),
    };
  }

  onApplied(listener: () => void | Promise<void>): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  // ---------------------------------------------------------------- reading

  async policies(): Promise<ControlPolicy[]> {
    const out: ControlPolicy[] = [];
    for (const e of await this.read(() => this.o.bucket.entries(POLICY_PREFIX))) {
      const p = this.policyOf(e);
      if (p) out.push(p);
    }
    return out.sort((a, b) => a.scope.localeCompare(b.scope));
  }

  async policy(scope: string): Promise<ControlPolicy | undefined> {
    const e = await this.read(() => this.o.bucket.get(policyKey(scope)));
    return e && this.policyOf(e);
  }

  async quotaLimits(): Promise<ControlQuotaLimits | undefined> {
    const e = await this.read(() => this.o.bucket.get(QUOTAS_KEY));
    if (!e) return undefined;
    const d = decodeControlEntry(QUOTAS_KEY, e.value);
    if (!('good' in d) || d.good.kind !== 'quotas' || !d.good.raw) return undefined;
    return { limits: d.good.raw, ...this.revisionOf(e.revision, d.good) };
  }

  async history(key: string): Promise<ControlHistoryEntry[]> {
    if (key !== QUOTAS_KEY && !(key.startsWith(POLICY_PREFIX) && CONTROL_KEY.test(key)))
      throw new RangeError(`"${key}" is not a control-plane key (policy._global, policy.<tenant>, quotas)`);
    const kept = await this.read(() => this.o.bucket.history(key));
    return kept.reverse().map((e): ControlHistoryEntry => {
      if (e.value === undefined) return { revision: e.revision, deleted: true, valid: true };
      const d = decodeControlEntry(key, e.value);
      if ('problem' in d) return { revision: e.revision, deleted: false, valid: false, reason: d.problem };
      const g = d.good;
      return {
        revision: e.revision,
        deleted: g.raw === null,
        valid: true,
        updatedBy: g.by,
        updatedAt: g.at,
        gateway: g.gateway,
        ...(g.raw && { value: g.raw }),
      };
    });
  }

  // ---------------------------------------------------------------- writing

  async putPolicy(scope: string, policy: Record<string, unknown>, by: string, expected?: number) {
    const key = policyKey(scope);
    const revision = await this.write(key, { kind: 'policy', scope, policy }, by, expected);
    return (await this.policy(scope)) ?? this.fallbackPolicy(scope, policy, by, revision);
  }

  async deletePolicy(scope: string, by: string, expected?: number): Promise<number | undefined> {
    return this.remove(policyKey(scope), { kind: 'policy', scope, policy: null }, by, expected);
  }

  async putQuotaLimits(limits: Record<string, unknown>, by: string, expected?: number) {
    const revision = await this.write(QUOTAS_KEY, { kind: 'quotas', limits }, by, expected);
    return (
      (await this.quotaLimits()) ?? {
        limits,
        revision,
        updatedBy: by,
        updatedAt: new Date().toISOString(),
        gateway: this.o.gatewayId(),
      }
    );
  }

  async deleteQuotaLimits(by: string, expected?: number): Promise<number | undefined> {
    return this.remove(QUOTAS_KEY, { kind: 'quotas', limits: null }, by, expected);
  }

  /** A delete is a tombstone (so who and when are kept); undefined when the key holds nothing. */
  private async remove(
    key: string,
    body: Record<string, unknown>,
    by: string,
    expected?: number,
  ): Promise<number | undefined> {
    const current = await this.live(key);
    if (expected !== undefined && expected !== (current?.revision ?? 0))
      throw new ControlRevisionConflict(key, expected, current?.revision ?? 0);
    if (!current) return undefined;
    return this.write(key, body, by, current.revision);
  }

  /**
   * Writes one entry, fenced by `expected` (0: the key must hold nothing live; a tombstone counts as
   * nothing), and waits until this gateway's watch applied it.
   */
  private async write(
    key: string,
    body: Record<string, unknown>,
    by: string,
    expected?: number,
  ): Promise<number> {
    if (!this.o.bus.connected)
      throw new ControlPlaneUnavailable('the control plane bus is unreachable: nothing was written');
    const value = { v: 1, ...body, by, at: new Date().toISOString(), gateway: this.o.gatewayId() };
    const stored = await this.read(() => this.o.bucket.get(key));
    const live = stored && this.isLive(key, stored) ? stored : undefined;
    if (expected !== undefined && expected !== (live?.revision ?? 0))
      throw new ControlRevisionConflict(key, expected, live?.revision ?? 0);
    let revision: number;
    try {
      if (expected === undefined) revision = await this.o.bucket.put(key, value);
      else if (stored) revision = await this.o.bucket.update(key, value, stored.revision);
      else revision = await this.o.bucket.create(key, value);
    } catch (err) {
      if (err instanceof KvRevisionConflict) {
        const now = await this.live(key);
        throw new ControlRevisionConflict(key, expected ?? 0, now?.revision ?? 0);
      }
      throw new ControlPlaneUnavailable(
        `the control plane bus refused the write: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
    await this.appliedAtLeast(key, revision);
    return revision;
  }

  private async live(key: string): Promise<KvEntry | undefined> {
    const e = await this.read(() => this.o.bucket.get(key));
    return e && this.isLive(key, e) ? e : undefined;
  }

  private isLive(key: string, e: KvEntry): boolean {
    const d = decodeControlEntry(key, e.value);
    if (!('good' in d)) return true; // a bad entry is there: overwriting it needs its revision
    return d.good.raw !== null; // a tombstone holds nothing
  }

  private async read<T>(f: () => Promise<T>): Promise<T> {
    try {
      return await f();
    } catch (err) {
      throw new ControlPlaneUnavailable(`the control plane bus did not answer: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }

  private appliedAtLeast(key: string, revision: number): Promise<void> {
    if ((this.held.get(key)?.revision ?? 0) >= revision) return Promise.resolve();
    return new Promise((resolve) => {
      const w = {
        key,
        revision,
        done: () => {
          clearTimeout(t);
          this.waiters.delete(w);
          resolve();
        },
      };
      const t = setTimeout(() => {
        this.log.warn({ key, revision }, 'control plane: own write not seen by the watch in time');
        w.done();
      }, APPLY_WAIT_MS);
      this.waiters.add(w);
    });
  }

  private policyOf(e: KvEntry): ControlPolicy | undefined {
    const d = decodeControlEntry(e.key, e.value);
    if (!('good' in d) || d.good.kind !== 'policy' || !d.good.raw) return undefined;
    return {
      scope: d.good.scope,
      policy: d.good.raw,
      ...this.revisionOf(e.revision, d.good),
    };
  }

  private fallbackPolicy(scope: string, policy: Record<string, unknown>, by: string, revision: number) {
    return {
      scope,
      policy,
      revision,
      updatedBy: by,
      updatedAt: new Date().toISOString(),
      gateway: this.o.gatewayId(),
    };
  }

  private revisionOf(revision: number, good: Good): ControlRevision {
    return { revision, updatedBy: good.by, updatedAt: good.at, gateway: good.gateway };
  }

  // ---------------------------------------------------------------- applying

  /** One entry from the watch or a reconcile: older revisions than the one held are ignored. */
  private receive(key: string, entry: KvEntry | undefined): void {
    const held = this.held.get(key);
    if (entry && held && entry.revision <= held.revision) return;
    if (!entry) {
      // Removed from the bucket itself (not through a gateway, which leaves a tombstone).
      if (!held) return;
      this.held.delete(key);
      this.refused.delete(key);
      this.log.info({ key }, 'control plane: entry removed from the bucket');
    } else {
      const d = decodeControlEntry(key, entry.value);
      if ('problem' in d) {
        this.refused.set(key, { revision: entry.revision, reason: d.problem, at: Date.now() });
        // The revision is kept (a reconcile does not refuse it again); the last good value stays.
        this.held.set(key, {
          revision: entry.revision,
          good: held?.good,
          goodRevision: held?.goodRevision ?? 0,
          appliedAt: held?.appliedAt ?? 0,
        });
        this.log.error(
          { key, revision: entry.revision, reason: d.problem },
          'control plane entry refused: the last good value stays in force',
        );
        this.wake(key, entry.revision);
        return;
      }
      this.refused.delete(key);
      this.held.set(key, {
        revision: entry.revision,
        good: d.good,
        goodRevision: entry.revision,
        appliedAt: Date.now(),
      });
    }
    if (this.started) this.applyAll(entry ? `revision ${entry.revision}` : 'removal', key, held);
    if (entry) this.wake(key, entry.revision);
  }

  private wake(key: string, revision: number): void {
    for (const w of this.waiters) if (w.key === key && w.revision <= revision) w.done();
  }

  /**
   * Puts what the bus holds in force, each kind only when it changed (so a reconcile that finds nothing
   * new does not make every session re-list). Should applying fail, the key goes back to `previous`.
   */
  private applyAll(why: string, key?: string, previous?: Held): void {
    try {
      this.applyPolicies(why);
      this.applyQuotas(why);
    } catch (err) {
      this.log.error(
        { key, err: (err as Error).message },
        'control plane change not applied: the last stays',
      );
      if (key !== undefined) {
        const failed = this.held.get(key);
        if (previous) this.held.set(key, { ...previous, revision: failed?.revision ?? previous.revision });
        else this.held.delete(key);
        this.refused.set(key, {
          revision: failed?.revision ?? 0,
          reason: (err as Error).message,
          at: Date.now(),
        });
        this.applyPolicies(why);
        this.applyQuotas(why);
      }
      return;
    }
    for (const l of this.listeners) void Promise.resolve(l()).catch(() => {});
  }

  private applyPolicies(why: string): void {
    const p = this.o.policies;
    if (!p) return;
    let global = p.baseline;
    const tenants = new Map<string, PolicyConfig>();
    for (const [, h] of this.held) {
      if (h.good?.kind !== 'policy' || !h.good.policy) continue;
      if (h.good.scope === GLOBAL_SCOPE) global = h.good.policy;
      else tenants.set(h.good.scope, h.good.policy);
    }
    const next = canonicalJson({ global: global ?? null, tenants: [...tenants].sort() });
    if (next === this.inForce.policies) return;
    p.apply(global, tenants);
    this.inForce.policies = next;
    this.log.info(
      { why, scopes: [...(global ? [GLOBAL_SCOPE] : []), ...tenants.keys()] },
      'control plane: policies in force',
    );
  }

  private applyQuotas(why: string): void {
    const q = this.o.quotas;
    if (!q) return;
    const h = this.held.get(QUOTAS_KEY);
    const limits = (h?.good?.kind === 'quotas' && h.good.limits) || {};
    const next = canonicalJson(limits);
    if (next === this.inForce.quotas) return;
    q.apply(limits);
    this.inForce.quotas = next;
    this.log.info({ why, keys: Object.keys(limits) }, 'control plane: quota limits in force');
  }

  /** Reads the bucket whole: what the watch missed (a gap while away, a removal) is applied now. */
  private reconcile(why: string): Promise<void> {
    this.reconciling ??= (async () => {
      try {
        const since = new Map([...this.held].map(([k, h]) => [k, h.revision]));
        const entries = await this.o.bucket.entries('');
        const present = new Set(entries.map((e) => e.key));
        for (const e of entries) this.receive(e.key, e);
        // Gone from the bucket, and not rewritten by the watch meanwhile.
        for (const [k, rev] of since)
          if (!present.has(k) && this.held.get(k)?.revision === rev) this.receive(k, undefined);
        if (why === 'reconnect') this.log.info({}, 'control plane: reconciled after the bus came back');
      } catch (err) {
        this.log.warn({ why, err: (err as Error).message }, 'control plane: reconcile failed; will retry');
      } finally {
        this.reconciling = undefined;
      }
    })();
    return this.reconciling;
  }
}
