/**
 * The HTTP layer's share of quotas, in Fastify's onRequest (before any body is read):
 * 1. connections per source address: beyond the limit, 429 GW_TOO_MANY_CONNECTIONS and the connection
 *    is closed;
 * 2. on every POST to an MCP endpoint, the caller's own dimensions (user, client app, tenant, global) and
 *    one of the user's concurrency slots, one store decision: a refusal is 429 (503 for global or an
 *    unreachable store under `closed`) with Retry-After and the RateLimit fields; an admitted request's
 *    answer carries the RateLimit fields too, and its slot is given back when the answer ends.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { GatewayError } from '../../shared/errors.js';
import type { Principal } from '../../shared/identity/principal.js';
import type { Logger } from '../../shared/log.js';
import { refusalBody, refusalError, refusalHeaders, sendRefusal, setRateLimitHeaders } from './answers.js';
import type { QuotaPolicy } from './policy.js';
import type { QuotaGuard } from './quota-guard.js';
import type { DeferredCallerQuotas } from './deferred-caller.js';

/** POSTs to these carry MCP messages (Streamable HTTP, per-server and virtual endpoints, legacy /message). */
const COUNTED_PREFIXES = ['/mcp', '/servers/', '/v/', '/message'];
const GUARDED_PREFIXES = ['/mcp', '/sse', '/message', '/servers/', '/v/'];
/** The Streamable HTTP routes, whose in-session POSTs may leave the caller decision to the pool. */
const STREAMABLE_ROUTES = new Set(['/mcp', '/servers/:name/mcp', '/v/:virtual/mcp']);

export interface HttpAdmissionOptions {
  guard: QuotaGuard;
  policy: QuotaPolicy;
  /** Who is calling (the authentication hook's result; ANONYMOUS with auth off). */
  callerOf: (req: FastifyRequest) => Principal;
  /** Told every admitted caller, so that pipeline stages can find its tenant and roles. */
  remember: (p: Principal) => void;
  connectionsPerIp: number | false;
  concurrency: { mode: 'reject' | 'queue'; queueTimeoutMs: number };
  /**
   * A single node's in-session POSTs (`/mcp`, `/servers/{name}/mcp`, reject mode): the caller decision is
   * left here, to be made with the request's pool call (deferred-caller.ts).
   */
  deferred?: DeferredCallerQuotas;
  log: Logger;
}

export function installHttpAdmission(app: FastifyInstance, o: HttpAdmissionOptions): void {
  const perIp = new Map<string, number>();
  if (o.connectionsPerIp !== false)
    app.server.on('connection', (socket) => {
      const ip = socket.remoteAddress ?? 'unknown';
      perIp.set(ip, (perIp.get(ip) ?? 0) + 1);
      socket.once('close', () => {
        const n = (perIp.get(ip) ?? 1) - 1;
        if (n <= 0) perIp.delete(ip);
        else perIp.set(ip, n);
      });
    });

  app.addHook('onRequest', async (req, reply) => {
    if (!GUARDED_PREFIXES.some((p) => req.url.startsWith(p))) return;
    const limit = o.connectionsPerIp;
    if (limit !== false && (perIp.get(req.socket.remoteAddress ?? 'unknown') ?? 0) > limit) {
      const ge = new GatewayError(
        'GW_TOO_MANY_CONNECTIONS',
        `Too Many Requests: more than ${limit} connections from this address`,
        { limit, retryAfterMs: 1000 },
      );
      return sendRefusal(reply, ge, { 'retry-after': '1', connection: 'close' });
    }
    if (req.method !== 'POST' || !COUNTED_PREFIXES.some((p) => req.url.startsWith(p))) return;

    const caller = o.callerOf(req);
    const dims = o.policy.callerDimensions(caller);
    const conc = o.policy.concurrency(caller);
    if (
      o.deferred &&
      req.headers['mcp-session-id'] !== undefined &&
      !(conc && o.concurrency.mode === 'queue') &&
      STREAMABLE_ROUTES.has(req.routeOptions.url ?? '')
    ) {
      o.remember(caller);
      o.deferred.defer(req.raw, reply.raw, { caller, dims, conc });
      return;
    }
    const v =
      conc && o.concurrency.mode === 'queue'
        ? await o.guard.decideQueued(dims, conc, o.concurrency.queueTimeoutMs)
        : await o.guard.decide(dims, conc);
    if (!v) {
      const ge = new GatewayError(
        'GW_QUEUE_TIMEOUT',
        `Timed out after ${o.concurrency.queueTimeoutMs} ms waiting for one of this user's ${conc!.limit} request slots`,
        { dimension: 'concurrency', limit: conc!.limit, queueTimeoutMs: o.concurrency.queueTimeoutMs },
      );
      return sendRefusal(reply, ge, { 'retry-after': '1' });
    }
    if (!v.allowed) {
      const { error, retryAfterMs } = refusalError(v);
      return sendRefusal(reply, error, refusalHeaders(v, retryAfterMs));
    }
    o.remember(caller);
    setRateLimitHeaders(reply.raw, v.reports);
    const lease = v.lease;
    if (lease) reply.raw.once('close', () => o.guard.release(lease));
  });

  // A deferred decision the endpoint did not make (a notification's 202, a refused message): made here,
  // before the answer leaves. Answers the endpoint writes itself (hijacked) settle there.
  const deferred = o.deferred;
  if (deferred)
    app.addHook('onSend', async (req, reply, payload) => {
      if (!deferred.pending(req.raw)) return payload;
      const refusal = await deferred.settle(req.raw);
      if (!refusal) return payload;
      reply
        .code(refusal.error.httpStatus)
        .headers({ ...refusal.headers, 'content-type': 'application/json' });
      return refusalBody(refusal.error);
    });
}
