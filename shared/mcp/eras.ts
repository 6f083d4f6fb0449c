/**
 * The pure parts of the 2026-07-28 (stateless) era that the core needs toward 2026 backends: the
 * request envelope, the headers a 2026 server checks against the body (`Mcp-Method`, `Mcp-Name`,
 * `Mcp-Param-*` in the Base64 sentinel form where needed), the `x-mcp-header` declarations of a tool,
 * and the result fields a 2025 client must never see. See docs/adr/0004-protocol-eras.md.
 */
import type { JsonObject } from './jsonrpc.js';

export const MODERN_VERSION = '2026-07-28';
export const META_PROTOCOL_VERSION = 'io.modelcontextprotocol/protocolVersion';
export const META_CLIENT_CAPABILITIES = 'io.modelcontextprotocol/clientCapabilities';
export const META_CLIENT_INFO = 'io.modelcontextprotocol/clientInfo';
export const META_LOG_LEVEL = 'io.modelcontextprotocol/logLevel';
export const META_SERVER_INFO = 'io.modelcontextprotocol/serverInfo';
export const META_SUBSCRIPTION_ID = 'io.modelcontextprotocol/subscriptionId';

/** JSON-RPC codes a 2026 server answers with (ADR 0004, "What a 2026 server answers"). */
export const MODERN_CODES = {
  HeaderMismatch: -32020,
  MissingCapability: -32021,
  UnsupportedVersion: -32022,
} as const;

/** The methods a 2026 server serves; anything else it answers 404 / -32601. */
export const MODERN_REQUESTS: ReadonlySet<string> = new Set([
  'server/discover',
  'subscriptions/listen',
  'tools/list',
  'tools/call',
  'prompts/list',
  'prompts/get',
  'resources/list',
  'resources/templates/list',
  'resources/read',
  'completion/complete',
]);

/** Who is asking, as a 2026 envelope tells it. */
export interface EnvelopeOwner {
  readonly clientCapabilities: JsonObject;
  readonly clientInfo: JsonObject;
  readonly logLevel?: string | undefined;
}

/** `params` with the 2026 envelope in `_meta` (other `_meta` keys, a progress token included, kept). */
export function withEnvelope(params: JsonObject | undefined, owner: EnvelopeOwner): JsonObject {
  // 2026-07-28 has no tasks: a 2025 client's `tasks` capability means nothing to a 2026 server.
  const { tasks: _tasks, ...capabilities } = owner.clientCapabilities;
  const meta: JsonObject = {
    ...(params?._meta as JsonObject | undefined),
    [META_PROTOCOL_VERSION]: MODERN_VERSION,
    [META_CLIENT_CAPABILITIES]: capabilities,
    [META_CLIENT_INFO]: owner.clientInfo,
  };
  if (owner.logLevel !== undefined) meta[META_LOG_LEVEL] = owner.logLevel;
  return { ...params, _meta: meta };
}

/** The body field each method's `Mcp-Name` header carries. */
export const NAME_FIELD: Readonly<Record<string, string>> = {
  'tools/call': 'name',
  'prompts/get': 'name',
  'resources/read': 'uri',
};

/**
 * A header value as a 2026 client sends it: as is, or `=?base64?...?=` when it is empty, holds a byte
 * outside visible ASCII, space and tab, has leading or trailing blanks, or already looks like the sentinel.
 */
export function encodeHeaderValue(value: string): string {
  const plain =
    value.length > 0 &&
    /^[\x20-\x7e\t]*$/.test(value) &&
    !/^[ \t]|[ \t]$/.test(value) &&
    !(value.startsWith('=?base64?') && value.endsWith('?='));
  return plain ? value : `=?base64?${Buffer.from(value, 'utf8').toString('base64')}?=`;
}

/** One `x-mcp-header` declaration: the argument at `path` travels as `Mcp-Param-{header}`. */
export interface ParamHeader {
  header: string;
  path: string[];
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const HEADER_TYPES = new Set(['string', 'integer', 'boolean', 'number']);

/**
 * The `x-mcp-header` declarations of a tool's `inputSchema`, reached through `properties` only (the
 * spec's static reachability). Declarations elsewhere, or on non-primitive types, are ignored: the
 * server either rejects such a tool or never expects the header.
 */
export function paramHeaders(inputSchema: unknown): ParamHeader[] {
  const out: ParamHeader[] = [];
  const visit = (node: unknown, path: string[]) => {
    if (typeof node !== 'object' || node === null) return;
    const s = node as JsonObject;
    const h = s['x-mcp-header'];
    if (path.length > 0 && typeof h === 'string' && TOKEN.test(h) && HEADER_TYPES.has(String(s.type)))
      out.push({ header: h, path });
    const props = s.properties;
    if (typeof props === 'object' && props !== null)
      for (const [k, child] of Object.entries(props)) visit(child, [...path, k]);
  };
  visit(inputSchema, []);
  return out;
}

/** The `Mcp-Param-*` headers of a tools/call with these arguments. */
export function paramHeaderValues(decls: readonly ParamHeader[], args: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  for (const d of decls) {
    let v: unknown = args;
    for (const k of d.path) v = typeof v === 'object' && v !== null ? (v as JsonObject)[k] : undefined;
    let text: string | undefined;
    if (typeof v === 'string') text = v;
    else if (typeof v === 'boolean') text = v ? 'true' : 'false';
    else if (typeof v === 'number' && Number.isFinite(v) && (!Number.isInteger(v) || Number.isSafeInteger(v)))
      text = String(v);
    if (text !== undefined) out[`mcp-param-${d.header.toLowerCase()}`] = encodeHeaderValue(text);
  }
  return out;
}

/** Result fields of the 2026 era: a 2025 client never sees them. */
const MODERN_RESULT_FIELDS = ['resultType', 'ttlMs', 'cacheScope'];

/** A 2026 backend's result as a 2025 client must get it (returns the same object when nothing changes). */
export function legacyResult(result: JsonObject): JsonObject {
  const meta = result._meta as JsonObject | undefined;
  const hasMeta = meta !== undefined && META_SERVER_INFO in meta;
  if (!hasMeta && !MODERN_RESULT_FIELDS.some((k) => k in result)) return result;
  const out: JsonObject = { ...result };
  for (const k of MODERN_RESULT_FIELDS) delete out[k];
  if (hasMeta) {
    const { [META_SERVER_INFO]: _info, ...rest } = meta;
    if (Object.keys(rest).length > 0) out._meta = rest;
    else delete out._meta;
  }
  return out;
}
