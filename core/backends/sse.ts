/**
 * Upstream legacy HTTP+SSE transport (MCP 2024-11-05): a GET event stream whose first `endpoint` event
 * names the URI to POST messages to (resolved against the SSE URL, and refused unless same-origin); every
 * server message arrives as a `message` event on that stream, related to no request. The stream ending
 * ends the session (`onclose`). POSTs expect 2xx (the body is ignored); a request that cannot be
 * delivered gets a synthesized JSON-RPC error response, as with Streamable HTTP.
 */
import { setMaxListeners } from 'node:events';
import type { Dispatcher } from 'undici';
import { createParser } from 'eventsource-parser';
import { brokenResponseId, classify, type JsonRpcId, type JsonRpcMessage } from '../../shared/mcp/jsonrpc.js';
import {
  backendError,
  upstreamAgent,
  withIdentity,
  withTraceHeaders,
  type HttpTransportOptions,
} from './http-common.js';
import {
  BackendHttpError,
  MAX_SSE_EVENT,
  NO_CONTEXT,
  baseHeaders,
  contentType,
  deliver,
  describeNetworkError,
  errorDetail,
  parseHttpUrl,
  pumpSse,
  requestId,
  type BackendErrorCode,
} from './streamable-http.js';
import type { UpstreamMessageContext, UpstreamTransport } from './transport.js';

export interface LegacySseTransportOptions extends HttpTransportOptions {
  /** Bound on start(): the GET's response headers and the `endpoint` event. Default min(requestTimeoutMs, 15 s). */
  connectTimeoutMs?: number;
}

const DEFAULT_TIMEOUT_MS = 120_000;

type State = 'new' | 'starting' | 'open' | 'gone';

export class LegacySseTransport implements UpstreamTransport {
  onmessage?: (message: JsonRpcMessage, context: UpstreamMessageContext) => void;
  onerror?: (error: Error) => void;
  onclose?: (reason?: Error) => void;
  readonly sessionId: string | undefined = undefined;

  private readonly url: URL;
  private readonly base: Record<string, string>;
  private readonly postHeaders: Record<string, string>;
  private readonly timeoutMs: number;
  private readonly abort = new AbortController();
  private state: State = 'new';
  private endpointPath: string | undefined;

  constructor(private readonly o: LegacySseTransportOptions) {
    this.url = parseHttpUrl(o.url);
    this.base = baseHeaders(this.url, o.headers);
    this.postHeaders = { ...this.base, 'content-type': 'application/json' };
    this.timeoutMs = o.requestTimeoutMs ?? DEFAULT_TIMEOUT_MS;
    setMaxListeners(0, this.abort.signal);
  }

  /** The URI messages are POSTed to, once the `endpoint` event named it. */
  get endpoint(): string | undefined {
    return this.endpointPath === undefined ? undefined : `${this.url.origin}${this.endpointPath}`;
  }

  /** The legacy protocol has no version header. */
  setProtocolVersion(): void {}

  async start(): Promise<void> {
    if (this.state !== 'new') throw new Error('legacy SSE transport already started');
    this.state = 'starting';
    const timeoutMs = this.o.connectTimeoutMs ?? Math.min(this.timeoutMs, 15_000);
    const deadline = Date.now() + timeoutMs;
    const failStart = (message: string, cause?: unknown): Error => {
      this.state = 'gone';
      this.abort.abort();
      return new Error(`legacy SSE backend: ${message}`, { cause });
    };
    let res: Dispatcher.ResponseData;
    try {
      res = await upstreamAgent.request({
        origin: this.url.origin,
        path: `${this.url.pathname}${this.url.search}`,
        method: 'GET',
        headers: withIdentity({ ...this.base, accept: 'text/event-stream' }, this.o.identityHeaders),
        headersTimeout: timeoutMs,
        bodyTimeout: 0,
        signal: this.abort.signal,
      });
    } catch (err) {
      if (this.state !== 'starting') throw failStart('closed while connecting');
      throw failStart(describeNetworkError(err, timeoutMs).text, err);
    }
    if (res.statusCode !== 200 || !contentType(res.headers).startsWith('text/event-stream')) {
      const detail = errorDetail(await res.body.text().catch(() => ''));
      throw failStart(
        res.statusCode !== 200
          ? `answered HTTP ${res.statusCode}${detail ? `: ${detail}` : ''}`
          : `answered ${contentType(res.headers) || 'no content type'}, not an event stream`,
      );
    }
    const body = res.body;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(failStart(`sent no endpoint event within ${timeoutMs} ms`)),
        Math.max(0, deadline - Date.now()),
      );
      const parser = createParser({
        onEvent: (ev) => {
          if (ev.event === 'endpoint') {
            if (this.endpointPath !== undefined) return; // only the first one counts
            let ep: URL;
            try {
              ep = new URL(ev.data.trim(), this.url);
            } catch {
              clearTimeout(timer);
              return reject(failStart(`sent an endpoint that is not a URI: ${ev.data.slice(0, 200)}`));
            }
            if (ep.origin !== this.url.origin) {
              clearTimeout(timer);
              return reject(failStart(`named an endpoint on another origin (${ep.origin}): refused`));
            }
            clearTimeout(timer);
            this.endpointPath = `${ep.pathname}${ep.search}`;
            if (this.state !== 'starting') return reject(failStart('closed while connecting'));
            this.state = 'open';
            return resolve();
          }
          if (ev.event !== undefined && ev.event !== 'message') return;
          this.receive(ev.data);
        },
        onError: (err) => {
          if (err.type !== 'max-buffer-size-exceeded') return;
          const e = new BackendHttpError(
            `legacy SSE backend sent an event larger than ${MAX_SSE_EVENT} characters`,
            'GW_BACKEND_PROTOCOL_ERROR',
          );
          this.onerror?.(e);
          body.destroy(e);
        },
        maxBufferSize: MAX_SSE_EVENT,
      });
      void pumpSse(body, parser).then((err) => {
        clearTimeout(timer);
        if (this.state === 'open') {
          this.finish(
            new BackendHttpError(
              `legacy SSE stream ended${err ? ` (${(err as Error).message})` : ''}`,
              'GW_BACKEND_UNAVAILABLE',
            ),
          );
        } else {
          // Still starting (or closed while starting): no-op if the promise already settled.
          reject(failStart('the event stream ended before the endpoint event', err));
        }
      });
    });
  }

  async send(message: JsonRpcMessage): Promise<void> {
    const id = requestId(message);
    if (this.state !== 'open' || this.endpointPath === undefined)
      return this.undeliverable(id, 'GW_BACKEND_UNAVAILABLE', 'legacy SSE backend is not connected');
    let res: Dispatcher.ResponseData;
    try {
      res = await upstreamAgent.request({
        origin: this.url.origin,
        path: this.endpointPath,
        method: 'POST',
        headers: withIdentity(withTraceHeaders(this.postHeaders, message), this.o.identityHeaders),
        body: JSON.stringify(message),
        headersTimeout: this.timeoutMs,
        bodyTimeout: this.timeoutMs,
        signal: this.abort.signal,
      });
    } catch (err) {
      if (this.state !== 'open')
        return this.undeliverable(id, 'GW_BACKEND_UNAVAILABLE', 'legacy SSE backend connection is closed');
      const d = describeNetworkError(err, this.timeoutMs);
      return this.undeliverable(id, d.code, d.text);
    }
    const status = res.statusCode;
    if (status >= 200 && status < 300) {
      await res.body.dump().catch(() => {});
      return;
    }
    const detail = errorDetail(await res.body.text().catch(() => ''));
    const code: BackendErrorCode =
      status === 408 || status === 504 ? 'GW_BACKEND_TIMEOUT' : 'GW_BACKEND_UNAVAILABLE';
    this.undeliverable(
      id,
      code,
      `legacy SSE backend answered HTTP ${status}${detail ? `: ${detail}` : ''}`,
      status,
    );
    // The endpoint names the session; 404 means it is gone (or never was), and nothing will work.
    if (status === 404)
      this.finish(new BackendHttpError('legacy SSE session ended (HTTP 404)', 'GW_BACKEND_UNAVAILABLE', 404));
  }

  async close(): Promise<void> {
    if (this.state === 'gone') return;
    const wasOpen = this.state === 'open';
    this.state = 'gone';
    this.abort.abort(new Error('transport closed'));
    if (wasOpen) this.onclose?.();
  }

  private receive(data: string): void {
    if (data.length === 0) return;
    let v: unknown;
    try {
      v = JSON.parse(data);
    } catch {
      return this.bad(data);
    }
    if (classify(v) === 'invalid') {
      this.bad(data);
      const id = brokenResponseId(v);
      if (id !== undefined && this.state !== 'gone')
        deliver(
          this,
          this.o.log,
          backendError(id, 'GW_BACKEND_PROTOCOL_ERROR', 'legacy SSE backend sent an invalid response'),
          NO_CONTEXT,
        );
      return;
    }
    if (this.state !== 'gone') deliver(this, this.o.log, v as JsonRpcMessage, NO_CONTEXT);
  }

  private bad(data: string): void {
    const excerpt = data.length > 200 ? `${data.slice(0, 200)}...` : data;
    this.o.log.warn(
      { url: this.o.url, data: excerpt },
      'legacy SSE backend sent something that is not JSON-RPC',
    );
    this.onerror?.(
      new BackendHttpError(
        `legacy SSE backend sent a message that is not JSON-RPC: ${excerpt}`,
        'GW_BACKEND_PROTOCOL_ERROR',
      ),
    );
  }

  /** A request gets a synthesized error response (never left hanging); anything else goes to onerror. */
  private undeliverable(
    id: JsonRpcId | undefined,
    code: BackendErrorCode,
    text: string,
    status?: number,
  ): void {
    if (id !== undefined)
      deliver(this, this.o.log, backendError(id, code, text, status), { relatedRequestId: id });
    else if (this.state !== 'gone') this.onerror?.(new BackendHttpError(text, code, status));
  }

  private finish(reason: Error): void {
    if (this.state !== 'open') return;
    this.state = 'gone';
    this.abort.abort(reason);
    this.o.log.warn({ url: this.o.url, reason: reason.message }, 'legacy SSE backend closed');
    this.onclose?.(reason);
  }
}
