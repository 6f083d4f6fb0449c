/**
 * JSON-RPC 2.0 message shapes as MCP uses them, and cheap structural classification.
 *
 * The hot path forwards messages without schema-parsing whole payloads: it checks only the envelope
 * (`jsonrpc`, `id`, `method`, `result`/`error`) and leaves `params` and `result` untouched.
 */

export type JsonRpcId = string | number;
export type JsonObject = Record<string, unknown>;

export interface JsonRpcRequest {
  jsonrpc: '2.0';
  id: JsonRpcId;
  method: string;
  params?: JsonObject;
}

export interface JsonRpcNotification {
  jsonrpc: '2.0';
  method: string;
  params?: JsonObject;
}

export interface JsonRpcErrorObject {
  code: number;
  message: string;
  data?: unknown;
}

export interface JsonRpcSuccess {
  jsonrpc: '2.0';
  id: JsonRpcId;
  result: JsonObject;
}

export interface JsonRpcFailure {
  jsonrpc: '2.0';
  id: JsonRpcId | null;
  error: JsonRpcErrorObject;
}

export type JsonRpcResponse = JsonRpcSuccess | JsonRpcFailure;
export type JsonRpcMessage = JsonRpcRequest | JsonRpcNotification | JsonRpcResponse;

export type MessageKind = 'request' | 'notification' | 'response' | 'invalid';

/** JSON-RPC error codes used by MCP. */
export const RpcCode = {
  ParseError: -32700,
  InvalidRequest: -32600,
  MethodNotFound: -32601,
  InvalidParams: -32602,
  InternalError: -32603,
  /** SDK convention for transport-level bad requests (missing session and the like). */
  ConnectionClosed: -32000,
  SessionNotFound: -32001,
  ResourceNotFound: -32002,
  RequestTimeout: -32001,
  UrlElicitationRequired: -32042,
  /** 2026-07-28: an Mcp-* header disagrees with the body. */
  HeaderMismatch: -32020,
  /** 2026-07-28: a request needs a client capability the envelope does not declare. */
  MissingCapability: -32021,
  /** 2026-07-28: the envelope names a protocol version the server does not speak. */
  UnsupportedVersion: -32022,
} as const;

function isId(v: unknown): v is JsonRpcId {
  return typeof v === 'string' || (typeof v === 'number' && Number.isFinite(v));
}

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Classifies one decoded JSON value as a JSON-RPC 2.0 message, checking only the envelope. */
export function classify(msg: unknown): MessageKind {
  if (!isObject(msg) || msg.jsonrpc !== '2.0') return 'invalid';
  if (typeof msg.method === 'string') {
    if (msg.params !== undefined && !isObject(msg.params)) return 'invalid';
    if ('id' in msg) return isId(msg.id) ? 'request' : 'invalid';
    return 'notification';
  }
  if ('result' in msg) return isId(msg.id) && isObject(msg.result) ? 'response' : 'invalid';
  if ('error' in msg) {
    const e = msg.error;
    if (!isObject(e) || typeof e.code !== 'number' || typeof e.message !== 'string') return 'invalid';
    return isId(msg.id) || msg.id === null ? 'response' : 'invalid';
  }
  return 'invalid';
}

/**
 * The id of an invalid message that can only have meant to answer a request (an id, no method), so
 * that the request gets a clean error at once instead of waiting for an answer that never comes.
 */
export function brokenResponseId(msg: unknown): JsonRpcId | undefined {
  if (!isObject(msg) || typeof msg.method === 'string' || !isId(msg.id)) return undefined;
  return msg.id as JsonRpcId;
}

export function isFailure(msg: JsonRpcResponse): msg is JsonRpcFailure {
  return 'error' in msg;
}

export function rpcError(
  id: JsonRpcId | null,
  code: number,
  message: string,
  data?: unknown,
): JsonRpcFailure {
  const error: JsonRpcErrorObject = { code, message };
  if (data !== undefined) error.data = data;
  return { jsonrpc: '2.0', id, error };
}

export function rpcResult(id: JsonRpcId, result: JsonObject): JsonRpcSuccess {
  return { jsonrpc: '2.0', id, result };
}

export function notification(method: string, params?: JsonObject): JsonRpcNotification {
  return params === undefined ? { jsonrpc: '2.0', method } : { jsonrpc: '2.0', method, params };
}
