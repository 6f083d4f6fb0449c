/**
 * SqlDatabase in-process: PGlite (Postgres compiled to WASM) on a data directory, or in memory. One
 * connection, so queries queue; LISTEN/NOTIFY work within the process. Same SQL as the server.
 */
import { PGlite } from '@electric-sql/pglite';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
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
    const db = opts.dataDir ? await PGlite.create({ dataDir: opts.dataDir }) : await inMemory();
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
        // PGlite reads COPY data from a Blob it is handed as /dev/blob.
        copyFrom: async (target: string, data: string) =>
          void (await t.query(`COPY ${target} FROM '/dev/blob'`, [], { blob: new Blob([data]) })),
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

/**
 * A fresh in-memory PGlite runs initdb: about ten seconds of CPU. The first one on a machine saves its
 * freshly initialised data directory (a tarball, per PGlite version, in the user's cache directory,
 * private to the user); later ones start from it in a fraction of that. Any problem with the cache
 * means a plain start.
 */
async function inMemory(): Promise<PGlite> {
  const file = templateFile();
  if (file) {
    try {
      return await PGlite.create({ loadDataDir: new Blob([readFileSync(file)]) });
    } catch {
      // no template yet, or an unreadable one: start plainly and (re)write it
    }
  }
  const db = await PGlite.create();
  if (file) {
    try {
      const tar = Buffer.from(await (await db.dumpDataDir('gzip')).arrayBuffer());
      mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
      const tmp = `${file}.${process.pid}.tmp`;
      writeFileSync(tmp, tar, { mode: 0o600 });
      renameSync(tmp, file); // atomic: a concurrent start reads a whole template or none
    } catch {
      // a read-only home: every in-memory start pays initdb
    }
  }
  return db;
}

function templateFile(): string | undefined {
  try {
    const entry = createRequire(import.meta.url).resolve('@electric-sql/pglite');
    const pkg = JSON.parse(readFileSync(join(dirname(entry), '..', 'package.json'), 'utf8')) as {
      version: string;
    };
    const cache = process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache');
    return join(cache, 'mcpgw', `pglite-${pkg.version}-initdb.tar.gz`);
  } catch {
    return undefined;
  }
}

/** PGlite reads int8 as BigInt; the stores use numbers (sequence numbers stay well below 2^53). */
function bigintsToNumbers<R>(row: R): R {
  for (const [k, v] of Object.entries(row as Record<string, unknown>))
    if (typeof v === 'bigint') (row as Record<string, unknown>)[k] = Number(v);
  return row;
}
