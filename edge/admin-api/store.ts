/**
 * What the admin API keeps beside the registry: the change log (every change, with who and when) and the
 * versioned access policies. On Postgres (server or embedded) when the node has a database, in memory
 * otherwise (`store: memory`, lost at restart like the rest of that store).
 */
import type { SqlDatabase } from '../../shared/adapters/postgres/sql.js';

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
}

export class MemoryAdminStore implements AdminStore {
  private readonly log: ChangeRecord[] = [];
  private readonly byScope = new Map<string, PolicyEntry>();

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
      version: actual + 1,
      policy: structuredClone(policy),
      updatedAt: new Date().toISOString(),
      updatedBy: by,
    };
    this.byScope.set(scope, p);
    return structuredClone(p);
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

export class PostgresAdminStore implements AdminStore {
  constructor(private readonly db: SqlDatabase) {}

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
    const r = await this.db.query<PolicyRow>('SELECT * FROM admin_policies ORDER BY scope');
    return r.rows.map(policyOf);
  }

  async policy(scope: string) {
    const r = await this.db.query<PolicyRow>('SELECT * FROM admin_policies WHERE scope = $1', [scope]);
    return r.rows[0] && policyOf(r.rows[0]);
  }

  async putPolicy(scope: string, policy: Record<string, unknown>, by: string, expected?: number) {
    return this.db.transaction(async (tx) => {
      const json = JSON.stringify(policy);
      // The row lock orders concurrent writers; an expected version that is no longer current writes nothing.
      const r = await tx.query<PolicyRow>(
        `INSERT INTO admin_policies AS p (scope, version, policy, updated_at, updated_by)
         VALUES ($1, 1, $2::jsonb, now(), $3)
         ON CONFLICT (scope) DO UPDATE SET version = p.version + 1, policy = EXCLUDED.policy,
           updated_at = EXCLUDED.updated_at, updated_by = EXCLUDED.updated_by
         WHERE $4::bigint IS NULL OR p.version = $4::bigint
         RETURNING *`,
        [scope, json, by, expected ?? null],
      );
      const row = r.rows[0];
      // Inserting a first version when the writer expected one: also a conflict.
      if (!row || (expected !== undefined && Number(row.version) !== expected + 1)) {
        const cur = await tx.query<{ version: string }>(
          'SELECT version FROM admin_policies WHERE scope = $1',
          [scope],
        );
        const actual = row ? 0 : Number(cur.rows[0]?.version ?? 0);
        throw new VersionConflictError(scope, expected ?? 0, actual);
      }
      await tx.query(
        `INSERT INTO admin_policy_history (scope, version, policy, changed_at, changed_by)
         VALUES ($1, $2, $3::jsonb, $4, $5)`,
        [scope, row.version, json, row.updated_at, by],
      );
      return policyOf(row);
    });
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
