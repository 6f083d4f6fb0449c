/**
 * The client-facing Streamable HTTP transport (MCP 2025-11-25 / 2025-06-18, 2025-03-26 accepted) on
 * `/mcp` and `/servers/{name}/mcp`: sessions, POST with a JSON or SSE answer, the GET stream for
 * server-initiated messages, DELETE, and every transport-level refusal with the status the spec names.
 * It parses only the JSON-RPC envelope and hands messages to the core through CoreService.
 */
import { randomUUID } from 'node:crypto';
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
import { SUPPORTED_PROTOCOL_VERSIONS } from '../../shared/mcp/versions.js';
import type { CoreService, CoreSessionHandle, MessageSink } from '../../shared/ports/core-service.js';
import type { SessionStore } from '../../shared/ports/session-store.js';
import { openSse, sseEvent } from './sse.js';

const BACKLOG_LIMIT = 1000;
const KEEPALIVE_MS = 25_000;

interface EdgeSession {
  id: string;
  scope: string;
  principal: string;
  core: CoreSessionHandle;
  protocolVersion: string;
  lastSeen: number;
  getStream: ServerResponse | undefined;
  backlog: JsonRpcMessage[];
  inflight: number;
}

export interface McpEndpointOptions {
  config: GatewayConfig;
  core: CoreService;
  sessions: SessionStore;
  log: Logger;
}

export class McpEndpoint {
  private readonly live = new Map<string, EdgeSession>();
  private readonly sweeper: NodeJS.Timeout;
  private closing = false;

  constructor(private readonly o: McpEndpointOptions) {
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
    try {
      const body = req.body as Buffer | undefined;
      msg = JSON.parse(body && body.length > 0 ? body.toString('utf8') : '');
    } catch {
      return this.refuse(reply, 'GW_PARSE_ERROR');
    }
    if (Array.isArray(msg)) return this.refuse(reply, 'GW_BATCH_UNSUPPORTED');
    const kind = classify(msg);
    if (kind === 'invalid') return this.refuse(reply, 'GW_INVALID_REQUEST', idOf(msg));
    const principal = this.principalOf(req);
    const sid = req.headers['mcp-session-id'];

    if (kind === 'request' && (msg as JsonRpcRequest).method === 'initialize') {
      if (sid !== undefined) return this.refuse(reply, 'GW_ALREADY_INITIALIZED', (msg as JsonRpcRequest).id);
      return this.initialize(msg as JsonRpcRequest, reply, scope, principal);
    }
    const session = this.lookup(reply, sid, scope, principal, idOf(msg));
    if (!session) return;
    if (!this.versionOk(req, reply, idOf(msg))) return;
    session.lastSeen = Date.now();
    void this.o.sessions.touch(session.id, this.o.config.sessions.idleTimeoutMs);

    if (kind === 'notification') {
      session.core.notify(msg as JsonRpcNotification);
      return void reply.code(202).send();
    }
    if (kind === 'response') {
      session.core.respond(msg as JsonRpcResponse);
      return void reply.code(202).send();
    }
    const request = msg as JsonRpcRequest;
    reply.hijack();
    const responder = new RequestResponder(
      reply.raw,
      { 'mcp-session-id': session.id },
      this.unrelatedSink(session),
    );
    session.inflight++;
    try {
      const res = await session.core.request(request, responder);
      responder.finish(res);
    } catch (err) {
      responder.finish(toRpcError(request.id, err));
    } finally {
      session.inflight--;
      session.lastSeen = Date.now();
    }
  }

  /** GET: the session's stream for messages unrelated to any request. */
  async get(req: FastifyRequest, reply: FastifyReply, scope: string): Promise<void> {
    const accept = String(req.headers.accept ?? '');
    if (!accept.includes('text/event-stream')) return this.refuse(reply, 'GW_NOT_ACCEPTABLE_SSE');
    const session = this.lookup(reply, req.headers['mcp-session-id'], scope, this.principalOf(req), null);
    if (!session) return;
    if (!this.versionOk(req, reply, null)) return;
    if (session.getStream && !session.getStream.destroyed) return this.refuse(reply, 'GW_STREAM_CONFLICT');
    reply.hijack();
    const res = reply.raw;
    openSse(res, { 'mcp-session-id': session.id });
    session.getStream = res;
    session.lastSeen = Date.now();
    for (const m of session.backlog.splice(0)) res.write(sseEvent(m));
    const keepalive = setInterval(() => res.write(': keepalive\n\n'), KEEPALIVE_MS).unref();
    res.on('close', () => {
      clearInterval(keepalive);
      if (session.getStream === res) session.getStream = undefined;
      session.lastSeen = Date.now();
    });
  }

  /** DELETE: the client ends its session. */
  async delete(req: FastifyRequest, reply: FastifyReply, scope: string): Promise<void> {
    const session = this.lookup(reply, req.headers['mcp-session-id'], scope, this.principalOf(req), null);
    if (!session) return;
    await this.end(session, 'deleted by client');
    return void reply.code(200).send();
  }

  async close(): Promise<void> {
    this.closing = true;
    clearInterval(this.sweeper);
    await Promise.all([...this.live.values()].map((s) => this.end(s, 'gateway shutting down')));
  }

  // ------------------------------------------------------------------------------------------------

  private async initialize(
    request: JsonRpcRequest,
    reply: FastifyReply,
    scope: string,
    principal: string,
  ): Promise<void> {
    if (this.closing) return this.refuse(reply, 'GW_SHUTTING_DOWN', request.id);
    const id = randomUUID();
    const session: EdgeSession = {
      id,
      scope,
      principal,
      core: undefined as unknown as CoreSessionHandle,
      protocolVersion: '',
      lastSeen: Date.now(),
      getStream: undefined,
      backlog: [],
      inflight: 0,
    };
    session.core = this.o.core.openSession({ id, principal, scope, unrelated: this.unrelatedSink(session) });
    let res: JsonRpcResponse | undefined;
    try {
      res = await session.core.request(request, { send: () => {} });
    } catch (err) {
      res = toRpcError(request.id, err);
    }
    if (!res || 'error' in res) {
      await session.core.close();
      return void reply
        .code(200)
        .header('content-type', 'application/json')
        .send(JSON.stringify(res ?? toRpcError(request.id, new GatewayError('GW_INTERNAL'))));
    }
    session.protocolVersion = String(res.result.protocolVersion);
    this.live.set(id, session);
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
    this.o.log.debug({ sessionId: id, scope, clientInfo: request.params?.clientInfo }, 'session initialized');
    reply
      .code(200)
      .header('content-type', 'application/json')
      .header('mcp-session-id', id)
      .send(JSON.stringify(res));
  }

  private unrelatedSink(session: EdgeSession): MessageSink {
    return {
      send: (m) => {
        const s = session.getStream;
        if (s && !s.destroyed && s.writable) return void s.write(sseEvent(m));
        session.backlog.push(m);
        if (session.backlog.length > BACKLOG_LIMIT) session.backlog.shift();
      },
    };
  }

  private lookup(
    reply: FastifyReply,
    sid: string | string[] | undefined,
    scope: string,
    principal: string,
    id: string | number | null,
  ): EdgeSession | undefined {
    if (sid === undefined || Array.isArray(sid) || sid === '')
      return void this.refuse(reply, 'GW_SESSION_REQUIRED', id);
    const s = this.live.get(sid);
    if (!s || s.scope !== scope) return void this.refuse(reply, 'GW_SESSION_NOT_FOUND', id);
    if (s.principal !== principal) return void this.refuse(reply, 'GW_SESSION_FORBIDDEN', id);
    return s;
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

  /** auth.mode none: every caller is the same anonymous principal (authentication arrives with the edge tier). */
  private principalOf(_req: FastifyRequest): string {
    return 'anonymous';
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

  private async end(s: EdgeSession, reason: string): Promise<void> {
    if (!this.live.delete(s.id)) return;
    this.o.log.debug({ sessionId: s.id, reason }, 'session ended');
    s.getStream?.end();
    await s.core
      .close()
      .catch((err: unknown) => this.o.log.warn({ err, sessionId: s.id }, 'error closing session'));
    await this.o.sessions.delete(s.id);
  }

  private async expireIdle(): Promise<void> {
    const limit = Date.now() - this.o.config.sessions.idleTimeoutMs;
    for (const s of this.live.values()) {
      if (s.lastSeen < limit && s.inflight === 0 && !(s.getStream && !s.getStream.destroyed))
        await this.end(s, 'idle timeout');
    }
  }
}

/**
 * The answer to one POST request: plain JSON when the response is the only message, an SSE stream as soon
 * as a related message (progress, a server-to-client request) has to go first.
 */
class RequestResponder implements MessageSink {
  private mode: 'pending' | 'sse' | 'done' = 'pending';

  constructor(
    private readonly res: ServerResponse,
    private readonly headers: Record<string, string>,
    private readonly fallback: MessageSink,
  ) {
    res.on('close', () => {
      if (this.mode !== 'done') this.mode = 'done'; // a dropped connection is not a cancellation; later messages use the GET stream
    });
  }

  send(message: JsonRpcMessage): void {
    if (this.mode === 'done' || this.res.destroyed) return this.fallback.send(message);
    if (this.mode === 'pending') {
      openSse(this.res, this.headers);
      this.mode = 'sse';
    }
    this.res.write(sseEvent(message));
  }

  finish(response: JsonRpcResponse | undefined): void {
    const mode = this.mode;
    this.mode = 'done';
    if (this.res.destroyed) return;
    if (mode === 'pending') {
      if (response === undefined) {
        // Cancelled by the client: it expects no answer; close with an empty 202-like reply.
        this.res.writeHead(202, this.headers).end();
        return;
      }
      const body = JSON.stringify(response);
      this.res
        .writeHead(200, {
          ...this.headers,
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
        })
        .end(body);
      return;
    }
    if (response !== undefined) this.res.write(sseEvent(response));
    this.res.end();
  }
}

function idOf(msg: unknown): string | number | null {
  const id = (msg as { id?: unknown } | null)?.id;
  return typeof id === 'string' || typeof id === 'number' ? id : null;
}
