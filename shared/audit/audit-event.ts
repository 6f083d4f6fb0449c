/**
 * What the audit trail records of one call: who, what, where, the decision and the outcome. Built from
 * the request and its answer only; the arguments travel to the sink, which keeps only their hash. The
 * core records every call it runs (core/mcp/gateway-core.ts); an edge records the calls it forwards
 * (edge/forward/forward-audit.ts).
 */
import type { JsonObject, JsonRpcRequest, JsonRpcResponse } from '../mcp/jsonrpc.js';
import type { AuditEvent, Classification } from '../ports/audit-sink.js';

export const AUDITED_METHODS: ReadonlySet<string> = new Set(['tools/call', 'prompts/get', 'resources/read']);

/** Codes by which the gateway refused a call (rather than tried it and failed). */
const REFUSALS =
  /^GW_(AUDIT_UNAVAILABLE|SESSION_FORBIDDEN|FORBIDDEN|ACCESS_DENIED|NOT_AUTHORIZED|POLICY|QUOTA|RATE_LIMIT|RESIDENCY)/;
const TRACEPARENT = /^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$/;

export function auditEvent(c: {
  region: string;
  /** principalKey(): `anonymous` or `tenant:subject`. */
  principal: string;
  sessionId: string;
  request: JsonRpcRequest;
  response: JsonRpcResponse | undefined;
  server: string | undefined;
  classification: Classification;
  latencyMs: number;
  /** The trace the gateway recorded the call in; absent: the one the client's `_meta` names, if any. */
  traceId?: string;
}): AuditEvent {
  const params = c.request.params ?? {};
  const colon = c.principal.indexOf(':');
  const [tenant, subject] =
    colon > 0 ? [c.principal.slice(0, colon), c.principal.slice(colon + 1)] : ['default', c.principal];
  const target =
    typeof params.name === 'string' ? params.name : typeof params.uri === 'string' ? params.uri : undefined;
  const event: AuditEvent = {
    at: Date.now(),
    region: c.region,
    subject,
    tenant,
    method: c.request.method,
    decision: 'allow',
    outcome: 'ok',
    latencyMs: c.latencyMs,
    classification: c.classification,
    requestId: `${c.sessionId}:${String(c.request.id)}`,
  };
  if (target !== undefined) event.target = target;
  if (c.server !== undefined) event.server = c.server;
  if (c.request.method !== 'resources/read') event.args = params.arguments ?? {};
  const traceparent = (params._meta as JsonObject | undefined)?.traceparent;
  const trace =
    c.traceId ?? (typeof traceparent === 'string' ? TRACEPARENT.exec(traceparent)?.[1] : undefined);
  if (trace) event.traceId = trace;
  const res = c.response;
  if (!res) event.outcome = 'cancelled';
  else if ('error' in res) {
    const data = res.error.data as JsonObject | undefined;
    event.errorCode = typeof data?.code === 'string' ? data.code : String(res.error.code);
    event.outcome = 'error';
    if (REFUSALS.test(event.errorCode)) event.decision = 'deny';
  } else if ((res.result as JsonObject | undefined)?.isError === true) event.outcome = 'tool-error';
  return event;
}
