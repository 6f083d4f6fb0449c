/**
 * The edge's audit trail of forwarded calls (docs/audit.md, "On the edge"): every tools/call,
 * prompts/get and resources/read the edge sends to a core becomes a record in the edge's own chain, with
 * who, the tenant, the target, the core and region it went to (`server`: `core:<id>@<region>`), the
 * decision, the outcome, the latency seen at the edge and the arguments' hash. A call no core answered
 * (unreachable, residency refused) is recorded too, with its error code; the core's own record of the
 * same call carries the same requestId and traceId.
 *
 * The edge does not know which backend server a call reaches, nor that server's classification: its
 * records are classed `Internal` (the core's record has the server's own class).
 */
import { auditEvent, AUDITED_METHODS } from '../../shared/audit/audit-event.js';
import { toRpcError } from '../../shared/errors.js';
import { principalKey } from '../../shared/identity/principal.js';
import type { AuditSink } from '../../shared/ports/audit-sink.js';
import type { ForwardedCall } from './remote-core.js';

export function forwardAuditor(sink: AuditSink, region: string): (call: ForwardedCall) => void {
  return (c) => {
    if (!AUDITED_METHODS.has(c.request.method)) return;
    const response = c.error === undefined ? c.response : toRpcError(c.request.id, c.error);
    sink.record(
      auditEvent({
        region,
        principal: principalKey(c.principal),
        sessionId: c.sessionId,
        request: c.request,
        response,
        server: c.core ? `core:${c.core.id}@${c.core.region}` : undefined,
        classification: 'Internal',
        latencyMs: c.latencyMs,
      }),
    );
  };
}
