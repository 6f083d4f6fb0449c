/**
 * The narrow interface between the edge tier (client-facing transport, authentication, quotas) and the
 * core tier (registry, backend pools, aggregation). In the single role it is a function call; in the
 * split roles the edge's forward stage will speak it over HTTP. Only JSON-RPC messages cross it.
 */
import type { JsonRpcMessage, JsonRpcNotification, JsonRpcRequest, JsonRpcResponse } from '../mcp/jsonrpc.js';
import type { Principal } from '../identity/principal.js';
import type { SessionRecord } from './session-store.js';

/** Where the core sends messages for the client: a request's own stream, or the session's GET stream. */
export interface MessageSink {
  send(message: JsonRpcMessage): void;
}

export interface CoreSessionHandle {
  readonly id: string;
  /**
   * Handles one client request. Messages related to it (progress, server-to-client requests) go to
   * `related` before the promise settles. Resolves to the response, or undefined when the client
   * cancelled the request (a cancelled request gets no answer).
   */
  request(request: JsonRpcRequest, related: MessageSink): Promise<JsonRpcResponse | undefined>;
  /** A client notification (initialized, cancelled, progress, roots/list_changed...). */
  notify(notification: JsonRpcNotification): void;
  /**
   * The client's answer to a server-to-client request the core sent it. False when no such request is
   * pending here (another replica issued it, or it was already answered or cancelled).
   */
  respond(response: JsonRpcResponse): boolean;
  /** Ends the session and its backend sessions. */
  close(): Promise<void>;
  /**
   * Lets go of the session on this replica only (another replica continues it): in-flight calls end,
   * backend sessions stay open.
   */
  detach(): Promise<void>;
}

export interface OpenSessionOptions {
  id: string;
  principal: string;
  /**
   * The caller in full (tenant, roles, scopes) behind `principal` (its principalKey), for authorization,
   * tenancy and filtering; a remote core receives it in the internal token. Absent: the anonymous caller
   * of auth.mode none (or, at a remote core, rebuilt from `principal`).
   */
  identity?: Principal;
  /** `aggregate` for /mcp, or a server name for /servers/{name}/mcp. */
  scope: string;
  /** Messages unrelated to any request (list_changed, resource updates, log messages). */
  unrelated: MessageSink;
  /** A session another replica initialized: continue it from its stored record (no initialize). */
  restore?: SessionRecord;
  /**
   * The client speaks 2026-07-28 (the edge's per-caller context, docs/adr/0004): results keep
   * `resultType`, `ttlMs` and `cacheScope`, and a 2026 backend's `input_required` reaches it as is.
   */
  modern?: boolean;
}

export interface ReadinessReport {
  ready: boolean;
  /** Per server; `pool` details its replicas (health, breaker, load), as later exported as metrics. */
  servers: Record<string, { state: string; error?: string; pool?: Record<string, unknown> }>;
  /** Counters of the backend pools as a whole (response cache hits and misses). */
  pools?: Record<string, unknown>;
}

export interface CoreService {
  /** Whether `scope` exists for this caller (a server of another tenant, or hidden by policy, does not). */
  hasScope(scope: string, identity?: Principal): boolean;
  openSession(options: OpenSessionOptions): CoreSessionHandle;
  readiness(): ReadinessReport;
  close(): Promise<void>;
  /**
   * The core sends a client's request on as JSON text (a remote core): the endpoint records the text
   * the client sent (shared/mcp/json-text.ts) so that it is not serialised again. Absent: false.
   */
  readonly forwardsText?: boolean;
}
