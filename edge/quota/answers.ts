/**
 * What a quota decision tells the caller: the IETF RateLimit-Policy / RateLimit fields
 * (draft-ietf-httpapi-ratelimit-headers, structured-field lists, one item per dimension), Retry-After,
 * and for a refusal the GatewayError whose data names the dimension, its limit and window, and when to
 * retry.
 */
import type { ServerResponse } from 'node:http';
import type { FastifyReply } from 'fastify';
import { GatewayError, toRpcError } from '../../shared/errors.js';
import type { DimensionReport, Verdict } from './quota-guard.js';

const seconds = (ms: number) => Math.max(0, Math.ceil(ms / 1000));

/**
 * `RateLimit-Policy: "user";q=1000;w=3600, ...` and `RateLimit: "user";r=998;t=4, ...`. `t` is the
 * seconds until the next unit is available for a refused dimension, else until the bucket is full again.
 */
export function rateLimitHeaders(reports: readonly DimensionReport[]): Record<string, string> {
  if (reports.length === 0) return {};
  const policy = reports
    .map((r) => `"${r.dimension.name}";q=${r.dimension.rate.limit};w=${seconds(r.dimension.rate.windowMs)}`)
    .join(', ');
  const state = reports
    .map((r) => `"${r.dimension.name}";r=${r.remaining};t=${seconds(r.allowed ? r.resetMs : r.retryAfterMs)}`)
    .join(', ');
  return { 'ratelimit-policy': policy, ratelimit: state };
}

/** Puts the RateLimit fields on the raw response, so that they survive a hijacked reply. */
export function setRateLimitHeaders(res: ServerResponse, reports: readonly DimensionReport[]): void {
  for (const [k, val] of Object.entries(rateLimitHeaders(reports))) res.setHeader(k, val);
}

/** The body of a refusal at the HTTP layer: a JSON-RPC error without an id (the body may be unread). */
export function refusalBody(ge: GatewayError): string {
  return JSON.stringify(toRpcError(null, ge));
}

/** Answers with a refusal at the HTTP layer: its status, `headers`, and the JSON-RPC error. */
export function sendRefusal(
  reply: FastifyReply,
  ge: GatewayError,
  headers: Record<string, string>,
): FastifyReply {
  return reply
    .code(ge.httpStatus)
    .headers({ ...headers, 'content-type': 'application/json' })
    .send(refusalBody(ge));
}

/** The headers of a refusal: RateLimit fields plus Retry-After (whole seconds, at least 1). */
export function refusalHeaders(
  v: Extract<Verdict, { allowed: false }>,
  retryAfterMs: number,
): Record<string, string> {
  return {
    ...rateLimitHeaders(v.reports),
    'retry-after': String(Math.max(1, seconds(retryAfterMs))),
  };
}

/** The error a refusal gives, with `data` a client can act on; `retryAfterMs` is 0 when unknown. */
export function refusalError(
  v: Extract<Verdict, { allowed: false }>,
  context: Record<string, unknown> = {},
): { error: GatewayError; retryAfterMs: number } {
  const r = v.refusal;
  if (r.kind === 'rate') {
    const d = r.report.dimension;
    const retryAfterMs = r.report.retryAfterMs;
    return {
      retryAfterMs,
      error: new GatewayError(
        d.code,
        `${messageOf(d.name)}: ${d.rate.limit} per ${d.rate.windowMs} ms; retry in ${retryAfterMs} ms`,
        { dimension: d.name, limit: d.rate.limit, windowMs: d.rate.windowMs, retryAfterMs, ...context },
      ),
    };
  }
  if (r.kind === 'concurrency') {
    // A slot frees when any in-flight request ends; one second is an honest hint, not a promise.
    const retryAfterMs = 1000;
    return {
      retryAfterMs,
      error: new GatewayError(
        'GW_QUOTA_CONCURRENCY',
        `Too Many Requests: ${r.inUse} requests of this user in flight (limit ${r.rule.limit})`,
        { dimension: 'concurrency', limit: r.rule.limit, inFlight: r.inUse, retryAfterMs, ...context },
      ),
    };
  }
  const retryAfterMs = 1000;
  return {
    retryAfterMs,
    error: new GatewayError('GW_QUOTA_UNAVAILABLE', undefined, {
      dimension: r.dimension,
      retryAfterMs,
      ...context,
    }),
  };
}

function messageOf(name: string): string {
  switch (name) {
    case 'user':
      return 'Too Many Requests: the per-user quota is spent';
    case 'clientApp':
      return 'Too Many Requests: the client application quota is spent';
    case 'tenant':
      return 'Too Many Requests: the tenant quota is spent';
    case 'tool':
      return 'Quota exceeded for this tool';
    case 'server':
      return 'Quota exceeded for this backend server';
    default:
      return 'Service Unavailable: the gateway-wide request budget is spent';
  }
}
