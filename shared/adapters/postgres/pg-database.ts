/**
 * SqlDatabase on a real Postgres server: a `pg` pool whose connections all use the store's schema as
 * their search_path, and one dedicated connection per LISTEN (pooled connections cannot hold one).
 */
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import type { Logger } from '../../log.js';
import { assertSchemaName, type SqlDatabase, type SqlQueryable, type SqlResult } from './sql.js';

export interface PgDatabaseOptions {
  url: string;
  schema: string;
  poolSize?: number;
  log?: Logger;
  /** Name shown in pg_stat_activity. */
  applicationName?: string;
}

// bigint (int8) columns hold sequence numbers and versions well inside 2^53: read them as numbers.
const types = {
  getTypeParser: ((oid: number, format?: string) =>
    oid === 20
      ? (v: string) => Number(v)
      : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
};

export class PgDatabase implements SqlDatabase {
  readonly kind = 'postgres' as const;
  readonly schema: string;
  private readonly pool: pg.Pool;
  private readonly listeners = new Set<{ stop(): Promise<void> }>();
  private readonly clientConfig: pg.ClientConfig;

  constructor(private readonly opts: PgDatabaseOptions) {
    assertSchemaName(opts.schema);
    this.schema = opts.schema;
    this.clientConfig = {
      connectionString: opts.url,
      options: `-c search_path=${opts.schema}`,
      application_name: opts.applicationName ?? 'mcpgw',
      types,
    };
    this.pool = new pg.Pool({ ...this.clientConfig, max: opts.poolSize ?? 10 });
    // An idle pooled connection that dies emits here; without a handler it would crash the process.
    this.pool.on('error', (err) => opts.log?.warn({ err: err.message }, 'postgres pool connection lost'));
  }

  async query<R>(text: string, params?: readonly unknown[]): Promise<SqlResult<R>> {
    const r = await this.pool.query(text, params as unknown[]);
    return { rows: r.rows as R[], rowCount: r.rowCount ?? 0 };
  }

  async exec(text: string): Promise<void> {
    await this.pool.query(text);
  }

  async transaction<T>(fn: (tx: SqlQueryable) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    const tx: SqlQueryable = {
      query: async <R>(text: string, params?: readonly unknown[]) => {
        const r = await client.query(text, params as unknown[]);
        return { rows: r.rows as R[], rowCount: r.rowCount ?? 0 };
      },
      // Without parameters pg uses the simple protocol, which takes several statements.
      exec: async (text: string) => void (await client.query(text)),
      copyFrom: (target: string, data: string) =>
        new Promise<void>((resolve, reject) => {
          const stream = client.query(copyFrom(`COPY ${target} FROM STDIN`));
          stream.on('finish', resolve);
          stream.on('error', reject);
          stream.end(data);
        }),
    };
    try {
      await client.query('BEGIN');
      const out = await fn(tx);
      await client.query('COMMIT');
      client.release();
      return out;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      // A connection whose rollback failed may be broken: destroy it rather than return it to the pool.
      client.release(err instanceof Error ? err : true);
      throw err;
    }
  }

  async listen(
    channel: string,
    onPayload: (payload: string) => void,
    onReconnect?: () => void,
  ): Promise<() => Promise<void>> {
    let stopped = false;
    let client: pg.Client | undefined;
    let delay = 100;
    const connect = async (): Promise<void> => {
      const c = new pg.Client(this.clientConfig);
      c.on('notification', (n) => {
        if (n.channel === channel) onPayload(n.payload ?? '');
      });
      c.on('error', (err) => {
        this.opts.log?.warn({ err: err.message, channel }, 'postgres LISTEN connection lost; reconnecting');
        void c.end().catch(() => {});
        if (client === c) client = undefined;
        if (!stopped) setTimeout(reconnect, delay).unref();
      });
      await c.connect();
      await c.query(`LISTEN "${channel}"`);
      client = c;
      delay = 100;
    };
    const reconnect = () => {
      if (stopped) return;
      connect().then(
        () => onReconnect?.(),
        () => {
          delay = Math.min(delay * 2, 5_000);
          setTimeout(reconnect, delay).unref();
        },
      );
    };
    await connect();
    const handle = {
      stop: async () => {
        stopped = true;
        this.listeners.delete(handle);
        await client?.end().catch(() => {});
        client = undefined;
      },
    };
    this.listeners.add(handle);
    return handle.stop;
  }

  async close(): Promise<void> {
    await Promise.all([...this.listeners].map((l) => l.stop()));
    await this.pool.end();
  }
}
