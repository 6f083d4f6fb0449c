/**
 * The 2026-07-28 (stateless) era on `/mcp` and `/servers/{name}/mcp`, beside the 2025 era: a request
 * whose `params._meta` carries `io.modelcontextprotocol/protocolVersion` comes here (see
 * docs/adr/0004-protocol-eras.md). There is no initialize and no session: each request says who the
 * client is. The checks run in the order the SDK's 2026 server runs them (envelope, version, headers,
 * method), each with its status and code.
 *
 * Behind the checks, requests that carry the same principal, scope, capabilities and client info share
 * one core context (a core session initialized with them and kept while used), so that names, cursors and
 * HTTP backend sessions are not rebuilt for every request.
 *
 * A backend's own requests (sampling, elicitation, roots) reach a 2026 client as `input_required` rounds
 * (modern-call.ts): the backend call is kept running on this replica between rounds.
 *
 * `subscriptions/listen` streams (modern-listen.ts) carry the context's unrelated messages.
 *
 * A retry that lands on another replica than the one holding its round is sent there over the
 * ReplicaChannel, and the round's progress and answer come back the same way.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import type { Context as TraceContext } from '@opentelemetry/api';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { GatewayError, toRpcError, type ErrorCode } from '../../shared/errors.js';
import { isScopeRefusal } from '../../shared/mcp/scopes.js';
import type { GatewayConfig } from '../../shared/config/schema.js';
import type { Logger } from '../../shared/log.js';
import {
  RpcCode,
  type JsonObject,
  type JsonRpcId,
  type JsonRpcMessage,
  type JsonRpcRequest,
  type JsonRpcResponse,
} from '../../shared/mcp/jsonrpc.js';
import { LATEST_PROTOCOL_VERSION, MODERN_PROTOCOL_VERSIONS } from '../../shared/mcp/versions.js';
import type { CoreService, CoreSessionHandle, MessageSink } from '../../shared/ports/core-service.js';
import { ANONYMOUS, principalKey, type Principal } from '../../shared/identity/principal.js';
import { MODERN_REQUESTS } from '../../shared/mcp/eras.js';
import { setMessageTrace } from '../../shared/telemetry/tracing.js';
import { ModernCall, type CallEvent } from './modern-call.js';
import { honoredFilter, openListenStream, type ListenStream } from './modern-listen.js';
import { openSse, sseEvent } from './sse.js';
import type { ReplicaChannel, ReplicaMessage } from '../../shared/ports/replica-channel.js';

const PROTOCOL_VERSION = 'io.modelcontextprotocol/protocolVersion';
const CLIENT_CAPABILITIES = 'io.modelcontextprotocol/clientCapabilities';
const CLIENT_INFO = 'io.modelcontextprotocol/clientInfo';
const LOG_LEVEL = 'io.modelcontextprotocol/logLevel';
const SERVER_INFO = 'io.modelcontextprotocol/serverInfo';
const ENVELOPE_KEYS = [PROTOCOL_VERSION, CLIENT_CAPABILITIES, CLIENT_INFO, LOG_LEVEL];

/** Results a client may cache: they carry `ttlMs` and `cacheScope`. */
const CACHEABLE = new Set([
  'server/discover',
  'tools/list',
  'prompts/list',
  'resources/list',
  'resources/templates/list',
  'resources/read',
]);
/** The body field each method's `Mcp-Name` header must equal. */
const NAME_FIELD: Record<string, string> = {
  'tools/call': 'name',
  'prompts/get': 'name',
  'resources/read': 'uri',
};
/** The methods whose result may be `input_required` (a backend may ask the client things meanwhile). */
const MULTI_ROUND = new Set(['tools/call', 'prompts/get', 'resources/read']);
const STATE_PREFIX = 'mcpgw1.';
/** How long a retry sent to the replica holding its round waits for that replica to acknowledge it. */
const CONTINUE_ACK_MS = 3000;

/** A call waiting for the client's answers, under its requestState. */
interface Parked {
  call: ModernCall;
  ctx: Context;
  internalId: string;
  method: string;
  principal: string;
  scope: string;
  timer?: NodeJS.Timeout;
}

/** True when a message claims the 2026 era (its envelope carries a protocol version). */
export function hasModernEnvelope(msg: unknown): boolean {
  const meta = (msg as { params?: { _meta?: unknown } }).params?._meta;
  return typeof meta === 'object' && meta !== null && PROTOCOL_VERSION in meta;
}

export function isModernVersion(v: unknown): boolean {
  return typeof v === 'string' && MODERN_PROTOCOL_VERSIONS.includes(v);
}

interface Context {
  handle: CoreSessionHandle;
  /** The InitializeResult the core gave this context (capabilities, serverInfo, instructions). */
  init: JsonObject;
  lastUsed: number;
  inflight: number;
  /** Open listen streams of this context: its unrelated messages go to each. */
  listeners: Set<MessageSink>;
  /** Resource URIs this context is subscribed to, with how many listens hold each. */
  uris: Map<string, number>;
}

export interface ModernEndpointOptions {
  config: GatewayConfig;
  core: CoreService;
  log: Logger;
  replicas?: ReplicaChannel;
}

export class ModernEndpoint {
  private readonly parked = new Map<string, Parked>();
  private readonly listens = new Set<ListenStream>();
  /** Retries sent to the replica holding their round, by token: where its messages go. */
  private readonly remote = new Map<string, (message: unknown, final: boolean) => void>();
  /** Rounds run here for a retry held by another replica, by token: how to cancel each. */
  private readonly remoteCancels = new Map<string, () => void>();
  private readonly contexts = new Map<string, Promise<Context | JsonRpcResponse>>();
  private readonly sweeper: NodeJS.Timeout;
  private nextId = 0;

  constructor(private readonly o: ModernEndpointOptions) {
    const idle = o.config.sessions.idleTimeoutMs;
    this.sweeper = setInterval(
      () => void this.expireIdle(),
      Math.min(Math.max(idle / 4, 50), 30_000),
    ).unref();
  }

  /** One 2026 message (already parsed and classified as a JSON-RPC message). */
  async post(
    req: FastifyRequest,
    reply: FastifyReply,
    scope: string,
    msg: JsonRpcMessage,
    identity: Principal,
    /** The request's root context, or (not sampled) its trace id. */
    trace?: TraceContext | string,
  ): Promise<void> {
    const principal = principalKey(identity);
    // Notifications (a cancellation also closes its stream) and stray responses: accepted, nothing to do.
    if (!('method' in msg) || !('id' in msg)) return void reply.code(202).send();
    const request = msg as JsonRpcRequest;
    const meta = request.params!._meta as JsonObject;
    const version = meta[PROTOCOL_VERSION];
    const caps = meta[CLIENT_CAPABILITIES];
    if (typeof version !== 'string')
      return refuse(reply, 'GW_INVALID_ENVELOPE', request.id, `${PROTOCOL_VERSION} must be a string`, {
        envelope: { key: PROTOCOL_VERSION, problem: 'must be a string' },
      });
    if (typeof caps !== 'object' || caps === null || Array.isArray(caps))
      return refuse(reply, 'GW_INVALID_ENVELOPE', request.id, `${CLIENT_CAPABILITIES} is required`, {
        envelope: { missing: [CLIENT_CAPABILITIES] },
      });
    if (!MODERN_PROTOCOL_VERSIONS.includes(version))
      return refuse(reply, 'GW_UNSUPPORTED_VERSION', request.id, `Unsupported protocol version: ${version}`, {
        supported: MODERN_PROTOCOL_VERSIONS,
        requested: version,
      });
    const mismatch = headerMismatch(req, request, version);
    if (mismatch)
      return refuse(
        reply,
        'GW_HEADER_MISMATCH',
        request.id,
        `Header ${mismatch.name} (${mismatch.header}) does not match the body (${mismatch.body})`,
        { mismatch: { header: mismatch.header, body: mismatch.body } },
      );
    if (!MODERN_REQUESTS.has(request.method))
      return refuse(reply, 'GW_METHOD_NOT_FOUND_MODERN', request.id, `Method not found: ${request.method}`);

    reply.hijack();
    const res = reply.raw;
    const owner = ownerOfState(request.params!.requestState);
    if (owner !== undefined && this.o.replicas && owner !== this.o.replicas.replicaId)
      return this.continueElsewhere(res, request, owner, principal, scope);
    const requested = request.params!.notifications;
    if (
      request.method === 'subscriptions/listen' &&
      (typeof requested !== 'object' || requested === null || Array.isArray(requested))
    )
      return writeJson(
        res,
        toRpcError(
          request.id,
          new GatewayError('GW_INVALID_PARAMS', 'subscriptions/listen: "notifications" must be an object'),
        ),
      );
    const ctx = await this.contextFor(identity, scope, caps as JsonObject, meta[CLIENT_INFO]);
    // A scope the core says does not exist for this caller (a remote core decides virtual servers): 404.
    if (!('handle' in ctx))
      return writeJson(
        res,
        { ...ctx, id: request.id },
        'error' in ctx && isScopeRefusal(ctx.error, scope) ? 404 : 200,
      );
    const serverInfo = (ctx.init.serverInfo as JsonObject | undefined) ?? {};
    if (request.method === 'server/discover') return writeJson(res, discoverResult(request.id, ctx.init));
    if (request.method === 'subscriptions/listen')
      return this.listen(res, request, ctx, requested as JsonObject, serverInfo);

    const params = request.params!;
    let entry: Parked;
    // Our own states name a parked call; any other one is a 2026 backend's, passed through verbatim.
    if (
      typeof params.requestState === 'string'
        ? params.requestState.startsWith(STATE_PREFIX)
        : params.requestState !== undefined
    ) {
      // A retry with the client's answers: continue the call this state names.
      const found = this.resume(params.requestState, principal, scope, request.method, params.inputResponses);
      if (!found)
        return writeJson(
          res,
          toRpcError(
            request.id,
            new GatewayError('GW_INVALID_REQUEST_STATE', 'Invalid or expired requestState', {
              reason: 'invalid_request_state',
            }),
          ),
        );
      entry = found;
    } else {
      entry = this.forward(ctx, request, principal, scope, trace);
    }

    const answer = new ModernResponder(res, scope);
    res.on('close', () => answer.closed());
    await this.round(entry, request, serverInfo, answer);
  }

  /**
   * Waits for what the call does next and answers `out` with it: the final result, or the next round
   * of questions under a fresh requestState (the call parked here until the retry).
   */
  private async round(
    entry: Parked,
    request: { id: JsonRpcId; method: string },
    serverInfo: JsonObject,
    out: RoundOutput,
  ): Promise<void> {
    entry.call.attach(out);
    let answered = false;
    out.onClose(() => {
      // In 2026-07-28 closing the response stream is the cancellation.
      if (!answered) this.cancel(entry, 'the client closed the stream');
    });
    const event: CallEvent = await entry.call.next();
    answered = true;
    if (event.kind === 'final') {
      if (event.response)
        out.finish(
          shapeResult(request.method, { ...event.response, id: request.id }, serverInfo, entry.principal),
        );
      else
        out.finish(
          toRpcError(request.id, new GatewayError('GW_INTERNAL', 'the call ended without an answer')),
        );
      return;
    }
    const state = `${STATE_PREFIX}${this.o.replicas?.replicaId ?? 'local'}.${randomBytes(18).toString('base64url')}`;
    // The call waits for the client's next round this long (a person may be answering an elicitation).
    entry.timer = setTimeout(() => {
      this.parked.delete(state);
      this.cancel(entry, 'the client did not come back with its answers in time');
    }, this.o.config.mrtr.continuationTtlMs).unref();
    this.parked.set(state, entry);
    out.finish(
      shapeResult(
        request.method,
        {
          jsonrpc: '2.0',
          id: request.id,
          result: { resultType: 'input_required', inputRequests: event.inputRequests, requestState: state },
        },
        serverInfo,
        entry.principal,
      ),
    );
  }

  /** Takes the call a requestState names, if it is parked here for this caller, and hands it the answers. */
  private resume(
    state: unknown,
    principal: string,
    scope: string,
    method: string,
    answers: unknown,
  ): Parked | undefined {
    const found = typeof state === 'string' ? this.parked.get(state) : undefined;
    if (!found || found.principal !== principal || found.scope !== scope || found.method !== method)
      return undefined;
    this.parked.delete(state as string);
    clearTimeout(found.timer);
    found.call.answer(typeof answers === 'object' && answers !== null ? (answers as JsonObject) : {}, (r) =>
      found.ctx.handle.respond(r),
    );
    return found;
  }

  /**
   * A retry whose round another replica holds: sent there over the ReplicaChannel, and its progress and
   * answer relayed back to this client (docs/adr/0004 (d)). The owner acknowledges at once; no
   * acknowledgement means it is gone, and the call with it.
   */
  private continueElsewhere(
    res: ServerResponse,
    request: JsonRpcRequest,
    owner: string,
    principal: string,
    scope: string,
  ): Promise<void> {
    const replicas = this.o.replicas!;
    const token = `${replicas.replicaId}.${++this.nextId}`;
    const answer = new ModernResponder(res, scope);
    const params = request.params!;
    return new Promise<void>((resolve) => {
      let finished = false;
      const done = () => {
        finished = true;
        clearTimeout(timer);
        this.remote.delete(token);
        resolve();
      };
      const timer = setTimeout(() => {
        const lost = new GatewayError(
          'GW_CONTINUATION_LOST',
          'The replica holding this call is gone: the call cannot be continued',
          { reason: 'continuation_lost' },
        );
        answer.finish(
          request.method === 'tools/call'
            ? {
                jsonrpc: '2.0',
                id: request.id,
                result: {
                  resultType: 'complete',
                  content: [{ type: 'text', text: lost.message }],
                  isError: true,
                },
              }
            : toRpcError(request.id, lost),
        );
        done();
      }, CONTINUE_ACK_MS);
      this.remote.set(token, (message, final) => {
        clearTimeout(timer);
        if (message === null) return; // the owner has it
        if (!final) return answer.send(message as JsonRpcMessage);
        answer.finish({ ...(message as JsonRpcResponse), id: request.id });
        done();
      });
      res.on('close', () => {
        if (finished) return;
        done();
        this.toReplica(owner, { ...continueMessage(), cancel: true });
      });
      const continueMessage = () => ({
        kind: 'continue' as const,
        sessionId: token,
        from: replicas.replicaId,
        state: params.requestState as string,
        principal,
        scope,
        method: request.method,
        inputResponses: params.inputResponses,
      });
      this.toReplica(owner, continueMessage());
    });
  }

  /** What other replicas send about 2026 rounds (mcp-endpoint.ts routes `continue` and `continued` here). */
  onReplicaMessage(m: ReplicaMessage): void {
    if (m.kind === 'continued') return this.remote.get(m.sessionId)?.(m.message, m.final);
    if (m.kind !== 'continue') return;
    const reply = (message: unknown, final: boolean) =>
      this.toReplica(m.from, { kind: 'continued', sessionId: m.sessionId, message, final });
    if (m.cancel) return this.remoteCancels.get(m.sessionId)?.();
    reply(null, false);
    const entry = this.resume(m.state, m.principal, m.scope, m.method, m.inputResponses);
    if (!entry)
      return reply(
        toRpcError(
          0,
          new GatewayError('GW_INVALID_REQUEST_STATE', 'Invalid or expired requestState', {
            reason: 'invalid_request_state',
          }),
        ),
        true,
      );
    const out: RoundOutput = {
      send: (message) => reply(message, false),
      finish: (response) => {
        this.remoteCancels.delete(m.sessionId);
        reply(response, true);
      },
      onClose: (fn) => void this.remoteCancels.set(m.sessionId, fn),
    };
    const serverInfo = (entry.ctx.init.serverInfo as JsonObject | undefined) ?? {};
    void this.round(entry, { id: 0, method: m.method }, serverInfo, out);
  }

  private toReplica(replica: string, message: ReplicaMessage): void {
    this.o.replicas
      ?.send(replica, message)
      .catch((err: unknown) => this.o.log.warn({ err }, 'could not reach the other replica'));
  }

  /** One `subscriptions/listen` stream on this context (modern-listen.ts), open until the client closes it. */
  private async listen(
    res: ServerResponse,
    request: JsonRpcRequest,
    ctx: Context,
    requested: JsonObject,
    serverInfo: JsonObject,
  ): Promise<void> {
    const honored = honoredFilter(requested, (ctx.init.capabilities as JsonObject | undefined) ?? {});
    ctx.inflight++;
    // Resource updates need the context subscribed to each URI (once per context, however many listens).
    const uris: string[] = [];
    for (const uri of (honored.resourceSubscriptions as string[] | undefined) ?? []) {
      const held = ctx.uris.get(uri) ?? 0;
      if (held === 0) {
        const r = await ctx.handle.request(
          { jsonrpc: '2.0', id: `m${++this.nextId}`, method: 'resources/subscribe', params: { uri } },
          { send: () => {} },
        );
        if (!r || 'error' in r) continue;
      }
      ctx.uris.set(uri, held + 1);
      uris.push(uri);
    }
    if (honored.resourceSubscriptions) {
      if (uris.length > 0) honored.resourceSubscriptions = uris;
      else delete honored.resourceSubscriptions;
    }
    const stream = openListenStream(res, request, honored, serverInfo);
    if (Object.keys(honored).length === 0) stream.end(); // nothing to listen for: ended at once
    ctx.listeners.add(stream.sink);
    this.listens.add(stream);
    await stream.closed;
    this.listens.delete(stream);
    ctx.listeners.delete(stream.sink);
    for (const uri of uris) {
      const left = (ctx.uris.get(uri) ?? 1) - 1;
      if (left > 0) {
        ctx.uris.set(uri, left);
        continue;
      }
      ctx.uris.delete(uri);
      void ctx.handle
        .request(
          { jsonrpc: '2.0', id: `m${++this.nextId}`, method: 'resources/unsubscribe', params: { uri } },
          { send: () => {} },
        )
        .catch(() => undefined);
    }
    ctx.inflight--;
    ctx.lastUsed = Date.now();
  }

  /** Sends a request into the core context with an id of its own, followed by a ModernCall. */
  private forward(
    ctx: Context,
    request: JsonRpcRequest,
    principal: string,
    scope: string,
    trace: TraceContext | string | undefined,
  ): Parked {
    // Fresh ids inside the shared context: concurrent clients (or one client's parallel requests) may
    // reuse the same id, and each call must be cancellable on its own.
    const internalId = `m${++this.nextId}`;
    const call = new ModernCall(
      MULTI_ROUND.has(request.method)
        ? undefined
        : (askId, method) =>
            ctx.handle.respond(
              toRpcError(
                askId,
                new GatewayError(
                  'GW_CAPABILITY_NOT_DECLARED',
                  `${method} cannot be relayed during ${request.method}`,
                ),
              ),
            ),
    );
    ctx.inflight++;
    ctx.lastUsed = Date.now();
    const inner: JsonRpcRequest = {
      jsonrpc: '2.0',
      id: internalId,
      method: request.method,
      params: withoutEnvelope(request.params!),
    };
    setMessageTrace(inner, trace);
    const answer = ctx.handle.request(inner, call.sink);
    call.run(answer);
    void answer
      .catch(() => undefined)
      .finally(() => {
        ctx.inflight--;
        ctx.lastUsed = Date.now();
      });
    return { call, ctx, internalId, method: request.method, principal, scope };
  }

  private cancel(entry: Parked, reason: string): void {
    if (entry.call.finished) return;
    entry.ctx.handle.notify({
      jsonrpc: '2.0',
      method: 'notifications/cancelled',
      params: { requestId: entry.internalId, reason },
    });
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper);
    for (const l of this.listens) l.end();
    this.listens.clear();
    for (const p of this.parked.values()) clearTimeout(p.timer);
    this.parked.clear();
    const all = [...this.contexts.values()];
    this.contexts.clear();
    await Promise.all(all.map(async (p) => ((c) => ('handle' in c ? c.handle.close() : undefined))(await p)));
  }

  /** The shared core context for this caller, created (initialized) on first use. */
  private contextFor(
    identity: Principal,
    scope: string,
    caps: JsonObject,
    info: unknown,
  ): Promise<Context | JsonRpcResponse> {
    const capabilities: JsonObject = { ...caps };
    const clientInfo =
      typeof info === 'object' && info !== null ? (info as JsonObject) : { name: 'unknown', version: '0' };
    const key = createHash('sha256')
      // Roles and scopes too: the core filters by them, so a caller whose grants changed gets a new context.
      .update(
        JSON.stringify([
          principalKey(identity),
          identity.roles,
          identity.scopes,
          scope,
          capabilities,
          clientInfo,
        ]),
      )
      .digest('base64url')
      .slice(0, 24);
    let p = this.contexts.get(key);
    if (!p) {
      p = this.openContext(`ctx-${key}`, identity, scope, capabilities, clientInfo);
      this.contexts.set(key, p);
      // A failed initialize is not kept: the next request tries again.
      void p.then((c) => {
        if (!('handle' in c)) this.contexts.delete(key);
      });
    }
    return p;
  }

  private async openContext(
    id: string,
    identity: Principal,
    scope: string,
    capabilities: JsonObject,
    clientInfo: JsonObject,
  ): Promise<Context | JsonRpcResponse> {
    const listeners = new Set<MessageSink>();
    const unrelated: MessageSink = { send: (m) => listeners.forEach((l) => l.send(m)) };
    const handle = this.o.core.openSession({
      id,
      principal: principalKey(identity),
      identity,
      scope,
      unrelated,
      modern: true,
    });
    let init: JsonRpcResponse | undefined;
    try {
      init = await handle.request(
        {
          jsonrpc: '2.0',
          id: 0,
          method: 'initialize',
          params: { protocolVersion: LATEST_PROTOCOL_VERSION, capabilities, clientInfo },
        },
        { send: () => {} },
      );
    } catch (err) {
      init = toRpcError(0, err);
    }
    if (!init || 'error' in init) {
      await handle.close();
      return init ?? toRpcError(0, new GatewayError('GW_INTERNAL'));
    }
    handle.notify({ jsonrpc: '2.0', method: 'notifications/initialized' });
    return { handle, init: init.result, lastUsed: Date.now(), inflight: 0, listeners, uris: new Map() };
  }

  private async expireIdle(): Promise<void> {
    const limit = Date.now() - this.o.config.sessions.idleTimeoutMs;
    for (const [key, p] of this.contexts) {
      const c = await p;
      if (!('handle' in c) || c.inflight > 0 || c.lastUsed >= limit) continue;
      this.contexts.delete(key);
      await c.handle
        .close()
        .catch((err: unknown) => this.o.log.warn({ err }, 'closing a 2026 context failed'));
    }
  }
}

/** Where a round's progress and answer go: this replica's HTTP response, or another replica. */
interface RoundOutput extends MessageSink {
  finish(response: JsonRpcResponse): void;
  /** `fn` runs if the client goes away before the answer. */
  onClose(fn: () => void): void;
}

/** The replica a requestState of ours names (`mcpgw1.{replicaId}.{random}`). */
function ownerOfState(state: unknown): string | undefined {
  if (typeof state !== 'string' || !state.startsWith(STATE_PREFIX)) return undefined;
  const rest = state.slice(STATE_PREFIX.length);
  const dot = rest.indexOf('.');
  return dot > 0 ? rest.slice(0, dot) : undefined;
}

/** The answer to one 2026 request: JSON, or SSE once a related message (progress) must go first. */
class ModernResponder implements RoundOutput {
  private streaming = false;
  private readonly onClosed: (() => void)[] = [];

  constructor(
    private readonly res: ServerResponse,
    /** The request's scope: an answer saying it is gone (a virtual server deleted) is a 404. */
    private readonly scope: string,
  ) {}

  onClose(fn: () => void): void {
    this.onClosed.push(fn);
  }

  /** The response closed (answered or not): the round's close handlers run. */
  closed(): void {
    for (const fn of this.onClosed.splice(0)) fn();
  }

  send(message: JsonRpcMessage): void {
    if (this.res.destroyed) return;
    if (!this.streaming) {
      openSse(this.res, {});
      this.streaming = true;
    }
    this.res.write(sseEvent(message));
  }

  finish(response: JsonRpcResponse): void {
    if (this.res.destroyed) return;
    if (!this.streaming)
      return writeJson(
        this.res,
        response,
        'error' in response && isScopeRefusal(response.error, this.scope) ? 404 : 200,
      );
    this.res.write(sseEvent(response));
    this.res.end();
  }
}

function writeJson(res: ServerResponse, body: unknown, status = 200): void {
  if (res.destroyed) return;
  const text = JSON.stringify(body);
  res
    .writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
    .end(text);
}

function refuse(
  reply: FastifyReply,
  code: ErrorCode,
  id: string | number,
  message: string,
  detail?: Record<string, unknown>,
): void {
  const err = new GatewayError(code, message, detail);
  reply
    .code(err.httpStatus)
    .header('content-type', 'application/json')
    .send(JSON.stringify(toRpcError(id, err)));
}

/** The first Mcp-* header that disagrees with the body, if any (a missing one disagrees too). */
function headerMismatch(
  req: FastifyRequest,
  request: JsonRpcRequest,
  version: string,
): { name: string; header: string; body: string } | undefined {
  const check = (name: string, body: string) => {
    const raw = req.headers[name.toLowerCase()];
    const header = typeof raw === 'string' ? decodeHeader(raw) : undefined;
    return header === body ? undefined : { name, header: header ?? '(missing)', body };
  };
  const field = NAME_FIELD[request.method];
  const named = field === undefined ? undefined : request.params?.[field];
  return (
    check('MCP-Protocol-Version', version) ??
    check('Mcp-Method', request.method) ??
    (typeof named === 'string' ? check('Mcp-Name', named) : undefined)
  );
}

/** Header values outside visible ASCII travel as `=?base64?...?=`. */
function decodeHeader(v: string): string | undefined {
  const m = /^=\?base64\?([A-Za-z0-9+/]*={0,2})\?=$/.exec(v);
  if (!m) return v;
  try {
    return Buffer.from(m[1]!, 'base64').toString('utf8');
  } catch {
    return undefined;
  }
}

function withoutEnvelope(params: JsonObject): JsonObject {
  const meta = { ...(params._meta as JsonObject) };
  for (const k of ENVELOPE_KEYS) delete meta[k];
  const out: JsonObject = { ...params };
  if (Object.keys(meta).length > 0) out._meta = meta;
  else delete out._meta;
  return out;
}

function discoverResult(id: string | number, init: JsonObject): JsonRpcResponse {
  const result: JsonObject = {
    supportedVersions: [...MODERN_PROTOCOL_VERSIONS],
    capabilities: init.capabilities ?? {},
    resultType: 'complete',
    ttlMs: 0,
    cacheScope: 'private',
    _meta: { [SERVER_INFO]: init.serverInfo ?? {} },
  };
  if (typeof init.instructions === 'string') result.instructions = init.instructions;
  return { jsonrpc: '2.0', id, result };
}

/**
 * Gives a 2025-shaped answer the fields a 2026 client requires. With authentication on, what a caller sees
 * depends on who it is (policy, tenancy, PII masking): a backend's `cacheScope: public` becomes `private`
 * so that no shared cache hands one caller's view to another.
 */
function shapeResult(
  method: string,
  res: JsonRpcResponse,
  serverInfo: JsonObject,
  principal: string,
): JsonRpcResponse {
  if ('error' in res)
    return res.error.code === RpcCode.ResourceNotFound
      ? { ...res, error: { ...res.error, code: RpcCode.InvalidParams } } // -32002 is gone in 2026-07-28
      : res;
  const result: JsonObject = { ...res.result, resultType: res.result.resultType ?? 'complete' };
  result._meta = { ...(res.result._meta as JsonObject | undefined), [SERVER_INFO]: serverInfo };
  if (CACHEABLE.has(method)) {
    result.ttlMs ??= 0;
    if (principal !== principalKey(ANONYMOUS)) result.cacheScope = 'private';
    else result.cacheScope ??= 'private';
  }
  return { ...res, result };
}
