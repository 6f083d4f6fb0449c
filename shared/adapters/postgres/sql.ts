/**
 * The small SQL interface every Postgres-backed store is written against. Two implementations: a `pg`
 * pool on a real server (`pg-database.ts`) and PGlite in-process (`embedded-database.ts`), so the same
 * migrations and the same queries run on a cluster and on a single node that needs no server.
 */

export interface SqlResult<R> {
  rows: R[];
  rowCount: number;
}

export interface SqlQueryable {
  /** One statement with `$1..$n` parameters. */
  query<R = Record<string, unknown>>(text: string, params?: readonly unknown[]): Promise<SqlResult<R>>;
  /** Several statements, no parameters (migrations). */
  exec(text: string): Promise<void>;
}

export interface SqlDatabase extends SqlQueryable {
  readonly kind: 'postgres' | 'embedded';
  /** Every table lives in this schema (the connection's search_path). */
  readonly schema: string;
  /** Runs `fn` in one transaction on one connection; commits when it resolves, rolls back when it throws. */
  transaction<T>(fn: (tx: SqlQueryable) => Promise<T>): Promise<T>;
  /**
   * LISTEN on `channel` (a lowercase identifier). `onReconnect` runs after a lost listening connection is
   * back: notifications sent meanwhile are lost, so the listener must re-read what it watches.
   */
  listen(
    channel: string,
    onPayload: (payload: string) => void,
    onReconnect?: () => void,
  ): Promise<() => Promise<void>>;
  close(): Promise<void>;
}

/** Schema names are interpolated into SQL (search_path, DDL), so only plain identifiers are accepted. */
export const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,39}$/;

export function assertSchemaName(schema: string): void {
  if (!SCHEMA_NAME.test(schema))
    throw new RangeError(
      `schema "${schema}": lowercase letters, digits and "_", at most 40, not starting with a digit`,
    );
}

/** NOTIFY channels are global to a database: the schema's name keeps tenants and test runs apart. */
export function channelName(schema: string, topic: string): string {
  return `${schema}_${topic}`;
}
