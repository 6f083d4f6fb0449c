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
  unsampledTraceId,
  type StageSpan,
} from '../../shared/telemetry/tracing.js';
import { ObjectSlot } from '../../shared/object-slot.js';

/**
 * Each request's root stage, or once it was decided not sampled its trace id (asked again, the answer
 * stays).
 */
const spans = new ObjectSlot<IncomingMessage, StageSpan | string>('mcpgw.requestTrace');

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
  const known = spans.get(req.raw);
  if (known !== undefined) return typeof known === 'string' ? undefined : known;
  const incoming = incomingContext(req.headers, params);
  const parent = sampledParent(incoming);
  if (!parent) {
    spans.set(req.raw, unsampledTraceId(incoming));
    return undefined;
  }
  const stage = startStage(STAGE.request, parent, {
    kind: SpanKind.SERVER,
    attributes: () => ({
      'http.request.method': req.method,
      'http.route': req.routeOptions.url ?? req.url,
      'mcpgw.request.id': req.id,
    }),
  })!;
  spans.set(req.raw, stage);
  reply.raw.once('close', () => {
    const status = reply.raw.statusCode;
    if (stage.span.isRecording()) stage.span.setAttribute('http.response.status_code', status);
    endStage(stage, status >= 500 ? { message: `HTTP ${status}` } : undefined);
  });
  return stage;
}

/**
 * The trace id of a request decided not sampled (`requestStage`), for `setMessageTrace`: the next tier and
 * the access line name it. Undefined for a sampled request, or when tracing is off.
 */
export function unsampledTrace(req: FastifyRequest): string | undefined {
  const known = spans.get(req.raw);
  return typeof known === 'string' ? known : undefined;
}
