/**
 * Every error the gateway makes comes from this one table: a stable `GW_*` code, an HTTP status for the
 * HTTP layer, a JSON-RPC code for answers inside a session, and a message. Clients and runbooks act on
 * `data.code`; `docs/errors.md` documents every entry.
 */
import { rpcError, RpcCode, type JsonRpcFailure, type JsonRpcId } from './mcp/jsonrpc.js';

export interface ErrorSpec {
  readonly http: number;
  readonly rpc: number;
  readonly message: string;
}

export const ERRORS = {
  GW_PARSE_ERROR: { http: 400, rpc: RpcCode.ParseError, message: 'Parse error: the body is not valid JSON' },
  GW_INVALID_REQUEST: {
    http: 400,
    rpc: RpcCode.InvalidRequest,
    message: 'Invalid Request: not a JSON-RPC 2.0 message',
  },
  GW_BATCH_UNSUPPORTED: {
    http: 400,
    rpc: RpcCode.InvalidRequest,
    message: 'Invalid Request: JSON-RPC batches are not supported by this protocol version',
  },
  GW_METHOD_NOT_FOUND: { http: 200, rpc: RpcCode.MethodNotFound, message: 'Method not found' },
  GW_INVALID_PARAMS: { http: 200, rpc: RpcCode.InvalidParams, message: 'Invalid params' },
  GW_UNKNOWN_TOOL: { http: 200, rpc: RpcCode.InvalidParams, message: 'Unknown tool' },
  GW_UNKNOWN_PROMPT: { http: 200, rpc: RpcCode.InvalidParams, message: 'Unknown prompt' },
  GW_UNKNOWN_RESOURCE: { http: 200, rpc: RpcCode.ResourceNotFound, message: 'Resource not found' },
  GW_INVALID_CURSOR: { http: 200, rpc: RpcCode.InvalidParams, message: 'Invalid cursor' },
  GW_ALREADY_INITIALIZED: {
    http: 400,
    rpc: RpcCode.InvalidRequest,
    message: 'Invalid Request: session already initialized',
  },
  GW_SESSION_REQUIRED: {
    http: 400,
    rpc: RpcCode.ConnectionClosed,
    message: 'Bad Request: Mcp-Session-Id header is required',
  },
  GW_SESSION_ID_REQUIRED: {
    http: 400,
    rpc: RpcCode.ConnectionClosed,
    message: 'Bad Request: the sessionId query parameter is required',
  },
  GW_SESSION_NOT_FOUND: { http: 404, rpc: RpcCode.SessionNotFound, message: 'Session not found' },
  GW_UNSUPPORTED_PROTOCOL_VERSION: {
    http: 400,
    rpc: RpcCode.ConnectionClosed,
    message: 'Bad Request: unsupported MCP-Protocol-Version',
  },
  GW_NOT_ACCEPTABLE: {
    http: 406,
    rpc: RpcCode.ConnectionClosed,
    message: 'Not Acceptable: the client must accept both application/json and text/event-stream',
  },
  GW_NOT_ACCEPTABLE_SSE: {
    http: 406,
    rpc: RpcCode.ConnectionClosed,
    message: 'Not Acceptable: the client must accept text/event-stream',
  },
  GW_UNSUPPORTED_MEDIA_TYPE: {
    http: 415,
    rpc: RpcCode.ConnectionClosed,
    message: 'Unsupported Media Type: Content-Type must be application/json',
  },
  GW_BODY_TOO_LARGE: { http: 413, rpc: RpcCode.ConnectionClosed, message: 'Payload Too Large' },
  GW_METHOD_NOT_ALLOWED: { http: 405, rpc: RpcCode.ConnectionClosed, message: 'Method Not Allowed' },
  GW_STREAM_CONFLICT: {
    http: 409,
    rpc: RpcCode.ConnectionClosed,
    message: 'Conflict: only one GET stream is allowed per session',
  },
  GW_INVALID_ENVELOPE: {
    http: 400,
    rpc: RpcCode.InvalidParams,
    message: 'Invalid params: the 2026-07-28 request envelope (params._meta) is missing or malformed',
  },
  GW_UNSUPPORTED_VERSION: {
    http: 400,
    rpc: RpcCode.UnsupportedVersion,
    message: 'Unsupported protocol version',
  },
  GW_HEADER_MISMATCH: {
    http: 400,
    rpc: RpcCode.HeaderMismatch,
    message: 'An Mcp-* header does not match the request body',
  },
  GW_METHOD_NOT_FOUND_MODERN: {
    http: 404,
    rpc: RpcCode.MethodNotFound,
    message: 'Method not found in protocol 2026-07-28',
  },
  GW_INVALID_REQUEST_STATE: {
    http: 200,
    rpc: RpcCode.InvalidParams,
    message: 'Invalid or expired requestState',
  },
  GW_NOT_SUPPORTED_YET: {
    http: 200,
    rpc: RpcCode.InternalError,
    message: 'Not supported by this gateway yet',
  },
  GW_UNKNOWN_EVENT_ID: {
    http: 400,
    rpc: RpcCode.ConnectionClosed,
    message: 'Bad Request: Last-Event-ID names no event of this session that can still be replayed',
  },
  GW_FORBIDDEN_ORIGIN: { http: 403, rpc: RpcCode.ConnectionClosed, message: 'Forbidden: Origin not allowed' },
  GW_FORBIDDEN_HOST: { http: 403, rpc: RpcCode.ConnectionClosed, message: 'Forbidden: Host not allowed' },
  GW_UNKNOWN_SERVER: { http: 404, rpc: RpcCode.InvalidParams, message: 'Unknown server' },
  GW_UNKNOWN_VIRTUAL_SERVER: { http: 404, rpc: RpcCode.InvalidParams, message: 'Unknown virtual server' },
  GW_BACKEND_UNAVAILABLE: { http: 200, rpc: RpcCode.InternalError, message: 'Backend unavailable' },
  GW_BACKEND_PROTOCOL_ERROR: {
    http: 200,
    rpc: RpcCode.InternalError,
    message: 'Backend sent an invalid response',
  },
  GW_BACKEND_TIMEOUT: { http: 200, rpc: RpcCode.InternalError, message: 'Backend did not answer in time' },
  GW_CAPABILITY_NOT_DECLARED: {
    http: 200,
    rpc: RpcCode.MethodNotFound,
    message: 'The client did not declare this capability',
  },
  GW_NO_CLIENT_FOR_REQUEST: {
    http: 200,
    rpc: RpcCode.InternalError,
    message: 'No client request in flight to relay this server request to',
  },
  GW_CLIENT_AMBIGUOUS: {
    http: 200,
    rpc: RpcCode.InternalError,
    message: 'Calls of several client sessions are in flight: the request cannot be tied to one of them',
  },
  GW_CLIENT_GONE: {
    http: 200,
    rpc: RpcCode.InternalError,
    message: 'The client session that caused this request has ended',
  },
  GW_PLUGIN_ERROR: { http: 500, rpc: RpcCode.InternalError, message: 'A pipeline plugin failed' },
  GW_SHUTTING_DOWN: { http: 503, rpc: RpcCode.InternalError, message: 'The gateway is shutting down' },
  // ---- stores, vault and audit (registry branch)
  GW_AUDIT_UNAVAILABLE: {
    http: 503,
    rpc: RpcCode.InternalError,
    message: 'Refused: the audit trail cannot be written and this server handles data that must be audited',
  },
  GW_REGISTRY_CONFLICT: {
    http: 409,
    rpc: RpcCode.InvalidRequest,
    message: 'Conflict: the server changed since it was read (version mismatch)',
  },
  GW_CREDENTIAL_UNAVAILABLE: {
    http: 502,
    rpc: RpcCode.InternalError,
    message: 'The upstream credential is missing, cannot be decrypted, or could not be refreshed',
  },
  // ---- end of stores, vault and audit
  // ---- edge security (authentication, authorization, filters)
  GW_UNAUTHENTICATED: {
    http: 401,
    rpc: RpcCode.ConnectionClosed,
    message:
      'Unauthorized: a credential is required (Authorization: Bearer, X-API-Key or a client certificate)',
  },
  GW_INVALID_TOKEN: {
    http: 401,
    rpc: RpcCode.ConnectionClosed,
    message: 'Unauthorized: the credential is invalid, expired or revoked',
  },
  GW_INSUFFICIENT_SCOPE: {
    http: 403,
    rpc: RpcCode.ConnectionClosed,
    message: 'Forbidden: the credential lacks a required scope',
  },
  GW_INVALID_ARGUMENTS: {
    http: 200,
    rpc: RpcCode.InvalidParams,
    message: "Invalid params: the arguments do not match the tool's inputSchema",
  },
  GW_ARGUMENT_DENIED: {
    http: 200,
    rpc: RpcCode.InvalidParams,
    message: 'Invalid params: an argument value is not allowed for this caller',
  },
  // Governance (docs/governance.md): lifecycle, approval and pinning, data classification.
  GW_CAPABILITY_RETIRED: {
    http: 200,
    rpc: RpcCode.InvalidParams,
    message: 'The tool is retired and no longer available',
  },
  GW_TOOL_NOT_APPROVED: {
    http: 200,
    rpc: RpcCode.InvalidParams,
    message: "The tool's definition changed since it was approved; it is held back until approved again",
  },
  GW_CLASSIFICATION_DENIED: {
    http: 200,
    rpc: RpcCode.InvalidParams,
    message: "The tool's data classification needs a caller with a role this caller lacks",
  },
  GW_LIFECYCLE_TRANSITION: {
    http: 409,
    rpc: RpcCode.InvalidParams,
    message: 'This lifecycle transition is not allowed',
  },
  GW_HEADERS_TOO_LARGE: {
    http: 431,
    rpc: RpcCode.ConnectionClosed,
    message: 'Request Header Fields Too Large',
  },
  // Quotas and admission control (docs/quotas.md). JSON-RPC -32029 (quota, after HTTP 429) and -32053
  // (capacity, after HTTP 503) are gateway codes in the implementation-defined server-error range.
  GW_QUOTA_USER: { http: 429, rpc: -32029, message: 'Too Many Requests: the per-user quota is spent' },
  GW_QUOTA_CLIENT_APP: {
    http: 429,
    rpc: -32029,
    message: 'Too Many Requests: the client application quota is spent',
  },
  GW_QUOTA_TENANT: { http: 429, rpc: -32029, message: 'Too Many Requests: the tenant quota is spent' },
  GW_QUOTA_TOOL: { http: 429, rpc: -32029, message: 'Quota exceeded for this tool' },
  GW_QUOTA_SERVER: { http: 429, rpc: -32029, message: 'Quota exceeded for this backend server' },
  GW_QUOTA_GLOBAL: {
    http: 503,
    rpc: -32053,
    message: 'Service Unavailable: the gateway-wide request budget is spent',
  },
  GW_QUOTA_CONCURRENCY: {
    http: 429,
    rpc: -32029,
    message: 'Too Many Requests: too many requests of this user in flight',
  },
  GW_QUOTA_UNAVAILABLE: {
    http: 503,
    rpc: -32053,
    message: 'Service Unavailable: quotas cannot be checked (the quota store is unreachable)',
  },
  GW_QUEUE_TIMEOUT: { http: 503, rpc: -32053, message: 'Timed out waiting in the admission queue' },
  GW_QUEUE_FULL: { http: 503, rpc: -32053, message: 'The admission queue is full' },
  GW_TOO_MANY_CONNECTIONS: {
    http: 429,
    rpc: RpcCode.ConnectionClosed,
    message: 'Too Many Requests: too many connections from this address',
  },
  GW_INTERNAL: { http: 500, rpc: RpcCode.InternalError, message: 'Internal gateway error' },
  // 2026 backends (docs/adr/0004-protocol-eras.md (c), (d))
  GW_TOO_MANY_INPUT_ROUNDS: {
    http: 200,
    rpc: RpcCode.InternalError,
    message: 'The backend kept asking for input past the round limit',
  },
  GW_CONTINUATION_LOST: {
    http: 200,
    rpc: RpcCode.InternalError,
    message: 'The replica holding this multi-round call is gone',
  },
  // ---------------------------------------------------------------- observability and edge security
  GW_SOURCE_DENIED: {
    http: 403,
    rpc: RpcCode.ConnectionClosed,
    message: 'Forbidden: requests from this source address are not allowed',
  },
  GW_SOURCE_BLOCKED: {
    http: 429,
    rpc: RpcCode.ConnectionClosed,
    message: 'Too Many Requests: this source is blocked for a while after repeated authentication failures',
  },
  GW_ADMIN_UNAUTHORIZED: {
    http: 401,
    rpc: RpcCode.ConnectionClosed,
    message: 'Unauthorized: the admin API needs Authorization: Bearer <admin.token>',
  },
  GW_ADMIN_FORBIDDEN: {
    http: 403,
    rpc: RpcCode.ConnectionClosed,
    message: 'Forbidden: without admin.token configured the admin API answers loopback clients only',
  },
  GW_METRICS_UNAUTHORIZED: {
    http: 401,
    rpc: RpcCode.ConnectionClosed,
    message: 'Unauthorized: metrics need Authorization: Bearer <telemetry.metrics.bearerToken>',
  },
  GW_INVALID_QUERY: {
    http: 400,
    rpc: RpcCode.InvalidParams,
    message: 'Bad Request: invalid query parameter',
  },
  // tiers: the edge -> core hop and the internal token
  GW_INTERNAL_TOKEN_MISSING: {
    http: 401,
    rpc: RpcCode.ConnectionClosed,
    message: 'Unauthorized: the core accepts only requests carrying an internal token of a trusted edge',
  },
  GW_INTERNAL_TOKEN_INVALID: {
    http: 401,
    rpc: RpcCode.ConnectionClosed,
    message: 'Unauthorized: the internal token is not valid',
  },
  GW_INTERNAL_TOKEN_EXPIRED: {
    http: 401,
    rpc: RpcCode.ConnectionClosed,
    message: 'Unauthorized: the internal token has expired',
  },
  GW_INTERNAL_TOKEN_AUDIENCE: {
    http: 401,
    rpc: RpcCode.ConnectionClosed,
    message: 'Unauthorized: the internal token is addressed to another core',
  },
  GW_CORE_UNAVAILABLE: {
    http: 502,
    rpc: RpcCode.InternalError,
    message: 'No core could be reached for this session',
  },
  // Federation (issue 8): see docs/federation.md.
  GW_RESIDENCY_DENIED: {
    http: 403,
    rpc: RpcCode.InvalidRequest,
    message: "Data residency: no region allowed for the caller's tenant serves this",
  },
  GW_DR_FENCED: {
    http: 503,
    rpc: RpcCode.InternalError,
    message: 'This core does not hold the DR lease for the region; the call was not run',
  },
  // Backend pools (issue 6): see docs/pools.md.
  GW_BACKEND_OUTCOME_UNKNOWN: {
    http: 200,
    rpc: RpcCode.InternalError,
    message:
      'The backend failed after the call was sent: it may or may not have run, and it is not safe to repeat',
  },
  GW_BACKEND_CIRCUIT_OPEN: {
    http: 200,
    rpc: RpcCode.InternalError,
    message: 'No replica of the backend can take calls now (breakers open or replicas unhealthy)',
  },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERRORS;

/** A failure the gateway itself decided; carries its table entry and optional detail for `data`. */
export class GatewayError extends Error {
  readonly code: ErrorCode;
  readonly detail: Record<string, unknown> | undefined;
  constructor(
    code: ErrorCode,
    message?: string,
    detail?: Record<string, unknown>,
    options?: { cause?: unknown },
  ) {
    super(message ?? ERRORS[code].message, options);
    this.name = 'GatewayError';
    this.code = code;
    this.detail = detail;
  }
  get httpStatus(): number {
    return ERRORS[this.code].http;
  }
  get rpcCode(): number {
    return ERRORS[this.code].rpc;
  }
}

/** The one mapping from a gateway error (or anything thrown) to a JSON-RPC error answer. */
export function toRpcError(id: JsonRpcId | null, err: unknown): JsonRpcFailure {
  const ge =
    err instanceof GatewayError ? err : new GatewayError('GW_INTERNAL', undefined, undefined, { cause: err });
  return rpcError(id, ge.rpcCode, ge.message, { code: ge.code, ...ge.detail });
}
