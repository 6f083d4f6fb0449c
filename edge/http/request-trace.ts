/**
 * The root span of a client's HTTP request (`mcpgw.request`, kind SERVER), child of the trace context the
 * client sent (a `traceparent` header, else `params._meta.traceparent`). Made on first use: an auth or
 * quota stage in onRequest may ask for it before the body is read (the header alone then decides the
 * parent); the endpoint asks again once it has parsed the message. It ends when the response closes.
 */
import type { IncomingMessage } from 'node:http';
import type { FastifyReply, FastifyRequest } from 'fastify';
import {
  endStage,
  incomingContext,
  sampledParent,
  SpanKind,
  STAGE,
  startStage,
  tracingActive,
  type StageSpan,
} from '../../shared/telemetry/tracing.js';

const spans = new WeakMap<IncomingMessage, StageSpan>();
/** Requests decided not sampled: asked again, the answer stays the same. */
const unsampled = new WeakSet<IncomingMessage>();

/**
 * The request's root stage; undefined when tracing is off or the request is not sampled (decided here,
 * once: `sampledParent`). `params` is the parsed message's, if known.
 */
export function requestStage(
  req: FastifyRequest,
  reply: FastifyReply,
  params?: unknown,
): StageSpan | undefined {
  if (!tracingActive()) return undefined;
  let stage = spans.get(req.raw);
  if (stage || unsampled.has(req.raw)) return stage;
  const parent = sampledParent(incomingContext(req.headers, params));
  if (!parent) {
    unsampled.add(req.raw);
    return undefined;
  }
  stage = startStage(STAGE.request, parent, {
    kind: SpanKind.SERVER,
    attributes: () => ({
      'http.request.method': req.method,
      'http.route': req.routeOptions.url ?? req.url,
      'mcpgw.request.id': req.id,
    }),
  })!;
  spans.set(req.raw, stage);
  const s = stage;
  reply.raw.once('close', () => {
    const status = reply.raw.statusCode;
    if (s.span.isRecording()) s.span.setAttribute('http.response.status_code', status);
    endStage(s, status >= 500 ? { message: `HTTP ${status}` } : undefined);
  });
  return stage;
}
