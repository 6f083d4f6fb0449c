/**
 * What the admin API keeps beside the registry: the change log (every change, with who and when) and the
 * versioned access policies. On Postgres (server or embedded) when the node has a database, in memory
 * otherwise (`store: memory`, lost at restart like the rest of that store).
 *
 * A deleted policy stays as a tombstone (its row with a JSON `null` policy), so that a scope's versions
 * only grow, across a delete and a re-create, as a server's do.
 */
import { channelName, type SqlDatabase } from '../../shared/adapters/postgres/sql.js';

export interface ChangeRecord {
  id: number;
  at: string;
  actor: string;
  /** The tenant the changed object belongs to; null for shared objects. */
  tenant: string | null;
  kind: 'server' | 'api-key' | 'policy' | (string & {});
  target: string;
  op: string;
  version: number | null;
  detail?: Record<string, unknown> | undefined;
}

export type NewChange = Omit<ChangeRecord, 'id' | 'at'>;

export interface PolicyEntry {
  scope: string;
  version: number;
  policy: Record<string, unknown>;
  updatedAt: string;
  updatedBy: string;
}

/** The policy changed since the writer read it. */
export class VersionConflictError extends Error {
  constructor(
    readonly target: string,
    readonly expected: number,
    readonly actual: number,
  ) {
    super(`"${target}" is at version ${actual}, not ${expected}: re-read and retry`);
    this.name = 'VersionConflictError';
  }
}

export interface AdminStore {
  record(change: NewChange): Promise<ChangeRecord>;
  /** Oldest first, after `afterId`; `tenant` (when given) keeps that tenant's changes only. */
  changes(o: { afterId?: number; limit: number; tenant?: string; kind?: string }): Promise<ChangeRecord[]>;
  policies(): Promise<PolicyEntry[]>;
  policy(scope: string): Promise<PolicyEntry | undefined>;
  putPolicy(
    scope: string,
    policy: Record<string, unknown>,
    by: string,
    expectedVersion?: number,
  ): Promise<PolicyEntry>;
  /**
   * Deletes a policy; returns the version the delete made, or undefined when there was none.
   * `expectedVersion` as for putPolicy (VersionConflictError when it is not the current one).
   */
  deletePolicy(scope: string, by: string, expectedVersion?: number): Promise<number | undefined>;
  /**
   * Calls `listener` after every change of a policy, made here (awaited before the write returns, so the
   * writer's next request sees it in force) or by another gateway sharing the store (a database notice;
   * also after a lost listening connection is back). Returns an unsubscribe function.
   */
  watchPolicies(listener: () => void | Promise<void>): Promise<() => Promise<void>>;
}

/** Runs every listener; one that fails does not keep the others from running. */
async function notifyAll(listeners: Iterable<() => void | Promise<void>>): Promise<void> {
  await Promise.allSettled([...listeners].map(async (l) => l()));
}

export class MemoryAdminStore implements AdminStore {
  private readonly log: ChangeRecord[] = [];
  private readonly byScope = new Map<string, PolicyEntry>();
  /** The last version of each deleted scope. */
  private readonly tombstones = new Map<string, number>();
  private readonly listeners = new Set<() => void | Promise<void>>();

  async record(c: NewChange): Promise<ChangeRecord> {
    const r = { ...structuredClone(c), id: this.log.length + 1, at: new Date().toISOString() };
    this.log.push(r);
    return structuredClone(r);
  }

  async changes(o: { afterId?: number; limit: number; tenant?: string; kind?: string }) {
    return this.log
      .filter(
        (c) =>
          c.id > (o.afterId ?? 0) &&
          (o.tenant === undefined || c.tenant === o.tenant) &&
          (o.kind === undefined || c.kind === o.kind),
      )
      .slice(0, o.limit)
      .map((c) => structuredClone(c));
  }

  async policies() {
    return [...this.byScope.values()].map((p) => structuredClone(p));
  }

  async policy(scope: string) {
    const p = this.byScope.get(scope);
    return p && structuredClone(p);
  }

  async putPolicy(scope: string, policy: Record<string, unknown>, by: string, expected?: number) {
    const actual = this.byScope.get(scope)?.version ?? 0;
    if (expected !== undefined && expected !== actual)
      throw new VersionConflictError(scope, expected, actual);
    const p: PolicyEntry = {
      scope,
      version: (this.byScope.get(scope)?.version ?? this.tombstones.get(scope) ?? 0) + 1,
      policy: structuredClone(policy),
      updatedAt: new Date().toISOString(),
      updatedBy: by,
    };
    this.byScope.set(scope, p);
    this.tombstones.delete(scope);
    await notifyAll(this.listeners);
    return structuredClone(p);
  }

  async deletePolicy(scope: string, _by: string, expected?: number) {
    const current = this.byScope.get(scope);
    if (expected !== undefined && expected !== (current?.version ?? 0))
      throw new VersionConflictError(scope, expected, current?.version ?? 0);
    if (!current) return undefined;
    this.byScope.delete(scope);
    this.tombstones.set(scope, current.version + 1);
    await notifyAll(this.listeners);
    return current.version + 1;
  }

  async watchPolicies(listener: () => void | Promise<void>) {
    this.listeners.add(listener);
    return async () => void this.listeners.delete(listener);
  }
}

interface ChangeRow {
  id: string | number;
  at: Date;
  actor: string;
  tenant: string | null;
  kind: string;
  target: string;
  op: string;
  version: string | number | null;
  detail: Record<string, unknown> | null;
}

interface PolicyRow {
  scope: string;
  version: string | number;
  policy: Record<string, unknown>;
  updated_at: Date;
  updated_by: string;
}

/** A tombstone's policy column: JSON null (the column is NOT NULL). */
const DELETED = `'null'::jsonb`;

export class PostgresAdminStore implements AdminStore {
  private readonly listeners = new Set<() => void | Promise<void>>();
  private unlisten: Promise<() => Promise<void>> | undefined;
  private readonly channel: string;

  constructor(private readonly db: SqlDatabase) {
    this.channel = channelName(db.schema, 'admin_policies');
  }

  async record(c: NewChange): Promise<ChangeRecord> {
    const r = await this.db.query<ChangeRow>(
      `INSERT INTO admin_changes (at, actor, tenant, kind, target, op, version, detail)
       VALUES (now(), $1, $2, $3, $4, $5, $6, $7::jsonb) RETURNING *`,
      [
        c.actor,
        c.tenant,
        c.kind,
        c.target,
        c.op,
        c.version,
        c.detail === undefined ? null : JSON.stringify(c.detail),
      ],
    );
    return changeOf(r.rows[0]!);
  }

  async changes(o: { afterId?: number; limit: number; tenant?: string; kind?: string }) {
    const r = await this.db.query<ChangeRow>(
      `SELECT * FROM admin_changes WHERE id > $1 AND ($2::text IS NULL OR tenant = $2)
         AND ($3::text IS NULL OR kind = $3) ORDER BY id LIMIT $4`,
      [o.afterId ?? 0, o.tenant ?? null, o.kind ?? null, o.limit],
    );
    return r.rows.map(changeOf);
  }

  async policies() {
    const r = await this.db.query<PolicyRow>(
      `SELECT * FROM admin_policies WHERE policy <> ${DELETED} ORDER BY scope`,
    );
    return r.rows.map(policyOf);
  }

  async policy(scope: string) {
    const r = await this.db.query<PolicyRow>(
      `SELECT * FROM admin_policies WHERE scope = $1 AND policy <> ${DELETED}`,
      [scope],
    );
    return r.rows[0] && policyOf(r.rows[0]);
  }

  async putPolicy(scope: string, policy: Record<string, unknown>, by: string, expected?: number) {
    const entry = await this.db.transaction(async (tx) => {
      const json = JSON.stringify(policy);
      // The row lock orders concurrent writers; an expected version that is no longer current writes
      // nothing. "Must not exist" (0) also holds for a tombstone, whose version the new one follows.
      const r = await tx.query<PolicyRow>(
        `INSERT INTO admin_policies AS p (scope, version, policy, updated_at, updated_by)
         VALUES ($1, 1, $2::jsonb, now(), $3)
         ON CONFLICT (scope) DO UPDATE SET version = p.version + 1, policy = EXCLUDED.policy,
           updated_at = EXCLUDED.updated_at, updated_by = EXCLUDED.updated_by
         WHERE $4::bigint IS NULL OR (p.version = $4::bigint AND p.policy <> ${DELETED})
           OR ($4::bigint = 0 AND p.policy = ${DELETED})
         RETURNING *`,
        [scope, json, by, expected ?? null],
      );
      const row = r.rows[0];
      // Inserting a first version when the writer expected one: also a conflict.
      if (!row || (expected !== undefined && expected !== 0 && Number(row.version) !== expected + 1)) {
        const cur = await tx.query<{ version: string; deleted: boolean }>(
          `SELECT version, policy = ${DELETED} AS deleted FROM admin_policies WHERE scope = $1`,
          [scope],
        );
        const c = cur.rows[0];
        const actual = row || !c || c.deleted ? 0 : Number(c.version);
        throw new VersionConflictError(scope, expected ?? 0, actual);
      }
      await tx.query(
        `INSERT INTO admin_policy_history (scope, version, policy, changed_at, changed_by)
         VALUES ($1, $2, $3::jsonb, $4, $5)`,
        [scope, row.version, json, row.updated_at, by],
      );
      await tx.query('SELECT pg_notify($1, $2)', [this.channel, scope]);
      return policyOf(row);
    });
    await notifyAll(this.listeners);
    return entry;
  }

  async deletePolicy(scope: string, by: string, expected?: number) {
    const version = await this.db.transaction(async (tx) => {
      const r = await tx.query<{ version: string; updated_at: Date }>(
        `UPDATE admin_policies SET version = version + 1, policy = ${DELETED}, updated_at = now(),
           updated_by = $2
         WHERE scope = $1 AND policy <> ${DELETED} AND ($3::bigint IS NULL OR version = $3::bigint)
         RETURNING version, updated_at`,
        [scope, by, expected ?? null],
      );
      const row = r.rows[0];
      if (!row) {
        const cur = await tx.query<{ version: string }>(
          `SELECT version FROM admin_policies WHERE scope = $1 AND policy <> ${DELETED}`,
          [scope],
        );
        const actual = Number(cur.rows[0]?.version ?? 0);
        if (expected !== undefined && expected !== actual)
          throw new VersionConflictError(scope, expected, actual);
        return undefined;
      }
      await tx.query(
        `INSERT INTO admin_policy_history (scope, version, policy, changed_at, changed_by)
         VALUES ($1, $2, ${DELETED}, $3, $4)`,
        [scope, row.version, row.updated_at, by],
      );
      await tx.query('SELECT pg_notify($1, $2)', [this.channel, scope]);
      return Number(row.version);
    });
    if (version !== undefined) await notifyAll(this.listeners);
    return version;
  }

  async watchPolicies(listener: () => void | Promise<void>) {
    this.listeners.add(listener);
    // One LISTEN for every listener. Own writes are announced directly (awaited); their notices, which
    // come back too, only cause a harmless re-read.
    this.unlisten ??= this.db.listen(
      this.channel,
      () => void notifyAll(this.listeners),
      () => void notifyAll(this.listeners),
    );
    await this.unlisten;
    return async () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0 && this.unlisten) {
        const u = this.unlisten;
        this.unlisten = undefined;
        await (
          await u
        )();
      }
    };
  }
}

function changeOf(r: ChangeRow): ChangeRecord {
  return {
    id: Number(r.id),
    at: r.at.toISOString(),
    actor: r.actor,
    tenant: r.tenant,
    kind: r.kind,
    target: r.target,
    op: r.op,
    version: r.version === null ? null : Number(r.version),
    ...(r.detail ? { detail: r.detail } : {}),
  };
}

function policyOf(r: PolicyRow): PolicyEntry {
  return {
    scope: r.scope,
    version: Number(r.version),
    policy: r.policy,
    updatedAt: r.updated_at.toISOString(),
    updatedBy: r.updated_by,
  };
}
