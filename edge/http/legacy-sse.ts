/**
 * The client-facing legacy HTTP+SSE transport (MCP 2024-11-05) on `/sse` + `/message` and
 * `/servers/{name}/sse` + `/servers/{name}/message`, for clients that predate Streamable HTTP. A GET opens
 * the session's only stream and names the POST URI in an `endpoint` event; every POSTed message is accepted
 * with 202 and anything the gateway says back travels on that stream. The session lives exactly as long as
 * the stream. Like McpEndpoint it checks only the JSON-RPC envelope and talks to the core via CoreService.
 */
import { randomUUID } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { GatewayError, toRpcError, type ErrorCode } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';
import {
  classify,
  type JsonRpcMessage,
  type JsonRpcNotification,
  type JsonRpcRequest,
  type JsonRpcResponse,
} from '../../shared/mcp/jsonrpc.js';
import type { CoreService, CoreSessionHandle, MessageSink } from '../../shared/ports/core-service.js';
import { principalKey } from '../../shared/identity/principal.js';
import { requestPrincipal } from '../auth/request-principal.js';
import { inStage, setMessageTrace, STAGE } from '../../shared/telemetry/tracing.js';
import { requestStage, unsampledTrace } from './request-trace.js';
import { openSse, sseEvent } from './sse.js';

/** Below the idle timeouts of common proxies, so an open but quiet stream is not cut. */
const KEEPALIVE_MS = 25_000;

interface LegacySession {
  id: string;
  scope: string;
  principal: string;
  core: CoreSessionHandle;
  stream: ServerResponse;
  keepalive: NodeJS.Timeout;
  initialized: boolean;
}

export interface LegacySseEndpointOptions {
  core: CoreService;
  log: Logger;
}

// Sessions are deliberately not written to the SessionStore: every answer travels on a stream held by this
// process, so no other replica could ever continue one.
export class LegacySseEndpoint {
  private readonly live = new Map<string, LegacySession>();
  private closing = false;

  constructor(private readonly o: LegacySseEndpointOptions) {}

  get sessionCount(): number {
    return this.live.size;
  }

  /** GET: opens a session and its stream; the first event names where to POST. */
  async open(req: FastifyRequest, reply: FastifyReply, scope: string): Promise<void> {
    if (!String(req.headers.accept ?? '').includes('text/event-stream'))
      return this.refuse(reply, 'GW_NOT_ACCEPTABLE_SSE');
    if (this.closing) return this.refuse(reply, 'GW_SHUTTING_DOWN');
    const id = randomUUID();
    const session: LegacySession = {
      id,
      scope,
      principal: this.principalOf(req),
      core: undefined as unknown as CoreSessionHandle,
      stream: reply.raw,
      keepalive: undefined as unknown as NodeJS.Timeout,
      initialized: false,
    };
    try {
      session.core = this.o.core.openSession({
        id,
        principal: session.principal,
        identity: requestPrincipal(req.raw),
        scope,
        unrelated: this.sinkOf(session),
      });
    } catch (err) {
      if (!(err instanceof GatewayError)) this.o.log.error({ err }, 'could not open a legacy session');
      return this.refuse(reply, err instanceof GatewayError ? err : 'GW_INTERNAL');
    }
    reply.hijack();
    openSse(session.stream, {}, { longLived: true });
    session.keepalive = setInterval(() => write(session, ': keepalive\n\n'), KEEPALIVE_MS).unref();
    this.live.set(id, session);
    session.stream.on('close', () => void this.end(session, 'stream closed'));
    if (session.stream.destroyed) return void this.end(session, 'client left before the stream opened');
    write(session, `event: endpoint\ndata: ${messagePath(scope)}?sessionId=${id}\n\n`);
    this.o.log.debug({ sessionId: id, scope, transport: 'sse' }, 'legacy session opened');
  }

  /** POST: one JSON-RPC message for an open session; answers travel on the session's stream. */
  async post(req: FastifyRequest, reply: FastifyReply, scope: string): Promise<void> {
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
    const session = this.lookup(req, reply, scope, idOf(msg));
    if (!session) return;

    if (kind === 'notification') {
      session.core.notify(msg as JsonRpcNotification);
      return void reply.code(202).send();
    }
    if (kind === 'response') {
      session.core.respond(msg as JsonRpcResponse); // one replica holds a legacy session: no forwarding
      return void reply.code(202).send();
    }
    const request = msg as JsonRpcRequest;
    // A second initialize would renegotiate capabilities under requests already in flight.
    if (request.method === 'initialize' && session.initialized)
      return this.refuse(reply, 'GW_ALREADY_INITIALIZED', request.id);
    // The answer travels on the stream, after this POST's 202: the request span ends first, its stages later.
    const stage = requestStage(req, reply, request.params);
    reply.code(202).send();
    void inStage(STAGE.forward, stage?.ctx, (trace) => {
      setMessageTrace(request, trace ?? unsampledTrace(req));
      return this.dispatch(session, request);
    });
  }

  async close(): Promise<void> {
    this.closing = true;
    await Promise.all([...this.live.values()].map((s) => this.end(s, 'gateway shutting down')));
  }

  // ------------------------------------------------------------------------------------------------

  private async dispatch(session: LegacySession, request: JsonRpcRequest): Promise<void> {
    // There is one stream, so messages related to the request share it with everything else.
    const sink = this.sinkOf(session);
    let res: JsonRpcResponse | undefined;
    try {
      res = await session.core.request(request, sink);
    } catch (err) {
      res = toRpcError(request.id, err);
    }
    if (request.method === 'initialize' && res && 'result' in res) session.initialized = true;
    if (res) sink.send(res);
  }

  private sinkOf(session: LegacySession): MessageSink {
    return { send: (m: JsonRpcMessage) => write(session, sseEvent(m)) };
  }

  private lookup(
    req: FastifyRequest,
    reply: FastifyReply,
    scope: string,
    id: string | number | null,
  ): LegacySession | undefined {
    const sid = (req.query as { sessionId?: unknown } | undefined)?.sessionId;
    if (typeof sid !== 'string' || sid === '') return void this.refuse(reply, 'GW_SESSION_ID_REQUIRED', id);
    const s = this.live.get(sid);
    // Another caller's session does not exist for this one (the same 404: ids cannot be probed).
    if (!s || s.scope !== scope || s.principal !== this.principalOf(req))
      return void this.refuse(reply, 'GW_SESSION_NOT_FOUND', id);
    return s;
  }

  /** The key sessions are bound to, from the Principal the authenticate stage established. */
  private principalOf(req: FastifyRequest): string {
    return principalKey(requestPrincipal(req.raw));
  }

  private refuse(
    reply: FastifyReply,
    error: ErrorCode | GatewayError,
    id: string | number | null = null,
  ): void {
    const err = typeof error === 'string' ? new GatewayError(error) : error;
    reply
      .code(err.httpStatus)
      .header('content-type', 'application/json')
      .send(JSON.stringify(toRpcError(id, err)));
  }

  private async end(s: LegacySession, reason: string): Promise<void> {
    if (!this.live.delete(s.id)) return;
    this.o.log.debug({ sessionId: s.id, reason, transport: 'sse' }, 'legacy session ended');
    clearInterval(s.keepalive);
    if (!s.stream.writableEnded) s.stream.end();
    await s.core
      .close()
      .catch((err: unknown) => this.o.log.warn({ err, sessionId: s.id }, 'error closing session'));
  }
}

/** Relative to the gateway's origin, which is how 2024-11-05 clients resolve it against the SSE URL. */
function messagePath(scope: string): string {
  return scope === 'aggregate' ? '/message' : `/servers/${encodeURIComponent(scope)}/message`;
}

function write(s: LegacySession, chunk: string): void {
  // After the client went away the session is ending; what was still on its way has nowhere to go.
  if (!s.stream.destroyed && s.stream.writable) s.stream.write(chunk);
}

function idOf(msg: unknown): string | number | null {
  const id = (msg as { id?: unknown } | null)?.id;
  return typeof id === 'string' || typeof id === 'number' ? id : null;
}
