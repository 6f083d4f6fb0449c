/**
 * The response cache of read-only tools: an in-process LRU in front of a shared store (Redis), keyed by
 * server, tool, canonical arguments and the caller's scope. It keeps the full result and serves a
 * field-filtered part when the caller asks for fields (cache full, serve partial), and it can serve an
 * expired entry while the backend fails (stale-if-error).
 */
import { createHash } from 'node:crypto';
import type { JsonObject } from '../../shared/mcp/jsonrpc.js';
import type { Logger } from '../../shared/log.js';
import type { CachedResponse, ResponseCache } from '../../shared/ports/response-cache.js';

/** `_meta` keys of a request that the gateway reads (and removes before the backend sees them). */
export const META_FIELDS = 'io.mcpgw/fields';
export const META_CACHE = 'io.mcpgw/cache';
export const META_DEADLINE = 'io.mcpgw/deadline';
/** Set on a result's `_meta` when it came from the cache. */
export const META_CACHED = 'io.mcpgw/cached';

export interface CacheCounters {
  hits: number;
  misses: number;
  staleServed: number;
  negativeHits: number;
  stores: number;
  sharedErrors: number;
}

export type CacheScope = 'user' | 'tenant' | 'shared';

export class ToolResponseCache {
  readonly counters: CacheCounters = {
    hits: 0,
    misses: 0,
    staleServed: 0,
    negativeHits: 0,
    stores: 0,
    sharedErrors: 0,
  };

  constructor(
    private readonly local: ResponseCache,
    private readonly shared: ResponseCache | undefined,
    private readonly maxEntryBytes: number,
    private readonly log: Logger,
  ) {}

  key(server: string, tool: string, args: unknown, scope: CacheScope, principal: string): string {
    const who = scope === 'shared' ? '*' : scope === 'tenant' ? tenantOf(principal) : principal;
    return createHash('sha256')
      .update(JSON.stringify([server, tool, canonical(args ?? {}), scope, who]))
      .digest('base64url');
  }

  /** The entry under `key` in either tier, fresh or not; the shared tier's failures are a miss. */
  async lookup(key: string): Promise<CachedResponse | undefined> {
    const hit = await this.local.get(key);
    if (hit || !this.shared) return hit;
    try {
      const v = await this.shared.get(key);
      if (v) await this.local.set(key, v, Math.max(1, v.freshUntil - Date.now()));
      return v;
    } catch (err) {
      this.counters.sharedErrors++;
      this.log.debug({ err: (err as Error).message }, 'shared response cache unreachable');
      return undefined;
    }
  }

  async store(key: string, value: CachedResponse, keepMs: number): Promise<void> {
    if (JSON.stringify(value.result).length > this.maxEntryBytes) return;
    this.counters.stores++;
    await this.local.set(key, value, keepMs);
    try {
      await this.shared?.set(key, value, keepMs);
    } catch (err) {
      this.counters.sharedErrors++;
      this.log.debug({ err: (err as Error).message }, 'shared response cache unreachable');
    }
  }

  async close(): Promise<void> {
    await Promise.all([this.local.close(), this.shared?.close()]);
  }
}

function tenantOf(principal: string): string {
  const i = principal.indexOf(':');
  return i < 0 ? principal : principal.slice(0, i);
}

/** JSON with object keys sorted at every level: equal arguments give equal keys. */
export function canonical(v: unknown): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v) ?? 'null';
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  const o = v as Record<string, unknown>;
  return `{${Object.keys(o)
    .sort()
    .filter((k) => o[k] !== undefined)
    .map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`)
    .join(',')}}`;
}

/** The fields a caller asked for (`_meta["io.mcpgw/fields"]`: dotted paths), if valid. */
export function requestedFields(params: JsonObject | undefined): string[] | undefined {
  const f = (params?._meta as JsonObject | undefined)?.[META_FIELDS];
  if (!Array.isArray(f) || f.length === 0 || !f.every((x) => typeof x === 'string' && x.length > 0))
    return undefined;
  return f as string[];
}

/**
 * The part of a tool result the caller asked for: `structuredContent` keeps only `fields`, and the text
 * block that carried the structured JSON is rewritten to match. Content without structure is untouched.
 */
export function filterResult(result: JsonObject, fields: readonly string[]): JsonObject {
  const sc = result.structuredContent;
  if (!sc || typeof sc !== 'object' || Array.isArray(sc)) return result;
  const picked = pick(
    sc as JsonObject,
    fields.map((f) => f.split('.')),
  );
  const full = JSON.stringify(sc);
  const content = Array.isArray(result.content)
    ? (result.content as JsonObject[]).map((c) =>
        c.type === 'text' && typeof c.text === 'string' && sameJson(c.text, full)
          ? { ...c, text: JSON.stringify(picked) }
          : c,
      )
    : result.content;
  return { ...result, structuredContent: picked, content };
}

function sameJson(text: string, json: string): boolean {
  try {
    return JSON.stringify(JSON.parse(text)) === json;
  } catch {
    return false;
  }
}

function pick(obj: JsonObject, paths: string[][]): JsonObject {
  const out: JsonObject = {};
  const groups = new Map<string, string[][]>();
  for (const [head, ...rest] of paths) {
    if (head === undefined || !(head in obj)) continue;
    const g = groups.get(head) ?? [];
    g.push(rest);
    groups.set(head, g);
  }
  for (const [k, rests] of groups) {
    const v = obj[k];
    if (rests.some((r) => r.length === 0) || v === null || typeof v !== 'object') out[k] = v;
    else if (Array.isArray(v))
      out[k] = v.map((e) =>
        e && typeof e === 'object' && !Array.isArray(e) ? pick(e as JsonObject, rests) : e,
      );
    else out[k] = pick(v as JsonObject, rests);
  }
  return out;
}

/** The request's params without the gateway's own `_meta` keys. */
export function withoutGatewayMeta(params: JsonObject | undefined): JsonObject | undefined {
  const meta = params?._meta as JsonObject | undefined;
  if (!meta || !(META_FIELDS in meta || META_CACHE in meta || META_DEADLINE in meta)) return params;
  const rest: JsonObject = { ...meta };
  delete rest[META_FIELDS];
  delete rest[META_CACHE];
  delete rest[META_DEADLINE];
  const out: JsonObject = { ...params };
  if (Object.keys(rest).length === 0) delete out._meta;
  else out._meta = rest;
  return out;
}

/** A result's own cache hints: `_meta["io.mcpgw/cache"]` {ttlMs?, noStore?} or a 2026 `ttlMs`. */
export function resultHints(result: JsonObject): { ttlMs?: number; noStore: boolean } {
  const h = (result._meta as JsonObject | undefined)?.[META_CACHE] as JsonObject | undefined;
  const ttl =
    typeof h?.ttlMs === 'number' ? h.ttlMs : typeof result.ttlMs === 'number' ? result.ttlMs : undefined;
  return { ...(ttl !== undefined && ttl >= 0 && { ttlMs: ttl }), noStore: h?.noStore === true };
}
