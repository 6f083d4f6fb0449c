/**
 * The edge's HTTP application (never listens by itself): MCP endpoints, health and readiness. Cheap
 * checks (Host and Origin) run in onRequest, before any body is read.
 */
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify';
import { GatewayError, toRpcError } from '../../shared/errors.js';
import type { GatewayConfig } from '../../shared/config/schema.js';
import type { Logger } from '../../shared/log.js';
import type { CoreService } from '../../shared/ports/core-service.js';
import type { EventStore } from '../../shared/ports/event-store.js';
import type { ReplicaChannel } from '../../shared/ports/replica-channel.js';
import type { SessionStore } from '../../shared/ports/session-store.js';
import { ANONYMOUS, type Principal } from '../../shared/identity/principal.js';
import type { Quotas } from '../quota/quotas.js';
import { LegacySseEndpoint } from './legacy-sse.js';
import { McpEndpoint } from './mcp-endpoint.js';
import { hostAllowed, originAllowed } from './origin.js';

export interface EdgeAppOptions {
  config: GatewayConfig;
  core: CoreService;
  sessions: SessionStore;
  /** SSE event logs, so that clients can resume dropped streams with Last-Event-ID. */
  events: EventStore;
  /** Other replicas serving the same sessions (absent on a single node). */
  replicas?: ReplicaChannel;
  log: Logger;
  /** Quotas and admission control (absent when `quotas.enabled` is false). */
  quotas?: Quotas;
  /**
   * Who is calling. Default: the Principal an authentication hook put on the request
   * (`request.principal`), else ANONYMOUS. Tests pass their own.
   */
  callerOf?: (req: FastifyRequest) => Principal;
}

export interface EdgeApp {
  app: FastifyInstance;
  endpoint: McpEndpoint;
}

export function buildEdgeApp(o: EdgeAppOptions): EdgeApp {
  const app = Fastify({
    logger: false,
    bodyLimit: o.config.http.maxBodyBytes,
    exposeHeadRoutes: false,
    forceCloseConnections: true,
    return503OnClosing: true,
  });
  const callerOf =
    o.callerOf ?? ((req: FastifyRequest) => (req as { principal?: Principal }).principal ?? ANONYMOUS);
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

  const mcpPaths = ['/mcp', '/servers/:name/mcp'];
  // Every MCP transport, the legacy HTTP+SSE pair (2024-11-05) included, is a DNS-rebinding target.
  const guardedPrefixes = ['/mcp', '/sse', '/message', '/servers/'];
  app.addHook('onRequest', async (req, reply) => {
    if (!guardedPrefixes.some((p) => req.url.startsWith(p))) return;
    const { allowedHosts, allowedOrigins } = o.config.http;
    const code = !hostAllowed(req.headers.host, allowedHosts)
      ? 'GW_FORBIDDEN_HOST'
      : !originAllowed(req.headers.origin, allowedOrigins)
        ? 'GW_FORBIDDEN_ORIGIN'
        : undefined;
    if (!code) return;
    const ge = new GatewayError(code);
    return reply
      .code(403)
      .header('content-type', 'application/json')
      .send(JSON.stringify(toRpcError(null, ge)));
  });

  // Quotas after Host/Origin (a forbidden request costs no quota) and, once authentication exists,
  // after it: the caller's dimensions need the Principal.
  o.quotas?.installHttp(app, callerOf);

  const scopeOf = (params: unknown): string | undefined => {
    const name = (params as { name?: string }).name;
    if (name === undefined) return 'aggregate';
    return o.core.hasScope(name) && name !== 'aggregate' ? name : undefined;
  };
  const unknownServer = (reply: import('fastify').FastifyReply, params: unknown) => {
    const ge = new GatewayError('GW_UNKNOWN_SERVER', `Unknown server: ${(params as { name?: string }).name}`);
    return reply
      .code(404)
      .header('content-type', 'application/json')
      .send(JSON.stringify(toRpcError(null, ge)));
  };

  for (const url of mcpPaths) {
    app.post(url, async (req, reply) => {
      const scope = scopeOf(req.params);
      return scope ? endpoint.post(req, reply, scope) : unknownServer(reply, req.params);
    });
    app.get(url, async (req, reply) => {
      const scope = scopeOf(req.params);
      return scope ? endpoint.get(req, reply, scope) : unknownServer(reply, req.params);
    });
    app.delete(url, async (req, reply) => {
      const scope = scopeOf(req.params);
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
      const scope = scopeOf(req.params);
      return scope ? legacy.open(req, reply, scope) : unknownServer(reply, req.params);
    });
    app.post(message, async (req, reply) => {
      const scope = scopeOf(req.params);
      return scope ? legacy.post(req, reply, scope) : unknownServer(reply, req.params);
    });
  }
  app.addHook('onClose', async () => legacy.close());

  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_req, reply) => {
    const r = o.core.readiness();
    return reply.code(r.ready ? 200 : 503).send({
      status: r.ready ? 'ready' : 'starting',
      servers: r.servers,
      sessions: endpoint.sessionCount + legacy.sessionCount,
    });
  });

  app.addHook('onClose', async () => endpoint.close());
  return { app, endpoint };
}
