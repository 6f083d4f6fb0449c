/**
 * The trace a core request belongs to. The edge signs the trace id into the internal token (claim `trc`)
 * and names its span in an unsigned `traceparent` header: the header is used only when it names the
 * signed trace; otherwise (absent, malformed or another trace) the core's spans join the signed trace
 * under a parent span id of its own, so no caller can graft core work onto a trace of its choosing.
 */
import { randomBytes } from 'node:crypto';
import type { Context } from '@opentelemetry/api';
import { contextFromTraceparent } from '../../shared/telemetry/tracing.js';

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** The parent context for a request of a verified edge; undefined when neither token nor header names one. */
export function trustedParent(
  traceparent: unknown,
  signedTraceId: string | undefined,
  tracestate?: unknown,
): Context | undefined {
  const state = typeof tracestate === 'string' ? tracestate : undefined;
  const m = typeof traceparent === 'string' ? TRACEPARENT.exec(traceparent.trim().toLowerCase()) : null;
  if (signedTraceId === undefined) return m ? contextFromTraceparent(traceparent, state) : undefined;
  if (m && m[1] === signedTraceId) return contextFromTraceparent(traceparent, state);
  return contextFromTraceparent(`00-${signedTraceId}-${randomBytes(8).toString('hex')}-${m?.[3] ?? '01'}`);
}
