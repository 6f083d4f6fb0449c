/**
 * What the two HTTP upstream transports share: one keep-alive connection pool for the process, SSE
 * parsing of a response body, and the synthesized error a request gets when the backend cannot answer it.
 */
import { Agent } from 'undici';
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { classify, type JsonRpcId, type JsonRpcMessage } from '../../shared/mcp/jsonrpc.js';
import type { ErrorCode } from '../../shared/errors.js';
import { traceHeadersOf } from '../../shared/telemetry/tracing.js';

export type Log = {
  info(o: object, m?: string): void;
  warn(o: object, m?: string): void;
  error(o: object, m?: string): void;
  debug(o: object, m?: string): void;
};

export interface HttpTransportOptions {
  url: string;
  headers?: Readonly<Record<string, string>>;
  /**
   * Headers computed per request (who is calling, for `identity: headers | delegation`); they replace
   * configured ones of the same name. Called on the hot path: it must answer from a cache.
   */
  identityHeaders?: () => Readonly<Record<string, string>> | undefined;
  log: Log;
  /** Time to wait for response headers of a POST (and for the legacy endpoint event). */
  requestTimeoutMs?: number;
}

/** One pool for every backend of the process: keep-alive connections are reused across client sessions. */
export const upstreamAgent = new Agent({
  keepAliveTimeout: 30_000,
  keepAliveMaxTimeout: 600_000,
  connections: null,
  pipelining: 1,
});

/** `headers` with the per-request identity headers laid over them (the same object when there are none). */
export function withIdentity(
  headers: Record<string, string>,
  identity: HttpTransportOptions['identityHeaders'],
): Record<string, string> {
  const extra = identity?.();
  return extra ? { ...headers, ...extra } : headers;
}

export function backendError(
  id: JsonRpcId,
  code: ErrorCode,
  message: string,
  status?: number,
): JsonRpcMessage {
  return {
    jsonrpc: '2.0',
    id,
    error: { code: -32603, message, data: status === undefined ? { code } : { code, status } },
  };
}

/** Reads an SSE body, calling `onMessage` for every event that carries a JSON-RPC message. */
export async function readSse(
  body: AsyncIterable<Buffer | string>,
  onEvent: (msg: JsonRpcMessage, ev: EventSourceMessage) => void,
  onRetry: (ms: number) => void,
  onBad: (data: string) => void,
): Promise<void> {
  const parser = createParser({
    onEvent(ev) {
      if (!ev.data) return; // priming event
      let msg: unknown;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        return onBad(ev.data);
      }
      if (classify(msg) === 'invalid') return onBad(ev.data);
      onEvent(msg as JsonRpcMessage, ev);
    },
    onRetry,
  });
  for await (const chunk of body) parser.feed(typeof chunk === 'string' ? chunk : chunk.toString('utf8'));
}

export function headerValue(
  h: Record<string, string | string[] | undefined>,
  name: string,
): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
}

/** POST headers plus the W3C trace context a message carries in `params._meta` (set when tracing is on). */
export function withTraceHeaders(
  headers: Record<string, string>,
  message: JsonRpcMessage,
): Record<string, string> {
  const trace = traceHeadersOf(message);
  return trace ? { ...headers, ...trace } : headers;
}
