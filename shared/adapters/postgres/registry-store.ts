/**
 * RegistryStore on Postgres (a server or the embedded PGlite). Each write is one transaction: the
 * server's row (a version counter that only grows; a delete leaves a tombstone), a history row, and a
 * NOTIFY that every gateway listening on the schema's channel turns into a watch event.
 */
import type { ServerConfig } from '../../config/schema.js';
import {
  RegistryConflictError,
  type RegistryChange,
  type RegistryEntry,
  type RegistryStore,
  type RegistryVersion,
  type WriteOptions,
} from '../../ports/registry-store.js';
import { SealedServerFields } from '../../vault/sealed-fields.js';
import { channelName, type SqlDatabase, type SqlQueryable } from './sql.js';
import { serverId } from '../../mcp/server-versions.js';

interface ServerRow {
  name: string;
  version: number;
  config: ServerConfig;
  updated_at: Date;
  updated_by: string;
}

interface Notice {
  type: 'upsert' | 'delete';
  name: string;
  version: number;
}

export class PostgresRegistryStore implements RegistryStore {
  private readonly listeners = new Set<(c: RegistryChange) => void>();
  /** The newest version this gateway has announced per name: duplicates and stale notices are dropped. */
  private readonly seen = new Map<string, number>();
  private unlisten: (() => Promise<void>) | undefined;
  private readonly channel: string;
  private closed = false;

  private constructor(
    private readonly db: SqlDatabase,
    private readonly ownsDb: boolean,
    private readonly sealed: SealedServerFields,
  ) {
    this.channel = channelName(db.schema, 'registry');
  }

  /**
   * Opens the store and starts listening, so that every change after this resolves is seen. With
   * `sealed` (a vault key), header and env values are stored encrypted.
   */
  static async open(
    db: SqlDatabase,
    options: { ownsDb?: boolean; sealed?: SealedServerFields } = {},
  ): Promise<PostgresRegistryStore> {
    const store = new PostgresRegistryStore(
      db,
      options.ownsDb ?? false,
      options.sealed ?? new SealedServerFields(undefined),
    );
    store.unlisten = await db.listen(
      store.channel,
      (payload) => store.onNotice(payload),
      () => void store.resync(),
    );
    for (const e of await store.list()) store.seen.set(serverId(e.server), e.version);
    return store;
  }

  async list(): Promise<RegistryEntry[]> {
    const r = await this.db.query<ServerRow>(
      'SELECT name, version, config, updated_at, updated_by FROM registry_servers WHERE NOT deleted ORDER BY name',
    );
    return r.rows.map((row) => this.opened(toEntry(row)));
  }

  async get(name: string): Promise<RegistryEntry | undefined> {
    const e = await getEntry(this.db, name);
    return e && this.opened(e);
  }

  async versions(name: string): Promise<RegistryEntry[]> {
    const r = await this.db.query<ServerRow>(
      `SELECT name, version, config, updated_at, updated_by FROM registry_servers
       WHERE family = $1 AND NOT deleted ORDER BY name`,
      [name],
    );
    return r.rows.map((row) => this.opened(toEntry(row)));
  }

  /**
   * Re-seals every stored header and env value (current versions and history) under the vault's current
   * key; versions do not change, since the servers did not. Returns how many rows were rewritten.
   */
  async reseal(): Promise<number> {
    let n = 0;
    for (const table of ['registry_servers', 'registry_history'] as const) {
      const r = await this.db.query<{ name: string; version: number; config: ServerConfig }>(
        `SELECT name, version, config FROM ${table} WHERE config IS NOT NULL`,
      );
      for (const row of r.rows) {
        if (!this.sealed.stale(row.config)) continue;
        const u = await this.db.query(
          `UPDATE ${table} SET config = $3::jsonb WHERE name = $1 AND version = $2`,
          [row.name, row.version, JSON.stringify(this.sealed.reseal(row.config))],
        );
        n += u.rowCount;
      }
    }
    return n;
  }

  private opened(e: RegistryEntry): RegistryEntry {
    return { ...e, server: this.sealed.open(e.server) };
  }

  async upsert(server: ServerConfig, by: string, options: WriteOptions = {}): Promise<RegistryEntry> {
    const { expectedVersion } = options;
    return this.db.transaction(async (tx) => {
      const now = new Date();
      const config = JSON.stringify(this.sealed.seal(server));
      // A known version updates only that live row; otherwise insert, or continue a tombstone, or
      // (without expectations) update whatever is there. The row lock orders concurrent writers.
      const r =
        expectedVersion !== undefined && expectedVersion > 0
          ? await tx.query<{ version: number }>(
              `UPDATE registry_servers SET version = version + 1, config = $2::jsonb, deleted = false,
                 updated_at = $3, updated_by = $4
               WHERE name = $1 AND NOT deleted AND version = $5 RETURNING version`,
              [serverId(server), config, now, by, expectedVersion],
            )
          : await tx.query<{ version: number }>(
              `INSERT INTO registry_servers AS s (name, version, config, deleted, updated_at, updated_by)
               VALUES ($1, 1, $2::jsonb, false, $3, $4)
               ON CONFLICT (name) DO UPDATE SET version = s.version + 1, config = EXCLUDED.config,
                 deleted = false, updated_at = EXCLUDED.updated_at, updated_by = EXCLUDED.updated_by
               WHERE $5::boolean IS NOT TRUE OR s.deleted
               RETURNING version`,
              [serverId(server), config, now, by, expectedVersion === 0],
            );
      const version = r.rows[0]?.version;
      if (version === undefined) throw await conflict(tx, serverId(server), expectedVersion!);
      await tx.query(
        `INSERT INTO registry_history (name, version, op, config, changed_at, changed_by)
         VALUES ($1, $2, 'upsert', $3::jsonb, $4, $5)`,
        [serverId(server), version, config, now, by],
      );
      await notify(tx, this.channel, { type: 'upsert', name: serverId(server), version });
      return { server: structuredClone(server), version, updatedAt: now.getTime(), updatedBy: by };
    });
  }

  async delete(name: string, by: string, options: WriteOptions = {}): Promise<boolean> {
    const { expectedVersion } = options;
    return this.db.transaction(async (tx) => {
      const now = new Date();
      const r = await tx.query<{ version: number }>(
        `UPDATE registry_servers SET version = version + 1, config = NULL, deleted = true,
           updated_at = $2, updated_by = $3
         WHERE name = $1 AND NOT deleted AND ($4::bigint IS NULL OR version = $4::bigint) RETURNING version`,
        [name, now, by, expectedVersion ?? null],
      );
      const version = r.rows[0]?.version;
      if (version === undefined) {
        if (expectedVersion === undefined || expectedVersion === 0) {
          if (expectedVersion === 0 && (await liveVersion(tx, name)) !== 0)
            throw await conflict(tx, name, expectedVersion);
          return false;
        }
        throw await conflict(tx, name, expectedVersion);
      }
      await tx.query(
        `INSERT INTO registry_history (name, version, op, config, changed_at, changed_by)
         VALUES ($1, $2, 'delete', NULL, $3, $4)`,
        [name, version, now, by],
      );
      await notify(tx, this.channel, { type: 'delete', name, version });
      return true;
    });
  }

  async history(name: string): Promise<RegistryVersion[]> {
    const r = await this.db.query<{
      version: number;
      op: 'upsert' | 'delete';
      config: ServerConfig | null;
      changed_at: Date;
      changed_by: string;
    }>(
      'SELECT version, op, config, changed_at, changed_by FROM registry_history WHERE name = $1 ORDER BY version',
      [name],
    );
    return r.rows.map((row) => ({
      name,
      version: row.version,
      op: row.op,
      ...(row.config ? { server: this.sealed.open(row.config) } : {}),
      changedAt: row.changed_at.getTime(),
      changedBy: row.changed_by,
    }));
  }

  watch(listener: (change: RegistryChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.listeners.clear();
    await this.unlisten?.();
    if (this.ownsDb) await this.db.close();
  }

  private onNotice(payload: string): void {
    let n: Notice;
    try {
      n = JSON.parse(payload) as Notice;
    } catch {
      return; // not ours: the channel is the schema's, but anyone may NOTIFY on it
    }
    if (typeof n.name !== 'string' || typeof n.version !== 'number') return;
    void this.announce(n.name, n.version, n.type);
  }

  /** Reads what a notice names and tells the listeners, once per version and never going back. */
  private async announce(name: string, version: number, type: Notice['type']): Promise<void> {
    if (this.closed || version <= (this.seen.get(name) ?? 0)) return;
    if (type === 'delete') {
      this.seen.set(name, version);
      return this.emit({ type: 'delete', name, version });
    }
    const entry = await this.get(name).catch(() => undefined);
    // A later change overtook this notice: its own notice will announce it.
    if (!entry || entry.version < version || entry.version <= (this.seen.get(name) ?? 0)) return;
    this.seen.set(name, entry.version);
    this.emit({ type: 'upsert', entry });
  }

  /** After a lost LISTEN connection: whatever changed meanwhile, announced from the current state. */
  private async resync(): Promise<void> {
    const r = await this.db
      .query<{ name: string; version: number; deleted: boolean }>(
        'SELECT name, version, deleted FROM registry_servers',
      )
      .catch(() => undefined);
    for (const row of r?.rows ?? [])
      await this.announce(row.name, row.version, row.deleted ? 'delete' : 'upsert');
  }

  private emit(change: RegistryChange): void {
    for (const l of this.listeners) l(structuredClone(change));
  }
}

function toEntry(row: ServerRow): RegistryEntry {
  return {
    server: row.config,
    version: row.version,
    updatedAt: row.updated_at.getTime(),
    updatedBy: row.updated_by,
  };
}

async function getEntry(q: SqlQueryable, name: string): Promise<RegistryEntry | undefined> {
  const r = await q.query<ServerRow>(
    'SELECT name, version, config, updated_at, updated_by FROM registry_servers WHERE name = $1 AND NOT deleted',
    [name],
  );
  return r.rows[0] ? toEntry(r.rows[0]) : undefined;
}

async function liveVersion(q: SqlQueryable, name: string): Promise<number> {
  return (await getEntry(q, name))?.version ?? 0;
}

async function conflict(q: SqlQueryable, name: string, expected: number): Promise<RegistryConflictError> {
  return new RegistryConflictError(name, expected, await liveVersion(q, name));
}

async function notify(q: SqlQueryable, channel: string, notice: Notice): Promise<void> {
  // Delivered at commit, and only then: a rolled-back change is never announced.
  await q.query('SELECT pg_notify($1, $2)', [channel, JSON.stringify(notice)]);
}
