/**
 * What a backend's answer means for the pool: whether the replica did its job (a result, a tool error, a
 * caller mistake all count as answered), whether the call provably never reached the backend (then any
 * call may go elsewhere), or whether it may have run (then only a call that is safe to repeat may).
 */
import type { JsonRpcResponse } from '../../shared/mcp/jsonrpc.js';

export type CallOutcome =
  /** A result or an error the backend itself sent (isError, -32602, ...): the replica is fine. */
  | 'answered'
  /** The request never left the gateway or was refused before any processing (connect refused). */
  | 'not-sent'
  /** The backend failed after the request went out (connection lost, protocol error): it may have run. */
  | 'maybe-sent'
  /** No answer within the time allowed; the backend was sent notifications/cancelled. */
  | 'timeout';

/**
 * Messages of synthesized GW_BACKEND_UNAVAILABLE answers that prove nothing was delivered: a refused or
 * impossible connection, a client or process that was not there to send to.
 */
const NEVER_SENT =
  /ECONNREFUSED|connect timeout|host not found|is not connected|is not running|cannot send to backend/;

export function outcomeOf(res: JsonRpcResponse): CallOutcome {
  if (!('error' in res)) return 'answered';
  const code = (res.error.data as { code?: unknown } | undefined)?.code;
  switch (code) {
    case 'GW_BACKEND_TIMEOUT':
      return 'timeout';
    case 'GW_BACKEND_UNAVAILABLE':
      return NEVER_SENT.test(res.error.message) ? 'not-sent' : 'maybe-sent';
    case 'GW_BACKEND_PROTOCOL_ERROR':
      return 'maybe-sent';
    default:
      return 'answered';
  }
}
