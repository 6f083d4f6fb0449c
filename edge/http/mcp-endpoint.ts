/**
 * The client-facing Streamable HTTP transport (MCP 2025-11-25 / 2025-06-18, 2025-03-26 accepted) on
 * `/mcp` and `/servers/{name}/mcp`: sessions, POST with a JSON or SSE answer, the GET stream for
 * server-initiated messages, DELETE, and every transport-level refusal with the status the spec names.
 * It parses only the JSON-RPC envelope and hands messages to the core through CoreService.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { GatewayError, toRpcError, type ErrorCode } from '../../shared/errors.js';
import type { GatewayConfig } from '../../shared/config/schema.js';
import type { Logger } from '../../shared/log.js';
import {
  classify,
  type JsonRpcMessage,
  type JsonRpcNotification,
  type JsonRpcRequest,
  type JsonRpcResponse,
} from '../../shared/mcp/jsonrpc.js';
import { negotiateVersion, SUPPORTED_PROTOCOL_VERSIONS } from '../../shared/mcp/versions.js';
import type { CoreService, CoreSessionHandle, MessageSink } from '../../shared/ports/core-service.js';
import type { EventStore } from '../../shared/ports/event-store.js';
import type { ReplicaChannel, ReplicaMessage } from '../../shared/ports/replica-channel.js';
import { replicaOfRequestId } from '../../shared/mcp/request-ids.js';
import type { SessionStore } from '../../shared/ports/session-store.js';
import { principalKey, type Principal } from '../../shared/identity/principal.js';
import { requestPrincipal } from '../auth/request-principal.js';
import { hasModernEnvelope, isModernVersion, ModernEndpoint } from './modern-endpoint.js';
import { inStage, setMessageTrace, STAGE } from '../../shared/telemetry/tracing.js';
import { requestStage, unsampledTrace } from './request-trace.js';
import { isScopeRefusal } from '../../shared/mcp/scopes.js';
import { SseStream, type FollowOptions } from './sse-stream.js';
import { jsonBytesOf, keepJsonText } from '../../shared/mcp/json-text.js';
import type { Quotas } from '../quota/quotas.js';
import { sendRefusal } from '../quota/answers.js';

/** Messages the GET stream keeps for a client that has no GET connection open. */
const BACKLOG_LIMIT = 1000;
/** The id of the session's GET stream in the EventStore (POST streams get random ids). */
const GET_STREAM = 'get';
const TOUCH_EVERY_MS = 1000;
/** A POST stream another replica carries is followed in the EventStore at this pace, for at most this long. */
const FOLLOW: FollowOptions = { pollMs: 50, maxMs: 10 * 60_000 };

interface EdgeSession {
  id: string;
  scope: string;
  principal: string;
  core: CoreSessionHandle;
  protocolVersion: string;
  lastSeen: number;
  /** The stream for messages unrelated to any request; it exists before the client's first GET. */
  getStream: SseStream;
  /** POST answer streams whose response has not been sent yet. */
  postStreams: Map<string, SseStream>;
  /** When this replica last refreshed the shared record. */
  lastTouched: number;
  inflight: number;
}

export interface McpEndpointOptions {
  config: GatewayConfig;
  core: CoreService;
  sessions: SessionStore;
  events: EventStore;
  /** Other replicas serving the same sessions (absent on a single node). */
  replicas?: ReplicaChannel;
  log: Logger;
  /** Who is calling (ANONYMOUS when absent). */
  callerOf?: (req: FastifyRequest) => Principal;
  /** Quotas: the caller decisions the HTTP hook left for the request (deferred-caller.ts). */
  quotas?: Pick<Quotas, 'deferred'>;
}

export class McpEndpoint {
  private readonly live = new Map<string, EdgeSession>();
  private readonly modern: ModernEndpoint;
  /** Sessions being continued from the SessionStore, so that concurrent requests share one restore. */
  private readonly restoring = new Map<string, Promise<EdgeSession | undefined>>();
  private readonly sweeper: NodeJS.Timeout;
  private closing = false;

  constructor(private readonly o: McpEndpointOptions) {
    this.modern = new ModernEndpoint(o);
    const idle = o.config.sessions.idleTimeoutMs;
    this.sweeper = setInterval(
      () => void this.expireIdle(),
      Math.min(Math.max(idle / 4, 50), 30_000),
    ).unref();
  }

  get sessionCount(): number {
    return this.live.size;
  }

  /** POST: one JSON-RPC message per body. */
  async post(req: FastifyRequest, reply: FastifyReply, scope: string): Promise<void> {
    const accept = String(req.headers.accept ?? '');
    if (
      !(accept.includes('application/json') || accept.includes('*/*')) ||
      !(accept.includes('text/event-stream') || accept.includes('*/*'))
    ) {
      return this.refuse(reply, 'GW_NOT_ACCEPTABLE');
    }
    const ctype = String(req.headers['content-type'] ?? '');
    if (!/^application\/json\s*(;|$)/i.test(ctype)) return this.refuse(reply, 'GW_UNSUPPORTED_MEDIA_TYPE');
    let msg: unknown;
    let text: string;
    try {
      const body = req.body as Buffer | undefined;
      text = body && body.length > 0 ? body.toString('utf8') : '';
      msg = JSON.parse(text);
    } catch {
      return this.refuse(reply, 'GW_PARSE_ERROR');
    }
    if (Array.isArray(msg)) return this.refuse(reply, 'GW_BATCH_UNSUPPORTED');
    const kind = classify(msg);
    if (kind === 'invalid') return this.refuse(reply, 'GW_INVALID_REQUEST', idOf(msg));
    const identity = this.o.callerOf?.(req) ?? requestPrincipal(req.raw);
    const principal = principalKey(identity);
    const stage = kind === 'request' ? requestStage(req, reply, (msg as JsonRpcRequest).params) : undefined;
    // The era is told per request: a 2026-07-28 envelope goes to the stateless endpoint. It has no session,
    // but a client may send a session id anyway: a caller decision the HTTP hook left for it is made here.
    const deferred = this.o.quotas?.deferred;
    if (hasModernEnvelope(msg)) {
      if (deferred?.pending(req.raw) && (await this.refusedCaller(req, reply))) return;
      return this.modern.post(
        req,
        reply,
        scope,
        msg as JsonRpcMessage,
        identity,
        stage?.ctx ?? unsampledTrace(req),
      );
    }
    if (isModernVersion(req.headers['mcp-protocol-version']))
      return this.refuse(
        reply,
        'GW_INVALID_ENVELOPE',
        idOf(msg),
        'Invalid params: a 2026-07-28 request carries its protocol version, capabilities and client info in params._meta',
      );
    const sid = req.headers['mcp-session-id'];

    if (kind === 'request' && (msg as JsonRpcRequest).method === 'initialize') {
      if (sid !== undefined) return this.refuse(reply, 'GW_ALREADY_INITIALIZED', (msg as JsonRpcRequest).id);
      return inStage(STAGE.forward, stage?.ctx, (trace) => {
        setMessageTrace(msg as JsonRpcRequest, trace ?? unsampledTrace(req));
        return this.initialize(msg as JsonRpcRequest, reply, scope, identity);
      });
    }
    const live = typeof sid === 'string' ? this.live.get(sid) : undefined;
    const session =
      live && live.scope === scope && live.principal === principal
        ? live
        : await this.lookup(reply, sid, scope, identity, idOf(msg));
    if (!session) return;
    if (!this.versionOk(req, reply, idOf(msg))) return;
    session.lastSeen = Date.now();
    this.touch(session);

    if (kind === 'notification') {
      session.core.notify(msg as JsonRpcNotification);
      // The call it cancels may be in flight on another replica.
      if (this.o.replicas && (msg as JsonRpcNotification).method === 'notifications/cancelled')
        this.toReplicas(() =>
          this.o.replicas!.broadcast({ kind: 'notify', sessionId: session.id, message: msg }),
        );
      return void reply.code(202).send();
    }
    if (kind === 'response') {
      if (!session.core.respond(msg as JsonRpcResponse)) this.toIssuer(session, msg as JsonRpcResponse);
      return void reply.code(202).send();
    }
    // Nothing changes the request on its way to the core: a remote one gets the client's own text.
    const request = msg as JsonRpcRequest;
    if (this.o.core.forwardsText) keepJsonText(request, text);
    // The caller's quota, when the HTTP hook left it: decided with the pool call, else now.
    const settling = deferred?.pending(req.raw) === true;
    if (settling && !deferred!.carry(req.raw, request) && (await this.refusedCaller(req, reply))) return;
    reply.hijack();
    const responder = new RequestResponder(
      reply.raw,
      { 'mcp-session-id': session.id },
      () => this.newStream(session, randomBytes(8).toString('hex')),
      session.getStream,
    );
    session.inflight++;
    let res: JsonRpcResponse | undefined;
    try {
      res = await inStage(STAGE.forward, stage?.ctx, (trace) => {
        setMessageTrace(request, trace ?? unsampledTrace(req));
        return session.core.request(request, responder);
      });
    } catch (err) {
      res = toRpcError(request.id, err);
    } finally {
      session.inflight--;
      session.lastSeen = Date.now();
    }
    // A caller decision the call did not make (it never reached the pool), or one that refused there.
    if (settling) {
      const refused = await deferred!.settle(req.raw);
      if (refused && !responder.streaming) {
        for (const [k, v] of Object.entries(refused.headers)) reply.raw.setHeader(k, v);
        return responder.finish(toRpcError(null, refused.error), refused.error.httpStatus);
      }
    }
    // The session's scope gone meanwhile (a virtual server deleted, a server hidden: a remote core says so
    // in its answer): the 404 this endpoint gives a request for a scope that does not exist.
    responder.finish(res, res && 'error' in res && isScopeRefusal(res.error, scope) ? 404 : 200);
  }

  /**
   * Makes the caller decision the HTTP hook left for `req`, if any; true when it refused (the refusal is
   * answered, as the hook would have).
   */
  private async refusedCaller(req: FastifyRequest, reply: FastifyReply): Promise<boolean> {
    const refused = await this.o.quotas?.deferred?.settle(req.raw);
    if (refused) sendRefusal(reply, refused.error, refused.headers);
    return refused !== undefined;
  }

  /**
   * GET: the session's stream for messages unrelated to any request or, with `Last-Event-ID`, the
   * resumption of any of the session's streams (GET or POST) after the last event the client saw.
   */
  async get(req: FastifyRequest, reply: FastifyReply, scope: string): Promise<void> {
    const accept = String(req.headers.accept ?? '');
    if (!accept.includes('text/event-stream')) return this.refuse(reply, 'GW_NOT_ACCEPTABLE_SSE');
    const session = await this.lookup(
      reply,
      req.headers['mcp-session-id'],
      scope,
      this.o.callerOf?.(req) ?? requestPrincipal(req.raw),
      null,
    );
    if (!session) return;
    if (!this.versionOk(req, reply, null)) return;
    this.touch(session);
    const headers = { 'mcp-session-id': session.id };
    const lastEventId = req.headers['last-event-id'];
    session.lastSeen = Date.now();
    if (typeof lastEventId === 'string' && lastEventId !== '') {
      const found = await this.o.events.replayAfter(session.id, lastEventId);
      if (!found) return this.refuse(reply, 'GW_UNKNOWN_EVENT_ID');
      // A stream whose response was already sent is no longer live: it is only replayed.
      const stream =
        found.streamId === GET_STREAM
          ? session.getStream
          : (session.postStreams.get(found.streamId) ??
            this.newStream(session, found.streamId, { follow: FOLLOW }));
      reply.hijack();
      if (!(await stream.resume(reply.raw, headers, lastEventId)))
        writeRefusal(reply.raw, new GatewayError('GW_UNKNOWN_EVENT_ID'));
      return;
    }
    if (session.getStream.attached) return this.refuse(reply, 'GW_STREAM_CONFLICT');
    reply.hijack();
    await session.getStream.connect(reply.raw, headers);
  }

  /** DELETE: the client ends its session. */
  async delete(req: FastifyRequest, reply: FastifyReply, scope: string): Promise<void> {
    const session = await this.lookup(
      reply,
      req.headers['mcp-session-id'],
      scope,
      this.o.callerOf?.(req) ?? requestPrincipal(req.raw),
      null,
    );
    if (!session) return;
    await this.end(session, 'deleted by client');
    return void reply.code(200).send();
  }

  /** What another replica sends about a session this replica serves. */
  onReplicaMessage(m: ReplicaMessage): void {
    if (m.kind === 'continue' || m.kind === 'continued') return this.modern.onReplicaMessage(m);
    const session = this.live.get(m.sessionId);
    if (!session) return;
    switch (m.kind) {
      case 'response':
        session.core.respond(m.message as JsonRpcResponse);
        return;
      case 'notify':
        session.core.notify(m.message as JsonRpcNotification);
        return;
      case 'event':
        if (m.streamId === GET_STREAM) session.getStream.deliverLogged(m.eventId, m.message);
        return;
    }
  }

  /** A client's answer to a request another replica sent it goes to that replica. */
  private toIssuer(session: EdgeSession, response: JsonRpcResponse): void {
    const issuer = replicaOfRequestId(response.id);
    if (!this.o.replicas || !issuer || issuer === this.o.replicas.replicaId) return;
    this.toReplicas(() =>
      this.o.replicas!.send(issuer, { kind: 'response', sessionId: session.id, message: response }),
    );
  }

  private toReplicas(send: () => Promise<void>): void {
    send().catch((err: unknown) => this.o.log.warn({ err }, 'could not reach the other replicas'));
  }

  async close(): Promise<void> {
    this.closing = true;
    await this.modern.close();
    clearInterval(this.sweeper);
    // Sessions other replicas can continue are only let go of; on a single node they end here.
    await Promise.all(
      [...this.live.values()].map((s) =>
        this.o.replicas ? this.evict(s) : this.end(s, 'gateway shutting down'),
      ),
    );
  }

  // ------------------------------------------------------------------------------------------------

  private async initialize(
    request: JsonRpcRequest,
    reply: FastifyReply,
    scope: string,
    identity: Principal,
  ): Promise<void> {
    if (this.closing) return this.refuse(reply, 'GW_SHUTTING_DOWN', request.id);
    const principal = principalKey(identity);
    const id = randomUUID();
    const session: EdgeSession = {
      id,
      scope,
      principal,
      core: undefined as unknown as CoreSessionHandle,
      // The same negotiation the core runs: known before initialize so that the record and the GET stream
      // exist while it runs (a backend may already send something, and its sessions get recorded).
      protocolVersion: negotiateVersion(String(request.params?.protocolVersion)),
      lastSeen: Date.now(),
      getStream: undefined as unknown as SseStream,
      postStreams: new Map(),
      lastTouched: Date.now(),
      inflight: 0,
    };
    session.getStream = this.getStreamOf(session);
    const now = Date.now();
    await this.o.sessions.put(
      {
        id,
        principal,
        scope,
        protocolVersion: session.protocolVersion,
        clientInfo: (request.params?.clientInfo as Record<string, unknown>) ?? {},
        clientCapabilities: (request.params?.capabilities as Record<string, unknown>) ?? {},
        backendSessions: {},
        createdAt: now,
        lastSeenAt: now,
      },
      this.o.config.sessions.idleTimeoutMs,
    );
    session.core = this.o.core.openSession({
      id,
      principal,
      identity,
      scope,
      unrelated: { send: (m) => session.getStream.send(m) },
    });
    let res: JsonRpcResponse | undefined;
    try {
      res = await session.core.request(request, { send: () => {} });
    } catch (err) {
      res = toRpcError(request.id, err);
    }
    if (!res || 'error' in res) {
      await session.core.close();
      await this.o.sessions.delete(id);
      // A server or virtual server the core does not serve to this caller (another tenant's, one the
      // policy hides, one that does not exist) is a 404, as on a single node; other refusals are
      // JSON-RPC errors.
      const code = (res?.error.data as { code?: unknown } | undefined)?.code;
      const unknown = code === 'GW_UNKNOWN_SERVER' || code === 'GW_UNKNOWN_VIRTUAL_SERVER';
      return void reply
        .code(unknown ? 404 : 200)
        .header('content-type', 'application/json')
        .send(JSON.stringify(res ?? toRpcError(request.id, new GatewayError('GW_INTERNAL'))));
    }
    this.live.set(id, session);
    this.o.log.debug({ sessionId: id, scope, clientInfo: request.params?.clientInfo }, 'session initialized');
    reply
      .code(200)
      .header('content-type', 'application/json')
      .header('mcp-session-id', id)
      .send(JSON.stringify(res));
  }

  /**
   * The session's GET stream. With other replicas, what it cannot write here is offered to them: the
   * client's GET connection may be on another replica.
   */
  private getStreamOf(session: EdgeSession): SseStream {
    const replicas = this.o.replicas;
    if (!replicas)
      return this.newStream(session, GET_STREAM, { keepUndelivered: BACKLOG_LIMIT, longLived: true });
    return this.newStream(session, GET_STREAM, {
      longLived: true,
      onUnwritten: (eventId, message) =>
        this.toReplicas(() =>
          replicas.broadcast({
            kind: 'event',
            sessionId: session.id,
            streamId: GET_STREAM,
            eventId,
            message,
          }),
        ),
    });
  }

  /**
   * A stream of the session. POST streams are tracked until their response is sent, so that a client
   * resuming one meanwhile gets the live stream, not just what was logged so far.
   */
  private newStream(
    session: EdgeSession,
    streamId: string,
    extra: {
      keepUndelivered?: number;
      longLived?: boolean;
      follow?: FollowOptions;
      onUnwritten?: (eventId: string, message: unknown) => void;
    } = {},
  ): SseStream {
    const stream = new SseStream({
      sessionId: session.id,
      streamId,
      events: this.o.events,
      log: this.o.log,
      // Priming events (an id and empty data) are understood from 2025-11-25 on.
      retryMs: session.protocolVersion >= '2025-11-25' ? this.o.config.sessions.sseRetryMs : undefined,
      ...extra,
    });
    if (streamId !== GET_STREAM && !extra.follow) {
      session.postStreams.set(streamId, stream);
      stream.whenFinished(() => session.postStreams.delete(streamId));
    }
    return stream;
  }

  /**
   * The session a request names: live on this replica, or continued from the SessionStore when another
   * replica initialized it (the client never notices which replica serves it).
   */
  private async lookup(
    reply: FastifyReply,
    sid: string | string[] | undefined,
    scope: string,
    identity: Principal,
    id: string | number | null,
  ): Promise<EdgeSession | undefined> {
    if (sid === undefined || Array.isArray(sid) || sid === '')
      return void this.refuse(reply, 'GW_SESSION_REQUIRED', id);
    const principal = principalKey(identity);
    const s = this.live.get(sid) ?? (await this.restore(sid, identity));
    // Another caller's session does not exist for this one: the same 404, so ids cannot be probed.
    if (!s || s.scope !== scope || s.principal !== principal)
      return void this.refuse(reply, 'GW_SESSION_NOT_FOUND', id);
    return s;
  }

  private restore(sid: string, identity: Principal): Promise<EdgeSession | undefined> {
    let p = this.restoring.get(sid);
    if (!p) {
      p = this.restoreFromStore(sid, identity).finally(() => this.restoring.delete(sid));
      this.restoring.set(sid, p);
    }
    return p;
  }

  /** Continued by its owner only: the caller's identity (tenant, roles) is what the core filters by. */
  private async restoreFromStore(sid: string, identity: Principal): Promise<EdgeSession | undefined> {
    if (this.closing) return undefined;
    const record = await this.o.sessions.get(sid);
    if (
      !record ||
      record.principal !== principalKey(identity) ||
      !this.o.core.hasScope(record.scope, identity)
    )
      return undefined;
    const session: EdgeSession = {
      id: sid,
      scope: record.scope,
      principal: record.principal,
      core: undefined as unknown as CoreSessionHandle,
      protocolVersion: record.protocolVersion,
      lastSeen: Date.now(),
      getStream: undefined as unknown as SseStream,
      postStreams: new Map(),
      lastTouched: Date.now(),
      inflight: 0,
    };
    session.getStream = this.getStreamOf(session);
    session.core = this.o.core.openSession({
      id: sid,
      principal: record.principal,
      identity,
      scope: record.scope,
      unrelated: { send: (m) => session.getStream.send(m) },
      restore: record,
    });
    this.live.set(sid, session);
    this.o.log.debug({ sessionId: sid, scope: record.scope }, 'session continued from the session store');
    return session;
  }

  /**
   * Keeps the shared record alive, at most once a second per session (with Redis each touch is a round
   * trip); a record that is gone was ended elsewhere (or expired): end it here.
   */
  private touch(session: EdgeSession): void {
    const now = Date.now();
    if (now - session.lastTouched < TOUCH_EVERY_MS) return;
    session.lastTouched = now;
    void this.o.sessions.touch(session.id, this.o.config.sessions.idleTimeoutMs).then(
      (known) => {
        if (!known) void this.end(session, 'ended elsewhere or expired');
      },
      (err: unknown) =>
        this.o.log.warn({ err, sessionId: session.id }, 'could not refresh the session record'),
    );
  }

  private versionOk(req: FastifyRequest, reply: FastifyReply, id: string | number | null): boolean {
    const v = req.headers['mcp-protocol-version'];
    if (v === undefined || (typeof v === 'string' && SUPPORTED_PROTOCOL_VERSIONS.includes(v))) return true;
    this.refuse(
      reply,
      'GW_UNSUPPORTED_PROTOCOL_VERSION',
      id,
      `Bad Request: unsupported MCP-Protocol-Version "${String(v)}" (supported: ${SUPPORTED_PROTOCOL_VERSIONS.join(', ')})`,
    );
    return false;
  }

  private refuse(
    reply: FastifyReply,
    code: ErrorCode,
    id: string | number | null = null,
    message?: string,
  ): void {
    const err = new GatewayError(code, message);
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (code === 'GW_METHOD_NOT_ALLOWED') headers.allow = 'GET, POST, DELETE';
    reply
      .code(err.httpStatus)
      .headers(headers)
      .send(JSON.stringify(toRpcError(id, err)));
  }

  /** Lets go of a session on this replica only: another replica is using it. */
  private async evict(s: EdgeSession): Promise<void> {
    if (this.live.get(s.id) !== s) return;
    this.live.delete(s.id);
    s.getStream.close();
    for (const stream of s.postStreams.values()) stream.close();
    await s.core.detach().catch((err: unknown) => this.o.log.warn({ err, sessionId: s.id }, 'detach failed'));
  }

  private async end(s: EdgeSession, reason: string): Promise<void> {
    if (!this.live.delete(s.id)) return;
    this.o.log.debug({ sessionId: s.id, reason }, 'session ended');
    s.getStream.close();
    for (const stream of s.postStreams.values()) stream.close();
    await s.core
      .close()
      .catch((err: unknown) => this.o.log.warn({ err, sessionId: s.id }, 'error closing session'));
    await Promise.all([this.o.sessions.delete(s.id), this.o.events.deleteSession(s.id)]);
  }

  private async expireIdle(): Promise<void> {
    const limit = Date.now() - this.o.config.sessions.idleTimeoutMs;
    for (const s of this.live.values()) {
      if (s.lastSeen >= limit || s.inflight > 0 || s.getStream.attached) continue;
      // Idle here is not idle everywhere: a session another replica serves is only let go of.
      const record = await this.o.sessions.get(s.id).catch(() => undefined);
      if (record && record.lastSeenAt >= limit) await this.evict(s);
      else await this.end(s, 'idle timeout');
    }
  }
}

/**
 * The answer to one POST request: plain JSON when the response is the only message; a resumable SSE
 * stream as soon as a related message (progress, a server-to-client request) has to go first.
 */
class RequestResponder implements MessageSink {
  private stream: SseStream | undefined;
  private done = false;

  /** The answer became a stream (its 200 head is sent): no other status can be given any more. */
  get streaming(): boolean {
    return this.stream !== undefined;
  }

  constructor(
    private readonly res: ServerResponse,
    private readonly headers: Record<string, string>,
    private readonly openStream: () => SseStream,
    /** Where related messages go when the client left before this answer became a stream. */
    private readonly fallback: MessageSink,
  ) {}

  send(message: JsonRpcMessage): void {
    if (this.done) return;
    if (!this.stream) {
      // The client left before getting any event id, so it cannot resume this answer: its GET stream
      // is the only way left to reach it (a server-to-client request must not be dropped).
      if (this.res.destroyed) return this.fallback.send(message);
      this.stream = this.openStream();
      void this.stream.connect(this.res, this.headers);
    }
    this.stream.send(message);
  }

  /** `status`: of a plain JSON answer (a stream has begun with 200 already). */
  finish(response: JsonRpcResponse | undefined, status = 200): void {
    if (this.done) return;
    this.done = true;
    if (this.stream) {
      if (response !== undefined) this.stream.send(response);
      void this.stream.finish();
      return;
    }
    if (this.res.destroyed) return;
    if (response === undefined) {
      // Cancelled by the client: it expects no answer.
      this.res.writeHead(202, this.headers).end();
      return;
    }
    // A remote core's answer goes as the core wrote it (the client's id: the core answers the request
    // the client sent).
    const body = jsonBytesOf(response);
    this.res
      .writeHead(status, {
        ...this.headers,
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(body),
      })
      .end(body);
  }
}

/** A refusal on a connection already taken over from Fastify (after `reply.hijack()`). */
function writeRefusal(res: ServerResponse, err: GatewayError): void {
  if (res.headersSent || res.destroyed) return void res.end();
  res
    .writeHead(err.httpStatus, { 'content-type': 'application/json' })
    .end(JSON.stringify(toRpcError(null, err)));
}

function idOf(msg: unknown): string | number | null {
  const id = (msg as { id?: unknown } | null)?.id;
  return typeof id === 'string' || typeof id === 'number' ? id : null;
}
