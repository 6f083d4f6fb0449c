/**
 * The trace a core request belongs to: the verified edge's W3C `traceparent` header (the request it rides
 * on is authenticated by the edge's token). A token of an older edge may carry the trace id signed in
 * (claim `trc`): the header is then followed only when it names that trace; otherwise (absent, malformed
 * or another trace) the core's spans join the signed trace under a parent span id of their own.
 */
import { randomBytes } from 'node:crypto';
import { ROOT_CONTEXT, trace, type Context } from '@opentelemetry/api';
import { contextFromTraceparent } from '../../shared/telemetry/tracing.js';

/** The parent context for a request of a verified edge; undefined when neither token nor header names one. */
export function trustedParent(
  traceparent: unknown,
  signedTraceId: string | undefined,
  tracestate?: unknown,
): Context | undefined {
  const ctx = contextFromTraceparent(traceparent, tracestate);
  const named = ctx === ROOT_CONTEXT ? undefined : trace.getSpanContext(ctx);
  if (signedTraceId === undefined) return named ? ctx : undefined;
  if (named?.traceId === signedTraceId) return ctx;
  const flags = named ? (named.traceFlags & 1 ? '01' : '00') : '01';
  return contextFromTraceparent(`00-${signedTraceId}-${randomBytes(8).toString('hex')}-${flags}`);
}
