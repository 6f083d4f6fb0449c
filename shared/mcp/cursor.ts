/**
 * The gateway's own opaque pagination cursors over merged lists: an offset bound to the list it was cut
 * from (a fingerprint), so a cursor from another list or an altered one is refused with -32602.
 */
import { createHmac, randomBytes } from 'node:crypto';

/** Random per process on a single node; replicas that share sessions install one shared key at start. */
let key: Buffer = randomBytes(32);

/** Makes cursors issued by any replica holding the same key valid on every other one. */
export function useCursorKey(shared: Buffer): void {
  if (shared.length < 32) throw new RangeError('the cursor key must be at least 32 bytes');
  key = shared;
}

function sign(payload: string): string {
  return createHmac('sha256', key).update(payload).digest('base64url').slice(0, 16);
}

export function encodeCursor(kind: string, offset: number): string {
  const payload = `${kind}:${offset}`;
  return Buffer.from(`${payload}:${sign(payload)}`).toString('base64url');
}

/** Returns the offset, or undefined when the cursor is not one this gateway process issued for `kind`. */
export function decodeCursor(kind: string, cursor: unknown): number | undefined {
  if (typeof cursor !== 'string' || cursor.length > 200) return undefined;
  const text = Buffer.from(cursor, 'base64url').toString('utf8');
  const sigAt = text.lastIndexOf(':');
  const payload = text.slice(0, sigAt);
  const offAt = payload.lastIndexOf(':');
  if (sigAt < 0 || offAt < 0 || payload.slice(0, offAt) !== kind) return undefined;
  if (sign(payload) !== text.slice(sigAt + 1)) return undefined;
  const offset = Number(payload.slice(offAt + 1));
  return Number.isSafeInteger(offset) && offset >= 0 ? offset : undefined;
}

export function paginate<T>(
  kind: string,
  items: readonly T[],
  cursor: unknown,
  pageSize: number,
): { page: T[]; nextCursor?: string } | undefined {
  let offset = 0;
  if (cursor !== undefined) {
    const o = decodeCursor(kind, cursor);
    if (o === undefined || o > items.length) return undefined;
    offset = o;
  }
  const page = items.slice(offset, offset + pageSize);
  const next = offset + pageSize;
  return next < items.length ? { page, nextCursor: encodeCursor(kind, next) } : { page };
}
