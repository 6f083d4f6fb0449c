/**
 * VirtualServerStore on Postgres (a server or the embedded PGlite), written like the registry: one
 * transaction per write (the row with a version that only grows, a tombstone for a delete, a history
 * row) and a NOTIFY at commit that every gateway listening on the schema's channel passes on.
 */
import type { VirtualServerConfig } from '../../config/virtual-schema.js';
import {
  VirtualServerConflictError,
  type VirtualServerEntry,
  type VirtualServerStore,
  type VirtualServerVersion,
} from '../../ports/virtual-server-store.js';
import { channelName, type SqlDatabase, type SqlQueryable } from './sql.js';

interface Row {
  name: string;
  version: string | number;
  definition: VirtualServerConfig;
  updated_at: Date;
  updated_by: string;
}

export class PostgresVirtualServerStore implements VirtualServerStore {
  private readonly listeners = new Set<(name: string) => void>();
  private unlisten: (() => Promise<void>) | undefined;
  private readonly channel: string;

  private constructor(private readonly db: SqlDatabase) {
    this.channel = channelName(db.schema, 'virtual_servers');
  }

  /** Opens the store and starts listening, so that every change after this resolves is seen. */
  static async open(db: SqlDatabase): Promise<PostgresVirtualServerStore> {
    const store = new PostgresVirtualServerStore(db);
    store.unlisten = await db.listen(
      store.channel,
      (name) => store.emit(name),
      // Notices sent while the connection was down are lost: everything may have changed.
      () => store.emit('*'),
    );
    return store;
  }

  async list(): Promise<VirtualServerEntry[]> {
    const r = await this.db.query<Row>(
      'SELECT name, version, definition, updated_at, updated_by FROM virtual_servers WHERE NOT deleted ORDER BY name',
    );
    return r.rows.map(entryOf);
  }

  async get(name: string): Promise<VirtualServerEntry | undefined> {
    return current(this.db, name);
  }

  async put(v: VirtualServerConfig, by: string, expected?: number): Promise<VirtualServerEntry> {
    return this.db.transaction(async (tx) => {
      const now = new Date();
      const json = JSON.stringify(v);
      // The row lock orders concurrent writers; a stale expectation updates nothing.
      const r =
        expected !== undefined && expected > 0
          ? await tx.query<{ version: string }>(
              `UPDATE virtual_servers SET version = version + 1, definition = $2::jsonb, deleted = false,
                 updated_at = $3, updated_by = $4
               WHERE name = $1 AND NOT deleted AND version = $5 RETURNING version`,
              [v.name, json, now, by, expected],
            )
          : await tx.query<{ version: string }>(
              `INSERT INTO virtual_servers AS s (name, version, definition, deleted, updated_at, updated_by)
               VALUES ($1, 1, $2::jsonb, false, $3, $4)
               ON CONFLICT (name) DO UPDATE SET version = s.version + 1, definition = EXCLUDED.definition,
                 deleted = false, updated_at = EXCLUDED.updated_at, updated_by = EXCLUDED.updated_by
               WHERE $5::boolean IS NOT TRUE OR s.deleted
               RETURNING version`,
              [v.name, json, now, by, expected === 0],
            );
      const version = r.rows[0] && Number(r.rows[0].version);
      if (version === undefined)
        throw new VirtualServerConflictError(
          v.name,
          expected ?? 0,
          (await current(tx, v.name))?.version ?? 0,
        );
      await tx.query(
        `INSERT INTO virtual_server_history (name, version, op, definition, changed_at, changed_by)
         VALUES ($1, $2, 'upsert', $3::jsonb, $4, $5)`,
        [v.name, version, json, now, by],
      );
      await tx.query('SELECT pg_notify($1, $2)', [this.channel, v.name]);
      return { virtualServer: structuredClone(v), version, updatedAt: now.getTime(), updatedBy: by };
    });
  }

  async delete(name: string, by: string, expected?: number): Promise<boolean> {
    return this.db.transaction(async (tx) => {
      const now = new Date();
      const r = await tx.query<{ version: string }>(
        `UPDATE virtual_servers SET version = version + 1, deleted = true, updated_at = $2, updated_by = $3
         WHERE name = $1 AND NOT deleted AND ($4::bigint IS NULL OR version = $4::bigint) RETURNING version`,
        [name, now, by, expected ?? null],
      );
      const version = r.rows[0] && Number(r.rows[0].version);
      if (version === undefined) {
        const actual = (await current(tx, name))?.version ?? 0;
        if (expected !== undefined && expected !== actual)
          throw new VirtualServerConflictError(name, expected, actual);
        return false;
      }
      await tx.query(
        `INSERT INTO virtual_server_history (name, version, op, definition, changed_at, changed_by)
         VALUES ($1, $2, 'delete', NULL, $3, $4)`,
        [name, version, now, by],
      );
      await tx.query('SELECT pg_notify($1, $2)', [this.channel, name]);
      return true;
    });
  }

  async history(name: string): Promise<VirtualServerVersion[]> {
    const r = await this.db.query<{
      version: string;
      op: 'upsert' | 'delete';
      definition: VirtualServerConfig | null;
      changed_at: Date;
      changed_by: string;
    }>(
      'SELECT version, op, definition, changed_at, changed_by FROM virtual_server_history WHERE name = $1 ORDER BY version',
      [name],
    );
    return r.rows.map((row) => ({
      name,
      version: Number(row.version),
      op: row.op,
      ...(row.definition && { virtualServer: row.definition }),
      changedAt: row.changed_at.getTime(),
      changedBy: row.changed_by,
    }));
  }

  watch(listener: (name: string) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async close(): Promise<void> {
    this.listeners.clear();
    await this.unlisten?.();
  }

  private emit(name: string): void {
    for (const l of this.listeners) l(name);
  }
}

async function current(q: SqlQueryable, name: string): Promise<VirtualServerEntry | undefined> {
  const r = await q.query<Row>(
    'SELECT name, version, definition, updated_at, updated_by FROM virtual_servers WHERE name = $1 AND NOT deleted',
    [name],
  );
  return r.rows[0] && entryOf(r.rows[0]);
}

function entryOf(row: Row): VirtualServerEntry {
  return {
    virtualServer: row.definition,
    version: Number(row.version),
    updatedAt: row.updated_at.getTime(),
    updatedBy: row.updated_by,
  };
}
