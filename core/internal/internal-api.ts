/**
 * The core's internal API: CoreService spoken over HTTP, for edges only (see docs/adr/0005). Every route
 * under /internal/v1 needs an internal token of a trusted edge (401 GW_INTERNAL_TOKEN_* otherwise);
 * bodies and answers are the JSON-RPC messages themselves, framed:
 *
 *   POST /internal/v1/sessions/{id}/request  {scope, message}  -> 200 NDJSON: {"m":related}* then {"r":response} | {"c":1}
 *   POST /internal/v1/sessions/{id}/notify   {scope, message}  -> 202
 *   POST /internal/v1/sessions/{id}/respond  {message}         -> 200 {"delivered":bool}
 *   POST /internal/v1/sessions/{id}/close | /detach            -> 204
 *   GET  /internal/v1/events                                   -> NDJSON {"s":sessionId,"m":message}* (unrelated messages)
 *   GET  /internal/v1/info                                     -> {coreId, region, servers, readiness, draining}
 *   POST /internal/v1/sync  {virtualServer: name} | {policies: true} -> 204 once re-read from the store and applied
 *   GET  /internal/v1/capabilities/{server}                    -> {state, tools, prompts, resources} (the admin API's)
 *
 * Draining (SIGTERM), the core tells every edge at once with a `{"d":1}` line on its events stream and
 * marks its answers `x-mcpgw-draining: 1` (with `connection: close`), so edges send new calls to another
 * core; calls in flight finish here. Once it no longer accepts, a new request is refused with 503 and that
 * header, which tells the edge nothing ran, so the call may go to another core.
 *
 * The core side of a session is found by its id alone, so any edge reaches it: live here, or continued
 * from the shared SessionStore (a session another core or an earlier run of this one served). Messages
 * unrelated to a request go to the edge instance that last used the session, over that edge's one
 * events stream (one stream per edge, not per session).
 */
import type { Context } from '@opentelemetry/api';
import { trustedParent } from './trace-parent.js';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { GatewayError, toRpcError } from '../../shared/errors.js';
import type { InternalIdentity } from '../../shared/identity/internal-token.js';
import { ANONYMOUS, principalKey, type Principal } from '../../shared/identity/principal.js';
import type { Logger } from '../../shared/log.js';
import { ROOT_CONTEXT } from '@opentelemetry/api';
import {
  sampledParent,
  setMessageTrace,
  tracingActive,
  unsampledTraceId,
} from '../../shared/telemetry/tracing.js';
import {
  classify,
  type JsonRpcMessage,
  type JsonRpcNotification,
  type JsonRpcRequest,
  type JsonRpcResponse,
} from '../../shared/mcp/jsonrpc.js';
import type { CoreService, CoreSessionHandle, MessageSink } from '../../shared/ports/core-service.js';
import type { SessionStore } from '../../shared/ports/session-store.js';
import { DRAINING_HEADER, isDraining, onDrain } from '../../shared/lifecycle/drain.js';
import { InflightRequests, notInflight } from '../../shared/lifecycle/inflight.js';
import { unknownScope } from '../../shared/mcp/scopes.js';

const PREFIX = '/internal/v1/';
const SESSION_ROUTE =
  /^\/internal\/v1\/sessions\/([A-Za-z0-9._~:-]{1,200})\/(request|notify|respond|close|detach)$/;
const CAPABILITIES_ROUTE = /^\/internal\/v1\/capabilities\/([A-Za-z0-9][A-Za-z0-9_-]{0,63})$/;
const EDGE_INSTANCE = /^[A-Za-z0-9_-]{1,64}$/;
const NDJSON = 'application/x-ndjson';
const HEARTBEAT_MS = 20_000;

export interface TokenVerifier {
  verify(authorization: string | undefined): Promise<InternalIdentity>;
}

export interface IdentityBinding {
  bind(sessionId: string, principal: Principal): void;
  unbind(sessionId: string): void;
}

export interface InternalApiOptions {
  core: CoreService;
  sessions: SessionStore;
  /** Undefined only in the loopback test mode `internal.insecureNoTrustOnLoopback`. */
  verifier: TokenVerifier | undefined;
  identity?: IdentityBinding;
  /** Told the principal of every request with a valid internal token (the quota stages' callers). */
  callers?: { remember(p: Principal): void };
  coreId: string;
  region: string;
  servers: readonly string[];
  maxBodyBytes: number;
  idleTimeoutMs: number;
  /** Sessions live in a store other cores share: at shutdown they are let go of, not ended. */
  sharedSessions: boolean;
  /**
   * DR pairing (federation/dr-pairing.ts): throws GW_DR_FENCED when this core may not run a request of
   * `scope` now; `drFor` is the region the edge asks it to stand in for (header `x-mcpgw-dr-for`).
   */
  drGate?: (scope: string, drFor: string | undefined) => void;
  /**
   * Re-reads a change of the shared store (a virtual server, the stored policies) and applies it,
   * resolving once it is in force here: an edge's admin API asks before it answers a write. Absent: 404.
   */
  sync?: (change: StoreChange) => Promise<void>;
  /** A running server's catalog as the admin API shows it; undefined when it does not run here (404). */
  capabilities?: (server: string) => Promise<Record<string, unknown> | undefined>;
  log: Logger;
}

/** What an edge asks a core to re-read from the shared store. */
export type StoreChange = { virtualServer: string } | { policies: true };

interface CoreSide {
  id: string;
  scope: string;
  principal: string;
  handle: CoreSessionHandle;
  /** Edge instances using the session, the latest last. */
  holders: Set<string>;
  lastEdge: string;
  lastSeen: number;
  inflight: number;
}

interface Caller {
  principal: Principal;
  key: string;
  edge: string;
  /** The trace the request's spans join (see trace-parent.ts); undefined when tracing is off. */
  trace?: Context;
}

export class InternalApi {
  private readonly live = new Map<string, CoreSide>();
  private readonly opening = new Map<string, Promise<CoreSide>>();
  private readonly edges = new Map<string, ServerResponse>();
  private readonly sweeper: NodeJS.Timeout;
  private readonly heartbeat: NodeJS.Timeout;
  private closing = false;
  /** No longer accepting (after the drain delay): new requests are refused, nothing else changes. */
  private refusing = false;
  private readonly inflight = new InflightRequests();
  private readonly unsubscribe: () => void;

  constructor(private readonly o: InternalApiOptions) {
    // Edges learn of the drain at once, not at their next info poll.
    this.unsubscribe = onDrain(() => {
      for (const res of this.edges.values()) res.write('{"d":1}\n');
    });
    this.sweeper = setInterval(
      () => void this.expireIdle(),
      Math.min(Math.max(o.idleTimeoutMs / 4, 50), 30_000),
    ).unref();
    this.heartbeat = setInterval(() => {
      for (const res of this.edges.values()) res.write('{}\n');
    }, HEARTBEAT_MS).unref();
  }

  get sessionCount(): number {
    return this.live.size;
  }

  /** Requests in progress (the events streams are none). */
  get inflightCount(): number {
    return this.inflight.size;
  }

  /**
   * From now on a new request is refused (503, DRAINING_HEADER) so that its edge sends it to another
   * core; resolves once the requests in flight are done, false when `timeoutMs` passed first.
   */
  stopAccepting(timeoutMs: number): Promise<boolean> {
    this.refusing = true;
    return this.inflight.idle(timeoutMs);
  }

  /** The node:http request handler. */
  handle = (req: IncomingMessage, res: ServerResponse): void => {
    this.inflight.track(res);
    if (isDraining()) {
      res.setHeader(DRAINING_HEADER, '1');
      res.setHeader('connection', 'close');
    }
    this.route(req, res).catch((err: unknown) => {
      if (!(err instanceof GatewayError)) this.o.log.error({ err }, 'internal API failure');
      fail(res, err);
    });
  };

  async close(): Promise<void> {
    this.closing = true;
    this.unsubscribe();
    clearInterval(this.sweeper);
    clearInterval(this.heartbeat);
    for (const res of this.edges.values()) res.end();
    this.edges.clear();
    const all = [...this.live.values()];
    this.live.clear();
    await Promise.all(
      all.map((s) =>
        (this.o.sharedSessions ? s.handle.detach() : s.handle.close()).catch((err: unknown) =>
          this.o.log.warn({ err, sessionId: s.id }, 'error letting go of a session'),
        ),
      ),
    );
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = req.url ?? '/';
    if (req.method === 'GET' && (url === '/healthz' || url === '/readyz')) {
      const ready = url === '/healthz' || (!isDraining() && this.o.core.readiness().ready);
      return json(res, ready ? 200 : 503, {
        status: ready ? (url === '/healthz' ? 'ok' : 'ready') : isDraining() ? 'draining' : 'starting',
      });
    }
    if (!url.startsWith(PREFIX)) return fail(res, new GatewayError('GW_UNKNOWN_SERVER', 'Not found'), 404);
    // Identity first, before any body is read: nothing of a stranger's request is processed.
    const caller = await this.caller(req);
    if (req.method === 'GET' && url === `${PREFIX}info`)
      return json(res, 200, {
        coreId: this.o.coreId,
        region: this.o.region,
        servers: this.o.servers,
        readiness: this.o.core.readiness(),
        draining: isDraining(),
      });
    if (req.method === 'GET' && url === `${PREFIX}events`) return this.events(res, caller);
    if (req.method === 'POST' && url === `${PREFIX}sync` && this.o.sync) {
      const change = storeChangeOf(await readJson(req, this.o.maxBodyBytes));
      await this.o.sync(change);
      this.o.log.debug({ change, edge: caller.edge }, 'store change applied at an edge request');
      return void res.writeHead(204).end();
    }
    const cap = CAPABILITIES_ROUTE.exec(url);
    if (req.method === 'GET' && cap && this.o.capabilities) {
      const found = await this.o.capabilities(decodeURIComponent(cap[1]!));
      if (!found) return fail(res, new GatewayError('GW_UNKNOWN_SERVER', `Unknown server: ${cap[1]}`));
      return json(res, 200, found);
    }
    const m = SESSION_ROUTE.exec(url);
    if (!m || req.method !== 'POST') return fail(res, new GatewayError('GW_METHOD_NOT_ALLOWED'), 404);
    const [, id, op] = m as unknown as [string, string, string];
    // Answers to calls in flight here, cancellations and session ends still go through.
    if (this.refusing && op === 'request') {
      await readJson(req, this.o.maxBodyBytes).catch(() => undefined);
      return fail(res, new GatewayError('GW_SHUTTING_DOWN'), 503);
    }
    const body = await readJson(req, this.o.maxBodyBytes);
    switch (op) {
      case 'request':
        // The edge's forward span is the parent of this core's spans for the request (caller.trace).
        return this.request(res, id, caller, body);
      case 'notify':
        return this.notify(res, id, caller, body);
      case 'respond': {
        const msg = body.message;
        if (classify(msg) !== 'response') throw new GatewayError('GW_INVALID_REQUEST');
        const s = this.live.get(id);
        const delivered =
          s !== undefined && s.principal === caller.key && s.handle.respond(msg as JsonRpcResponse);
        return json(res, 200, { delivered });
      }
      case 'close':
        return this.end(res, id, caller, body);
      default:
        return this.detach(res, id, caller);
    }
  }

  private async caller(req: IncomingMessage): Promise<Caller> {
    const instance = req.headers['x-mcpgw-edge-instance'];
    const edge = typeof instance === 'string' && EDGE_INSTANCE.test(instance) ? instance : 'unnamed';
    if (!this.o.verifier) {
      const p = req.headers['x-mcpgw-test-principal'];
      return { principal: ANONYMOUS, key: typeof p === 'string' ? p : 'anonymous', edge };
    }
    let identity: InternalIdentity;
    try {
      identity = await this.o.verifier.verify(req.headers.authorization);
    } catch (err) {
      if (err instanceof GatewayError)
        this.o.log.warn(
          { code: err.code, remote: req.socket.remoteAddress, url: req.url },
          'internal request refused',
        );
      throw err;
    }
    this.o.callers?.remember(identity.principal);
    const trace = tracingActive()
      ? trustedParent(req.headers.traceparent, identity.traceId, req.headers.tracestate)
      : undefined;
    return {
      principal: identity.principal,
      key: principalKey(identity.principal),
      edge,
      ...(trace && { trace }),
    };
  }

  private events(res: ServerResponse, caller: Caller): void {
    if (caller.edge === 'unnamed')
      return fail(
        res,
        new GatewayError('GW_INVALID_REQUEST', 'Bad Request: x-mcpgw-edge-instance is required'),
      );
    this.edges.get(caller.edge)?.end();
    notInflight(res);
    res.writeHead(200, { 'content-type': NDJSON, 'cache-control': 'no-store' });
    res.flushHeaders();
    if (isDraining()) res.write('{"d":1}\n');
    this.edges.set(caller.edge, res);
    res.on('close', () => {
      if (this.edges.get(caller.edge) === res) this.edges.delete(caller.edge);
    });
  }

  private async request(res: ServerResponse, id: string, caller: Caller, body: Body): Promise<void> {
    const msg = body.message;
    if (classify(msg) !== 'request') throw new GatewayError('GW_INVALID_REQUEST');
    const request = msg as JsonRpcRequest;
    // Before the session is touched: a fenced core runs nothing of it (the edge tries the other region).
    const drFor = res.req.headers['x-mcpgw-dr-for'];
    this.o.drGate?.(scopeOf(body), typeof drFor === 'string' ? drFor : undefined);
    const s = await this.sessionFor(id, scopeOf(body), caller, request.method === 'initialize');
    this.o.identity?.bind(id, caller.principal);
    s.inflight++;
    const answer = new NdjsonAnswer(res, { send: (m) => this.toEdge(s, m) });
    let response: JsonRpcResponse | undefined;
    try {
      // The edge's sampled trace (its `traceparent`), else this tier's own decision for a new trace; not
      // sampled, the trace id alone (the edge's, so that both tiers' lines name the same trace).
      if (tracingActive()) {
        const parent = caller.trace ?? ROOT_CONTEXT;
        setMessageTrace(request, sampledParent(parent) ?? unsampledTraceId(parent));
      }
      response = await s.handle.request(request, answer);
    } catch (err) {
      response = toRpcError(request.id, err);
    } finally {
      s.inflight--;
      s.lastSeen = Date.now();
    }
    answer.finish(response);
  }

  private async notify(res: ServerResponse, id: string, caller: Caller, body: Body): Promise<void> {
    const msg = body.message;
    if (classify(msg) !== 'notification') throw new GatewayError('GW_INVALID_REQUEST');
    const n = msg as JsonRpcNotification;
    // A cancellation for a session not held here concerns no call of this core.
    const s =
      this.live.get(id) ??
      (n.method === 'notifications/cancelled'
        ? undefined
        : await this.sessionFor(id, scopeOf(body), caller, false));
    if (s && s.principal === caller.key) {
      this.held(s, caller.edge);
      s.handle.notify(n);
    }
    res.writeHead(202).end();
  }

  private async end(res: ServerResponse, id: string, caller: Caller, body: Body): Promise<void> {
    // Not held here (a core restarted): continue it only to end it, so its backend sessions close too.
    const s =
      this.live.get(id) ??
      (await this.sessionFor(id, scopeOf(body), caller, false).catch((err: unknown) => {
        if (err instanceof GatewayError && err.code === 'GW_SESSION_NOT_FOUND') return undefined;
        throw err;
      }));
    if (s) {
      if (s.principal !== caller.key) throw new GatewayError('GW_SESSION_NOT_FOUND');
      this.live.delete(id);
      this.o.identity?.unbind(id);
      await s.handle.close();
    }
    res.writeHead(204).end();
  }

  private async detach(res: ServerResponse, id: string, caller: Caller): Promise<void> {
    const s = this.live.get(id);
    if (s && s.principal === caller.key) {
      s.holders.delete(caller.edge);
      // The last edge let go: so does this core (backend sessions stay open for whoever continues).
      if (s.holders.size === 0 && s.inflight === 0) {
        this.live.delete(id);
        this.o.identity?.unbind(id);
        await s.handle.detach();
      }
    }
    res.writeHead(204).end();
  }

  /** The core side of session `id`: live, freshly opened for initialize, or continued from the store. */
  private async sessionFor(
    id: string,
    scope: string,
    caller: Caller,
    initialize: boolean,
  ): Promise<CoreSide> {
    const live = this.live.get(id);
    if (live) return this.checked(live, scope, caller);
    let p = this.opening.get(id);
    if (!p) {
      p = this.open(id, scope, caller, initialize).finally(() => this.opening.delete(id));
      this.opening.set(id, p);
    }
    return this.checked(await p, scope, caller);
  }

  private checked(s: CoreSide, scope: string, caller: Caller): CoreSide {
    if (s.scope !== scope) throw new GatewayError('GW_SESSION_NOT_FOUND');
    if (s.principal !== caller.key) throw new GatewayError('GW_SESSION_NOT_FOUND');
    this.held(s, caller.edge);
    return s;
  }

  private held(s: CoreSide, edge: string): void {
    s.lastSeen = Date.now();
    if (s.lastEdge !== edge) {
      s.holders.delete(edge);
      s.lastEdge = edge;
    }
    s.holders.add(edge);
  }

  private async open(id: string, scope: string, caller: Caller, initialize: boolean): Promise<CoreSide> {
    if (this.closing) throw new GatewayError('GW_SHUTTING_DOWN');
    if (!this.o.core.hasScope(scope, caller.principal)) throw unknownScope(scope);
    const record = initialize ? undefined : await this.o.sessions.get(id);
    if (!initialize) {
      if (!record || record.scope !== scope) throw new GatewayError('GW_SESSION_NOT_FOUND');
      if (record.principal !== caller.key) throw new GatewayError('GW_SESSION_NOT_FOUND');
    }
    const s: CoreSide = {
      id,
      scope,
      principal: caller.key,
      handle: undefined as unknown as CoreSessionHandle,
      holders: new Set([caller.edge]),
      lastEdge: caller.edge,
      lastSeen: Date.now(),
      inflight: 0,
    };
    s.handle = this.o.core.openSession({
      id,
      principal: caller.key,
      // The signed Principal in full: tenancy and policy decide what this session sees and may use.
      identity: caller.principal,
      scope,
      unrelated: { send: (m) => this.toEdge(s, m) },
      ...(record && { restore: record }),
    });
    this.live.set(id, s);
    if (record) this.o.log.debug({ sessionId: id, scope }, 'session continued from the session store');
    return s;
  }

  /** An unrelated message: to the edge that last used the session, else any other edge holding it. */
  private toEdge(s: CoreSide, message: JsonRpcMessage): void {
    const line = `${JSON.stringify({ s: s.id, m: message })}\n`;
    const first = this.edges.get(s.lastEdge);
    if (first && !first.destroyed) return void first.write(line);
    for (const e of s.holders) {
      const res = this.edges.get(e);
      if (res && !res.destroyed) return void res.write(line);
    }
    this.o.log.debug({ sessionId: s.id }, 'no edge connected for an unrelated message; dropped');
  }

  private async expireIdle(): Promise<void> {
    const limit = Date.now() - this.o.idleTimeoutMs;
    for (const s of [...this.live.values()]) {
      if (s.inflight > 0 || s.lastSeen >= limit) continue;
      this.live.delete(s.id);
      this.o.identity?.unbind(s.id);
      // The shared record decides whether the session still exists; here it is only let go of.
      await s.handle
        .detach()
        .catch((err: unknown) => this.o.log.warn({ err, sessionId: s.id }, 'detach failed'));
    }
  }
}

type Body = Record<string, unknown>;

function storeChangeOf(body: Body): StoreChange {
  if (typeof body.virtualServer === 'string' && /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/.test(body.virtualServer))
    return { virtualServer: body.virtualServer };
  if (body.policies === true) return { policies: true };
  throw new GatewayError(
    'GW_INVALID_REQUEST',
    'Bad Request: sync needs {"virtualServer": "<name>"} or {"policies": true}',
  );
}

function scopeOf(body: Body): string {
  if (typeof body.scope !== 'string')
    throw new GatewayError('GW_INVALID_REQUEST', 'Bad Request: "scope" is required');
  return body.scope;
}

/**
 * The answer to one forwarded request: NDJSON frames, written as they come. A response that nothing went
 * before is one write with a length (the common case, and the cheapest for the edge to read).
 */
class NdjsonAnswer implements MessageSink {
  private started = false;

  constructor(
    private readonly res: ServerResponse,
    /** Where related messages go when the edge that asked is gone (another edge reaches the client). */
    private readonly fallback: MessageSink,
  ) {}

  send(message: JsonRpcMessage): void {
    if (this.res.destroyed) return this.fallback.send(message);
    if (!this.started) {
      this.started = true;
      this.res.writeHead(200, { 'content-type': NDJSON });
    }
    this.res.write(`${JSON.stringify({ m: message })}\n`);
  }

  finish(response: JsonRpcResponse | undefined): void {
    if (this.res.destroyed) return;
    const line = response === undefined ? '{"c":1}\n' : `${JSON.stringify({ r: response })}\n`;
    if (this.started) return void this.res.end(line);
    this.res.writeHead(200, { 'content-type': NDJSON, 'content-length': Buffer.byteLength(line) }).end(line);
  }
}

/** The request's JSON object body (read with stream events: async iteration cost more per request). */
function readJson(req: IncomingMessage, limit: number): Promise<Body> {
  return new Promise((resolve, reject) => {
    let chunks: Buffer[] | undefined;
    let first: Buffer | undefined;
    let size = 0;
    let ended = false;
    const onData = (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        req.off('data', onData).off('end', onEnd);
        // The rest is read and dropped, so that the answer can still be written.
        req.resume();
        return reject(new GatewayError('GW_BODY_TOO_LARGE'));
      }
      if (first === undefined) first = c;
      else (chunks ??= [first]).push(c);
    };
    const onEnd = () => {
      ended = true;
      let v: unknown;
      try {
        const all = chunks ? Buffer.concat(chunks) : first;
        v = JSON.parse(all ? all.toString('utf8') : '');
      } catch {
        return reject(new GatewayError('GW_PARSE_ERROR'));
      }
      if (typeof v !== 'object' || v === null || Array.isArray(v))
        return reject(new GatewayError('GW_INVALID_REQUEST'));
      resolve(v as Body);
    };
    const onError = (err: Error) => reject(err);
    // Cut off before its end ('close' follows every request: an Error only when it is needed).
    const onClose = () => {
      if (!ended) reject(new Error('the request was cut off before its end'));
    };
    req.on('data', onData).on('end', onEnd).on('error', onError).once('close', onClose);
  });
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res
    .writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
    .end(text);
}

function fail(res: ServerResponse, err: unknown, status?: number): void {
  if (res.headersSent) return void res.destroy();
  const ge = err instanceof GatewayError ? err : new GatewayError('GW_INTERNAL');
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  // Said in a header too, so that the edge moves on without reading the body.
  if (ge.code === 'GW_DR_FENCED') headers['x-mcpgw-refused'] = 'dr-fenced';
  if (ge.httpStatus === 401) headers['www-authenticate'] = 'Bearer realm="mcpgw-core"';
  const text = JSON.stringify(toRpcError(null, ge));
  res.writeHead(status ?? ge.httpStatus, headers).end(text);
}
