/**
 * The edge's HTTP application (never listens by itself): MCP endpoints, health and readiness. Cheap
 * checks (Host and Origin) run in onRequest, before any body is read.
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type ServerOptions as HttpsOptions } from 'node:https';
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify';
import { GatewayError, toRpcError } from '../../shared/errors.js';
import type { GatewayConfig } from '../../shared/config/schema.js';
import type { Logger } from '../../shared/log.js';
import type { CoreService } from '../../shared/ports/core-service.js';
import type { EventStore } from '../../shared/ports/event-store.js';
import type { ReplicaChannel } from '../../shared/ports/replica-channel.js';
import type { SessionStore } from '../../shared/ports/session-store.js';
import type { GatewayMetrics } from '../../shared/telemetry/metrics.js';
import { Topology } from '../../shared/telemetry/topology.js';
import type { UsageAnalytics } from '../../shared/telemetry/usage.js';
import { SourceGuard } from '../security/source-guard.js';
import { registerAdminRoutes } from './admin.js';
import type { Principal } from '../../shared/identity/principal.js';
import type { Quotas } from '../quota/quotas.js';
import { LegacySseEndpoint } from './legacy-sse.js';
import { McpEndpoint } from './mcp-endpoint.js';
import { hostAllowed, originAllowed } from './origin.js';
import type { ApiKeyStore } from '../../shared/ports/api-key-store.js';
import { Authenticator } from '../auth/authenticate.js';
import { requestPrincipal } from '../auth/request-principal.js';
import { registerAuthentication } from '../auth/stage.js';
import { corsHook } from './cors.js';
import { hostRouter } from './host-routing.js';
import { endSseStreams, openSseStreams } from './sse.js';
import { isDraining, type DrainResult } from '../../shared/lifecycle/drain.js';
import { InflightRequests } from '../../shared/lifecycle/inflight.js';
import { serverId } from '../../shared/mcp/server-versions.js';
import { unknownScope, VIRTUAL_SCOPE_PREFIX } from '../../shared/mcp/scopes.js';

export interface EdgeAppOptions {
  config: GatewayConfig;
  core: CoreService;
  sessions: SessionStore;
  /** SSE event logs, so that clients can resume dropped streams with Last-Event-ID. */
  events: EventStore;
  /** Other replicas serving the same sessions (absent on a single node). */
  replicas?: ReplicaChannel;
  log: Logger;
  /** API key records (auth mode api-key). */
  apiKeys?: ApiKeyStore;
  /** Prometheus metrics of this node (absent: none recorded, no /metrics). */
  metrics?: GatewayMetrics;
  /** Per-process usage analytics behind /admin/usage and the dashboard. */
  usage?: UsageAnalytics;
  /** Sections of /admin/topology; the app adds `node` and `servers`, other modules the rest. */
  topology?: Topology;
  /** Serve HTTPS with these options (shared/tls/server-tls.ts builds them from `listen.tls`). */
  https?: HttpsOptions;
  /** Quotas and admission control (absent when `quotas.enabled` is false). */
  quotas?: Quotas;
  /**
   * The core is this process's own (a single node without federated routing): an in-session call's caller
   * quota is decided with its pool call, one store round trip (edge/quota/deferred-caller.ts).
   */
  deferCallerQuotas?: boolean;
  /**
   * Who is calling. Default: the Principal an authentication hook put on the request
   * (`requestPrincipal`), else ANONYMOUS. Tests pass their own.
   */
  callerOf?: (req: FastifyRequest) => Principal;
}

export interface EdgeApp {
  app: FastifyInstance;
  endpoint: McpEndpoint;
  /** Source-address security: the auth stage reports failures and successes to it. */
  security: SourceGuard;
  topology: Topology;
  /**
   * The drain after the drain delay: stops accepting connections, ends the long-lived SSE streams with a
   * `retry:` hint (clients reconnect elsewhere and resume), and waits until the requests in flight are
   * done, at most `timeoutMs` (then the streams still open, POST answers too, get the same hint).
   */
  drain(timeoutMs: number): Promise<DrainResult>;
}

export function buildEdgeApp(o: EdgeAppOptions): EdgeApp {
  const routing = o.config.http.hostRouting
    ? hostRouter(o.config.http.hostRouting.pattern, [
        ...new Set(o.config.servers.flatMap((s) => [serverId(s), s.name])),
      ])
    : undefined;
  const app = Fastify({
    logger: false,
    bodyLimit: o.config.http.maxBodyBytes,
    // Node answers 431 itself beyond this, before any of the gateway's code runs.
    http: { maxHeaderSize: o.config.http.maxHeaderBytes },
    clientErrorHandler: (err: Error & { code?: string }, socket: import('node:net').Socket) => {
      if (socket.destroyed || !socket.writable || err.code === 'ECONNRESET') return void socket.destroy();
      const ge = new GatewayError(
        err.code === 'HPE_HEADER_OVERFLOW' ? 'GW_HEADERS_TOO_LARGE' : 'GW_INVALID_REQUEST',
      );
      const body = JSON.stringify(toRpcError(null, ge));
      socket.end(
        `HTTP/1.1 ${ge.httpStatus} ${ge.httpStatus === 431 ? 'Request Header Fields Too Large' : 'Bad Request'}\r\n` +
          `content-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
      );
    },
    ...(routing
      ? {
          rewriteUrl: (req: import('node:http').IncomingMessage) =>
            routing.rewrite(req.headers.host, req.url ?? '/'),
        }
      : {}),
    exposeHeadRoutes: false,
    forceCloseConnections: true,
    return503OnClosing: true,
    // Fastify's own https option changes the instance's type everywhere; a server factory keeps one type.
    ...(o.https && {
      serverFactory: (handler: (req: IncomingMessage, res: ServerResponse) => void) =>
        createHttpsServer(o.https!, handler) as unknown as Server,
    }),
  });
  // Before anything can answer: every request counts as in flight until its response is done (a drain
  // waits for them). Draining, every answer closes its connection, so that a load balancer's pooled
  // connections to this node are gone before it stops listening.
  // (The hooks that decide at once take `done` rather than being async: no promise per request and hook.)
  const inflight = new InflightRequests();
  app.addHook('onRequest', (_req, reply, done) => {
    inflight.track(reply.raw);
    if (isDraining()) reply.header('connection', 'close');
    done();
  });
  const callerOf = o.callerOf ?? ((req: FastifyRequest) => requestPrincipal(req.raw));
  const endpoint = new McpEndpoint({ ...o, callerOf });

  // Every body reaches the endpoint as raw bytes: it checks Content-Type and parses JSON itself, so each
  // failure gets the MCP answer (415, -32700) rather than a generic one.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));

  app.setErrorHandler((err: Error & { statusCode?: number; code?: string }, _req, reply) => {
    const code =
      err.code === 'FST_ERR_CTP_BODY_TOO_LARGE'
        ? 'GW_BODY_TOO_LARGE'
        : err.statusCode && err.statusCode < 500
          ? 'GW_INVALID_REQUEST'
          : 'GW_INTERNAL';
    if (code === 'GW_INTERNAL') o.log.error({ err }, 'unhandled error in HTTP layer');
    const ge = new GatewayError(
      code,
      code === 'GW_BODY_TOO_LARGE'
        ? `Payload Too Large: the body exceeds ${o.config.http.maxBodyBytes} bytes`
        : undefined,
    );
    reply
      .code(ge.httpStatus)
      .header('content-type', 'application/json')
      .send(JSON.stringify(toRpcError(null, ge)));
  });

  // First of all: the source address (IP deny/allow lists, sources blocked after repeated auth failures).
  const sec = o.config.security;
  const security = new SourceGuard({ ...sec, log: o.log, metrics: o.metrics });
  app.addHook('onRequest', (req, reply, done) => {
    const verdict = security.check(req.socket.remoteAddress ?? '');
    if (verdict.ok) return done();
    const ge = new GatewayError(verdict.code);
    if (verdict.code === 'GW_SOURCE_BLOCKED') reply.header('retry-after', String(verdict.retryAfterS));
    // Answered here: `done` is not called, so nothing else runs.
    reply
      .code(ge.httpStatus)
      .header('content-type', 'application/json')
      .send(JSON.stringify(toRpcError(null, ge)));
  });

  const mcpPaths = ['/mcp', '/servers/:name/mcp', '/v/:virtual/mcp'];
  // Every MCP transport, the legacy HTTP+SSE pair (2024-11-05) included, is a DNS-rebinding target; so is
  // the admin API and its dashboard, which answer loopback clients without a token.
  const guardedPrefixes = ['/mcp', '/sse', '/message', '/servers/', '/v/', '/admin/', '/dashboard'];
  app.addHook('onRequest', (req, reply, done) => {
    if (!guardedPrefixes.some((p) => req.url.startsWith(p))) return done();
    const { allowedHosts, allowedOrigins, cors } = o.config.http;
    const code = !(hostAllowed(req.headers.host, allowedHosts) || routing?.matches(req.headers.host))
      ? 'GW_FORBIDDEN_HOST'
      : !(
            originAllowed(req.headers.origin, allowedOrigins) ||
            cors.origins.includes(req.headers.origin ?? '')
          )
        ? 'GW_FORBIDDEN_ORIGIN'
        : undefined;
    if (!code) return done();
    const ge = new GatewayError(code);
    reply
      .code(403)
      .header('content-type', 'application/json')
      .send(JSON.stringify(toRpcError(null, ge)));
  });

  // The request policies after Host/Origin, in order:
  // cors: answers preflights and marks responses readable before anything can refuse them, so that a
  // browser client can read a 401's WWW-Authenticate.
  if (o.config.http.cors.origins.length > 0)
    app.addHook('onRequest', corsHook(o.config.http.cors.origins, o.config.http.cors.maxAgeSec));
  // authenticate: who is calling, before the body is read; every later stage reads the Principal.
  registerAuthentication(app, {
    config: o.config,
    authenticator: new Authenticator(o.config, { apiKeys: o.apiKeys }),
    guardedPrefixes,
    log: o.log,
    sources: security,
  });

  // quotas: after authentication (the caller's dimensions need the Principal), before the body is read.
  o.quotas?.installHttp(app, callerOf, { deferCallers: o.deferCallerQuotas === true });

  // A server of another tenant, or one the policy hides, does not exist for this caller: 404.
  const scopeOf = (req: import('fastify').FastifyRequest): string | undefined => {
    const { name, virtual } = req.params as { name?: string; virtual?: string };
    // A virtual server (docs/registry.md): another tenant's does not exist for this caller either.
    if (virtual !== undefined) {
      const scope = `${VIRTUAL_SCOPE_PREFIX}${virtual}`;
      return o.core.hasScope(scope, requestPrincipal(req.raw)) ? scope : undefined;
    }
    if (name === undefined) return 'aggregate';
    return o.core.hasScope(name, requestPrincipal(req.raw)) && name !== 'aggregate' ? name : undefined;
  };
  // The refusal of a scope the caller may not use: the same one the core gives (shared/mcp/scopes.ts).
  const unknownServer = (reply: import('fastify').FastifyReply, params: unknown) => {
    const { name, virtual } = params as { name?: string; virtual?: string };
    const ge = unknownScope(virtual !== undefined ? `${VIRTUAL_SCOPE_PREFIX}${virtual}` : String(name));
    return reply
      .code(ge.httpStatus)
      .header('content-type', 'application/json')
      .send(JSON.stringify(toRpcError(null, ge)));
  };

  for (const url of mcpPaths) {
    app.post(url, async (req, reply) => {
      const scope = scopeOf(req);
      if (!scope) return unknownServer(reply, req.params);
      await endpoint.post(req, reply, scope);
      // Fastify waits for an answer sent through an async onSend hook (the deferred quota decision's)
      // only when the handler returns the reply; else it sends an empty one of its own meanwhile.
      return reply;
    });
    app.get(url, async (req, reply) => {
      const scope = scopeOf(req);
      return scope ? endpoint.get(req, reply, scope) : unknownServer(reply, req.params);
    });
    app.delete(url, async (req, reply) => {
      const scope = scopeOf(req);
      return scope ? endpoint.delete(req, reply, scope) : unknownServer(reply, req.params);
    });
    app.route({
      method: ['PUT', 'PATCH', 'OPTIONS', 'HEAD'],
      url,
      handler: async (_req, reply) => {
        const ge = new GatewayError('GW_METHOD_NOT_ALLOWED');
        return reply
          .code(405)
          .header('allow', 'GET, POST, DELETE')
          .header('content-type', 'application/json')
          .send(JSON.stringify(toRpcError(null, ge)));
      },
    });
  }

  // Legacy HTTP+SSE (2024-11-05): GET opens the session's one stream, POST delivers a message to it.
  const legacy = new LegacySseEndpoint(o);
  for (const [stream, message] of [
    ['/sse', '/message'],
    ['/servers/:name/sse', '/servers/:name/message'],
  ] as const) {
    app.get(stream, async (req, reply) => {
      const scope = scopeOf(req);
      return scope ? legacy.open(req, reply, scope) : unknownServer(reply, req.params);
    });
    app.post(message, async (req, reply) => {
      const scope = scopeOf(req);
      return scope ? legacy.post(req, reply, scope) : unknownServer(reply, req.params);
    });
  }
  app.addHook('onClose', async () => legacy.close());

  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_req, reply) => {
    const r = o.core.readiness();
    const ready = r.ready && !isDraining();
    return reply.code(ready ? 200 : 503).send({
      status: isDraining() ? 'draining' : r.ready ? 'ready' : 'starting',
      servers: r.servers,
      ...(r.pools && { pools: r.pools }),
      sessions: endpoint.sessionCount + legacy.sessionCount,
    });
  });

  const topology = o.topology ?? new Topology();
  const servers = () => {
    const r = o.core.readiness();
    return o.config.servers
      .filter((s) => s.enabled)
      .map((s) => ({ name: s.name, transport: s.transport, ...r.servers[s.name] }));
  };
  topology.set('node', () => ({
    role: o.config.role,
    region: o.config.region,
    replica: o.replicas?.replicaId,
  }));
  topology.set('servers', servers);
  // Single-node defaults; the federation and the edge/core split replace these sections.
  topology.set('regions', () => [{ name: o.config.region, local: true, status: 'up' }]);
  topology.set('edges', () => [{ region: o.config.region, replica: o.replicas?.replicaId ?? 'local' }]);
  topology.set('cores', () => [{ region: o.config.region, replica: o.replicas?.replicaId ?? 'local' }]);
  topology.set('replicas', () => []);
  const sessionCount = () => endpoint.sessionCount + legacy.sessionCount;
  if (o.metrics) {
    const metrics = o.metrics;
    metrics.onScrape(() => {
      metrics.sessions.set({ transport: 'streamable-http' }, endpoint.sessionCount);
      metrics.sessions.set({ transport: 'sse' }, legacy.sessionCount);
      metrics.sseStreams.set(openSseStreams());
      let stdio = 0;
      for (const s of servers()) {
        const up = s.state === 'ready';
        metrics.backendUp.set({ server: s.name, transport: s.transport }, up ? 1 : 0);
        if (up && s.transport === 'stdio') stdio++;
        // Each replica's breaker, as the pool reports it (replicas are configured: bounded labels).
        const replicas = (s.pool?.replicas ?? []) as { id?: unknown; breaker?: unknown }[];
        for (const r of replicas) {
          const state = r.breaker === 'open' ? 'open' : r.breaker === 'closed' ? 'closed' : 'half_open';
          metrics.setBreakerState(s.name, String(r.id), state);
        }
      }
      metrics.stdioProcesses.set(stdio);
    });
  }
  registerAdminRoutes(app, {
    config: o.config,
    log: o.log,
    metrics: o.metrics,
    usage: o.usage,
    topology,
    readiness: () => o.core.readiness(),
    sessionCount,
  });

  app.addHook('onClose', async () => endpoint.close());
  const retryMs = o.config.sessions.sseRetryMs;
  const drain = async (timeoutMs: number): Promise<DrainResult> => {
    // Stops accepting; idle keep-alive connections are closed, those with a request finish it.
    if (app.server.listening) app.server.close();
    const streams = endSseStreams(inflight, retryMs, 'long-lived');
    const idle = await inflight.idle(timeoutMs);
    const left = inflight.size;
    if (!idle) endSseStreams(inflight, retryMs, 'all');
    return { idle, inflight: left, streams };
  };
  return { app, endpoint, security, topology, drain };
}
