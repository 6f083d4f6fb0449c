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
  /**
   * `COPY <target> FROM STDIN` (text format; `target` is `table (columns)`) with `data` as its rows: the
   * cheapest way to append many rows (about a third of the server's CPU per row of an INSERT ... SELECT
   * from JSON, measured). Offered inside a transaction; callers fall back to INSERT where it is absent.
   * `data` must be escaped with `copyText`, one line per row.
   */
  copyFrom?(target: string, data: string): Promise<void>;
}

const COPY_SPECIAL = /[\\\t\n\r]/;
const COPY_SPECIAL_ALL = /[\\\t\n\r]/g;
const COPY_ESCAPES: Record<string, string> = { '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' };

/**
 * One field of a COPY text-format row: `\N` for null, backslash, tab, newline and carriage return escaped
 * (so that no value, whoever wrote it, can end its field or its row early or read as an escape). Numbers
 * are written as JavaScript prints them, which Postgres reads back exactly for the finite ones.
 */
export function copyText(value: string | number | null): string {
  if (value === null) return '\\N';
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new TypeError(`COPY: ${value} is not a finite number`);
    return String(value);
  }
  return COPY_SPECIAL.test(value) ? value.replace(COPY_SPECIAL_ALL, (c) => COPY_ESCAPES[c]!) : value;
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
