/**
 * SqlDatabase in-process: PGlite (Postgres compiled to WASM) on a data directory, or in memory. One
 * connection, so queries queue; LISTEN/NOTIFY work within the process. Same SQL as the server.
 */
import { PGlite } from '@electric-sql/pglite';
import { assertSchemaName, type SqlDatabase, type SqlQueryable, type SqlResult } from './sql.js';

export interface EmbeddedDatabaseOptions {
  /** Directory of the database files; absent keeps everything in memory (gone at exit). */
  dataDir?: string;
  schema: string;
}

export class EmbeddedDatabase implements SqlDatabase {
  readonly kind = 'embedded' as const;
  readonly schema: string;

  private constructor(
    private readonly db: PGlite,
    schema: string,
  ) {
    this.schema = schema;
  }

  static async open(opts: EmbeddedDatabaseOptions): Promise<EmbeddedDatabase> {
    assertSchemaName(opts.schema);
    const db = await PGlite.create(opts.dataDir ? { dataDir: opts.dataDir } : {});
    // One connection: its search_path is set once for every later query.
    await db.query(`SET search_path TO ${opts.schema}`);
    return new EmbeddedDatabase(db, opts.schema);
  }

  async query<R>(text: string, params?: readonly unknown[]): Promise<SqlResult<R>> {
    const r = await this.db.query<R>(text, params as unknown[]);
    return { rows: r.rows.map(bigintsToNumbers), rowCount: r.affectedRows ?? r.rows.length };
  }

  async exec(text: string): Promise<void> {
    await this.db.exec(text);
  }

  async transaction<T>(fn: (tx: SqlQueryable) => Promise<T>): Promise<T> {
    return this.db.transaction(async (t) =>
      fn({
        query: async <R>(text: string, params?: readonly unknown[]) => {
          const r = await t.query<R>(text, params as unknown[]);
          return { rows: r.rows.map(bigintsToNumbers), rowCount: r.affectedRows ?? r.rows.length };
        },
        exec: async (text: string) => void (await t.exec(text)),
      }),
    );
  }

  async listen(channel: string, onPayload: (payload: string) => void): Promise<() => Promise<void>> {
    // In-process: the connection cannot be lost, so there is never a reconnect to report.
    return this.db.listen(channel, onPayload);
  }

  async close(): Promise<void> {
    if (!this.db.closed) await this.db.close();
  }
}

/** PGlite reads int8 as BigInt; the stores use numbers (sequence numbers stay well below 2^53). */
function bigintsToNumbers<R>(row: R): R {
  for (const [k, v] of Object.entries(row as Record<string, unknown>))
    if (typeof v === 'bigint') (row as Record<string, unknown>)[k] = Number(v);
  return row;
}
