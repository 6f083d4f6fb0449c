/**
 * Upstream Streamable HTTP transport (MCP 2025-03-26 .. 2025-11-25) over undici's `request` API on the
 * process-wide keep-alive agent (http-common.ts), never global fetch.
 *
 * - Every message is POSTed (`Accept: application/json, text/event-stream`), with `Mcp-Session-Id` once
 *   the server issued one and `MCP-Protocol-Version` once the caller set it; configured headers go on
 *   every request.
 * - 202 (a notification or response accepted): nothing. JSON: the message, related to the POSTed
 *   request. SSE: every message of the stream, related to the POSTed request; priming events (an id and
 *   empty data) are skipped, event ids and `retry` remembered. A stream that ends before the response
 *   is resumed with GET + `Last-Event-ID` (2025-11-25), a bounded number of times without progress.
 * - After `notifications/initialized` was accepted, the standalone GET stream carries server-initiated
 *   messages (no related request); 405 means the server offers none; a dropped stream is reconnected
 *   with `Last-Event-ID` and backoff while the transport is open.
 * - A request that cannot be answered (connection refused or reset, timeout, HTTP error, a body that is
 *   not JSON-RPC) gets a synthesized JSON-RPC error response through `onmessage` (-32603 with
 *   `data.code` GW_BACKEND_UNAVAILABLE / GW_BACKEND_PROTOCOL_ERROR / GW_BACKEND_TIMEOUT and `status`);
 *   a failed notification or response goes to `onerror`. 404 to a message that carried the session id:
 *   the backend session is gone, `onclose(err)`.
 * - `close()`: aborts every request and stream, DELETEs the session (errors ignored).
 *
 * Only the JSON-RPC envelope is checked (`classify`); payloads are passed through untouched.
 */
import { setMaxListeners } from 'node:events';
import type { IncomingHttpHeaders } from 'node:http';
import { StringDecoder } from 'node:string_decoder';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Dispatcher } from 'undici';
import { createParser, type EventSourceMessage, type ParseError } from 'eventsource-parser';
import type { ErrorCode } from '../../shared/errors.js';
import {
  classify,
  type JsonRpcFailure,
  type JsonRpcId,
  type JsonRpcMessage,
} from '../../shared/mcp/jsonrpc.js';
import {
  backendError,
  upstreamAgent,
  withIdentity,
  withTraceHeaders,
  type HttpTransportOptions,
} from './http-common.js';
import type { UpstreamMessageContext, UpstreamTransport } from './transport.js';

export type BackendErrorCode = Extract<
  ErrorCode,
  'GW_BACKEND_UNAVAILABLE' | 'GW_BACKEND_PROTOCOL_ERROR' | 'GW_BACKEND_TIMEOUT'
>;

/** A delivery failure reported through `onerror` or `onclose`, with the code a synthesized answer uses. */
export class BackendHttpError extends Error {
  constructor(
    message: string,
    readonly code: BackendErrorCode,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'BackendHttpError';
  }
}

export interface StreamableHttpTransportOptions extends HttpTransportOptions {
  /** Resumptions (GET + Last-Event-ID) of a POST stream that make no progress before giving up. Default 3. */
  maxResumeAttempts?: number;
}

const POST_ACCEPT = 'application/json, text/event-stream';
const SSE_ACCEPT = 'text/event-stream';
const DEFAULT_TIMEOUT_MS = 120_000;
const DEFAULT_RETRY_MS = 1000;
const MAX_RETRY_MS = 30_000;
const DELETE_TIMEOUT_MS = 5000;
/** Largest SSE event (characters) buffered before the stream is dropped as hostile. */
export const MAX_SSE_EVENT = 64 * 1024 * 1024;
/** Session ids are visible ASCII (0x21-0x7E). */
const SESSION_ID = /^[\x21-\x7e]{1,1024}$/;
export const NO_CONTEXT: UpstreamMessageContext = Object.freeze({});

export class StreamableHttpTransport implements UpstreamTransport {
  onmessage?: (message: JsonRpcMessage, context: UpstreamMessageContext) => void;
  onerror?: (error: Error) => void;
  onclose?: (reason?: Error) => void;

  private readonly origin: string;
  private readonly path: string;
  private readonly base: Record<string, string>;
  private readonly timeoutMs: number;
  private readonly maxResumes: number;
  /** Aborts every request and stream of this transport at close. */
  private readonly abort = new AbortController();
  private sid: string | undefined;
  private version: string | undefined;
  /** POST headers, rebuilt only when the session id or protocol version changes. */
  private postHeaders: Record<string, string> | undefined;
  private closed = false;
  private closing: Promise<void> | undefined;
  private retryMs = DEFAULT_RETRY_MS;
  private getStreamStarted = false;
  private getLastEventId: string | undefined;

  constructor(private readonly o: StreamableHttpTransportOptions) {
    const u = parseHttpUrl(o.url);
    this.origin = u.origin;
    this.path = `${u.pathname}${u.search}`;
    this.base = baseHeaders(u, o.headers);
    this.timeoutMs = o.requestTimeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.maxResumes = o.maxResumeAttempts ?? 3;
    setMaxListeners(0, this.abort.signal);
  }

  get sessionId(): string | undefined {
    return this.sid;
  }

  setProtocolVersion(version: string): void {
    this.version = version;
    this.postHeaders = undefined;
  }

  /** Nothing to connect ahead of the first POST (the initialize request). */
  async start(): Promise<void> {
    if (this.closed) throw new Error('transport is closed');
  }

  async send(message: JsonRpcMessage): Promise<void> {
    const id = requestId(message);
    if (this.closed) return this.undeliverable(id, 'GW_BACKEND_UNAVAILABLE', 'backend connection is closed');
    const sentSession = this.sid;
    let res: Dispatcher.ResponseData;
    try {
      res = await upstreamAgent.request({
        origin: this.origin,
        path: this.path,
        method: 'POST',
        headers: withIdentity(
          withTraceHeaders((this.postHeaders ??= this.headers(POST_ACCEPT, true)), message),
          this.o.identityHeaders,
        ),
        body: JSON.stringify(message),
        headersTimeout: this.timeoutMs,
        bodyTimeout: 0,
        signal: this.abort.signal,
      });
    } catch (err) {
      if (this.closed)
        return this.undeliverable(id, 'GW_BACKEND_UNAVAILABLE', 'backend connection is closed');
      const d = describeNetworkError(err, this.timeoutMs);
      return this.undeliverable(id, d.code, d.text);
    }
    const status = res.statusCode;
    if (status < 200 || status >= 300) return this.httpFailure(res, id, sentSession);
    if (this.sid === undefined) this.captureSession(res.headers);
    if (id === undefined) {
      await res.body.dump().catch(noop);
      if ((message as { method?: string }).method === 'notifications/initialized') this.openGetStream();
      return;
    }
    const ctype = contentType(res.headers);
    if (ctype.startsWith('text/event-stream')) {
      void this.readPostStream(res.body, id);
      return;
    }
    if (status === 202 || status === 204) {
      await res.body.dump().catch(noop);
      return this.undeliverable(
        id,
        'GW_BACKEND_PROTOCOL_ERROR',
        `backend answered HTTP ${status} with no response to the request`,
        status,
      );
    }
    return this.readJson(res, id, ctype);
  }

  close(options?: { keepSession?: boolean }): Promise<void> {
    return (this.closing ??= this.shutdown(options?.keepSession ?? false));
  }

  adoptSession(sessionId: string, protocolVersion: string): void {
    if (!SESSION_ID.test(sessionId)) throw new Error('invalid backend session id');
    this.sid = sessionId;
    this.setProtocolVersion(protocolVersion);
    this.openGetStream();
  }

  // ---------------------------------------------------------------------------------------------------

  private async readJson(res: Dispatcher.ResponseData, id: JsonRpcId, ctype: string): Promise<void> {
    const status = res.statusCode;
    let text: string;
    try {
      text = await res.body.text();
    } catch (err) {
      const d = describeNetworkError(err, this.timeoutMs);
      return this.undeliverable(id, d.code, d.text, status);
    }
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      return this.undeliverable(
        id,
        'GW_BACKEND_PROTOCOL_ERROR',
        `backend answered HTTP ${status} with a body that is not JSON (${ctype || 'no content type'})`,
        status,
      );
    }
    const ctx: UpstreamMessageContext = { relatedRequestId: id };
    let answered = false;
    const one = (v: unknown) => {
      if (classify(v) === 'invalid') return this.badMessage(JSON.stringify(v));
      const m = answerFor(v as JsonRpcMessage, id);
      if (m !== undefined) {
        if (answered) return; // one answer per request
        answered = true;
        return this.emit(m, ctx);
      }
      this.emit(v as JsonRpcMessage, ctx);
    };
    if (Array.isArray(value)) for (const v of value) one(v);
    else one(value);
    if (!answered)
      this.undeliverable(
        id,
        'GW_BACKEND_PROTOCOL_ERROR',
        `backend answered HTTP ${status} without a JSON-RPC response to the request`,
        status,
      );
  }

  /** Reads the SSE stream of a POSTed request; resumes it with GET + Last-Event-ID if it ends early. */
  private async readPostStream(body: Dispatcher.ResponseData['body'], id: JsonRpcId): Promise<void> {
    const ctx: UpstreamMessageContext = { relatedRequestId: id };
    let answered = false;
    let lastId: string | undefined;
    let current: Dispatcher.ResponseData['body'] = body;
    const parser = createParser({
      onEvent: (ev) => {
        if (ev.id !== undefined) lastId = ev.id;
        const m = this.decode(ev);
        if (m === undefined) return;
        if (!answered) {
          const answer = answerFor(m, id);
          if (answer !== undefined) {
            answered = true;
            return this.emit(answer, ctx);
          }
        }
        this.emit(m, ctx);
      },
      onRetry: (ms) => (this.retryMs = ms),
      onError: (err) => this.sseError(err, current),
      maxBufferSize: MAX_SSE_EVENT,
    });
    await pumpSse(body, parser);
    let failures = 0;
    while (!answered && lastId !== undefined && !this.closed && failures < this.maxResumes) {
      if (!(await this.pause(Math.min(this.retryMs, MAX_RETRY_MS)))) break;
      const from: string = lastId;
      const r = await this.openGet(from);
      if (this.closed) break;
      if (r.body === undefined) {
        if (r.status === 404 && this.sid !== undefined) {
          this.undeliverable(id, 'GW_BACKEND_UNAVAILABLE', 'backend session ended (HTTP 404)', 404);
          return this.lost(
            new BackendHttpError('backend session ended (HTTP 404)', 'GW_BACKEND_UNAVAILABLE', 404),
          );
        }
        // A server that cannot resume (405, 400 ...) will not do better next time.
        if (r.status !== undefined && r.status < 500 && r.status !== 408 && r.status !== 429) break;
        failures++;
        continue;
      }
      current = r.body;
      parser.reset();
      await pumpSse(r.body, parser);
      failures = lastId === from ? failures + 1 : 0;
    }
    if (!answered)
      this.undeliverable(
        id,
        'GW_BACKEND_UNAVAILABLE',
        this.closed
          ? 'backend connection is closed'
          : lastId === undefined
            ? 'backend closed the response stream before answering'
            : 'backend closed the response stream before answering, and it could not be resumed',
      );
  }

  private openGetStream(): void {
    if (this.getStreamStarted || this.closed) return;
    this.getStreamStarted = true;
    void this.runGetStream();
  }

  /** The standalone GET stream for server-initiated messages, reconnected with backoff while open. */
  private async runGetStream(): Promise<void> {
    let failures = 0;
    let current: Dispatcher.ResponseData['body'] | undefined;
    const parser = createParser({
      onEvent: (ev) => {
        if (ev.id !== undefined) this.getLastEventId = ev.id;
        const m = this.decode(ev);
        if (m !== undefined) this.emit(m, NO_CONTEXT);
      },
      onRetry: (ms) => (this.retryMs = ms),
      onError: (err) => this.sseError(err, current),
      maxBufferSize: MAX_SSE_EVENT,
    });
    while (!this.closed) {
      const r = await this.openGet(this.getLastEventId);
      if (this.closed) return;
      if (r.body !== undefined) {
        failures = 0;
        current = r.body;
        parser.reset();
        const err = await pumpSse(r.body, parser);
        if (this.closed) return;
        this.o.log.debug(
          { url: this.o.url, error: errMessage(err) },
          'backend GET stream ended; reconnecting',
        );
      } else if (r.status === 405) {
        this.o.log.debug({ url: this.o.url }, 'backend offers no GET stream (405)');
        return;
      } else if (r.status === 404 && this.sid !== undefined) {
        return this.lost(
          new BackendHttpError('backend session ended (HTTP 404 on GET)', 'GW_BACKEND_UNAVAILABLE', 404),
        );
      } else if (r.status !== undefined && r.status < 500 && r.status !== 408 && r.status !== 429) {
        this.o.log.warn(
          { url: this.o.url, status: r.status },
          'backend refused the GET stream; server-initiated messages outside requests will be missed',
        );
        return;
      } else {
        failures++;
        this.o.log.debug(
          { url: this.o.url, status: r.status, error: errMessage(r.error), failures },
          'backend GET stream failed; retrying',
        );
      }
      const wait = failures === 0 ? this.retryMs : Math.min(this.retryMs * 2 ** (failures - 1), MAX_RETRY_MS);
      if (!(await this.pause(wait))) return;
    }
  }

  /** GET with `Accept: text/event-stream`: the body of a 200 event stream, or what went wrong. */
  private async openGet(
    lastEventId: string | undefined,
  ): Promise<{ body?: Dispatcher.ResponseData['body']; status?: number; error?: unknown }> {
    let res: Dispatcher.ResponseData;
    try {
      res = await upstreamAgent.request({
        origin: this.origin,
        path: this.path,
        method: 'GET',
        headers: withIdentity(this.headers(SSE_ACCEPT, false, lastEventId), this.o.identityHeaders),
        headersTimeout: this.timeoutMs,
        bodyTimeout: 0,
        signal: this.abort.signal,
      });
    } catch (error) {
      return { error };
    }
    if (res.statusCode === 200 && contentType(res.headers).startsWith('text/event-stream')) {
      return { body: res.body };
    }
    await res.body.dump().catch(noop);
    // A 200 that is not an event stream is as useless as a refusal.
    return { status: res.statusCode === 200 ? 415 : res.statusCode };
  }

  private async httpFailure(
    res: Dispatcher.ResponseData,
    id: JsonRpcId | undefined,
    sentSession: string | undefined,
  ): Promise<void> {
    const status = res.statusCode;
    const detail = errorDetail(await res.body.text().catch(() => ''));
    const code: BackendErrorCode =
      status === 408 || status === 504 ? 'GW_BACKEND_TIMEOUT' : 'GW_BACKEND_UNAVAILABLE';
    this.undeliverable(id, code, `backend answered HTTP ${status}${detail ? `: ${detail}` : ''}`, status);
    if (status === 404 && sentSession !== undefined)
      this.lost(new BackendHttpError('backend session ended (HTTP 404)', 'GW_BACKEND_UNAVAILABLE', 404));
  }

  /** Decodes one SSE event into a JSON-RPC message; undefined for priming events and garbage. */
  private decode(ev: EventSourceMessage): JsonRpcMessage | undefined {
    if (ev.event !== undefined && ev.event !== 'message') return undefined;
    const data = ev.data;
    // Priming events carry an id and empty data; SDK event stores replay them as `{}`.
    if (data.length === 0 || data === '{}') return undefined;
    let v: unknown;
    try {
      v = JSON.parse(data);
    } catch {
      this.badMessage(data);
      return undefined;
    }
    if (classify(v) === 'invalid') {
      this.badMessage(data);
      return undefined;
    }
    return v as JsonRpcMessage;
  }

  private sseError(err: ParseError, body: Dispatcher.ResponseData['body'] | undefined): void {
    if (err.type !== 'max-buffer-size-exceeded') return; // unknown fields are ignored, as SSE says
    const e = new BackendHttpError(
      `backend sent an SSE event larger than ${MAX_SSE_EVENT} characters`,
      'GW_BACKEND_PROTOCOL_ERROR',
    );
    this.o.log.warn({ url: this.o.url }, e.message);
    this.onerror?.(e);
    body?.destroy(e);
  }

  private badMessage(data: string): void {
    if (this.closed) return;
    const excerpt = data.length > 200 ? `${data.slice(0, 200)}...` : data;
    this.o.log.warn({ url: this.o.url, data: excerpt }, 'backend sent something that is not JSON-RPC');
    this.onerror?.(
      new BackendHttpError(
        `backend sent a message that is not JSON-RPC: ${excerpt}`,
        'GW_BACKEND_PROTOCOL_ERROR',
      ),
    );
  }

  private emit(m: JsonRpcMessage, ctx: UpstreamMessageContext): void {
    if (!this.closed) deliver(this, this.o.log, m, ctx);
  }

  /**
   * A request gets a synthesized error response (even after close: a request is never left hanging);
   * a notification or response that could not be delivered goes to onerror while the transport is open.
   */
  private undeliverable(
    id: JsonRpcId | undefined,
    code: BackendErrorCode,
    text: string,
    status?: number,
  ): void {
    if (id !== undefined) {
      deliver(this, this.o.log, backendError(id, code, text, status), { relatedRequestId: id });
    } else if (!this.closed) {
      this.o.log.debug({ url: this.o.url, code, status, error: text }, 'backend delivery failed');
      this.onerror?.(new BackendHttpError(text, code, status));
    }
  }

  private captureSession(h: IncomingHttpHeaders): void {
    const v = h['mcp-session-id'];
    const sid = Array.isArray(v) ? v[0] : v;
    if (sid === undefined) return;
    if (!SESSION_ID.test(sid)) {
      this.onerror?.(
        new BackendHttpError(
          'backend issued an invalid Mcp-Session-Id; ignored',
          'GW_BACKEND_PROTOCOL_ERROR',
        ),
      );
      return;
    }
    this.sid = sid;
    this.postHeaders = undefined;
  }

  private headers(accept: string, json: boolean, lastEventId?: string): Record<string, string> {
    const h: Record<string, string> = { ...this.base, accept };
    if (json) h['content-type'] = 'application/json';
    if (this.sid !== undefined) h['mcp-session-id'] = this.sid;
    if (this.version !== undefined) h['mcp-protocol-version'] = this.version;
    if (lastEventId !== undefined) h['last-event-id'] = lastEventId;
    return h;
  }

  /** Waits, unless the transport closes first (then false). */
  private async pause(ms: number): Promise<boolean> {
    try {
      await sleep(ms, undefined, { signal: this.abort.signal, ref: false });
    } catch {
      return false;
    }
    return !this.closed;
  }

  /** The backend session is gone: no DELETE, everything stops, onclose(reason). */
  private lost(reason: BackendHttpError): void {
    if (this.closed) return;
    this.closed = true;
    this.abort.abort(reason);
    this.o.log.warn({ url: this.o.url, reason: reason.message }, 'backend session lost');
    this.onclose?.(reason);
  }

  private async shutdown(keepSession: boolean): Promise<void> {
    const wasOpen = !this.closed;
    this.closed = true;
    this.abort.abort(new Error('transport closed'));
    if (wasOpen && this.sid !== undefined && !keepSession) {
      try {
        const res = await upstreamAgent.request({
          origin: this.origin,
          path: this.path,
          method: 'DELETE',
          headers: withIdentity(this.headers(POST_ACCEPT, false), this.o.identityHeaders),
          headersTimeout: Math.min(this.timeoutMs, DELETE_TIMEOUT_MS),
          bodyTimeout: Math.min(this.timeoutMs, DELETE_TIMEOUT_MS),
        });
        await res.body.dump();
      } catch {
        /* the backend may be gone already; 404 and 405 are fine too */
      }
    }
    if (wasOpen) this.onclose?.();
  }
}

// ---------------------------------------------------------------------------------------------------
// Helpers shared with the legacy SSE transport.

/** Calls the consumer's onmessage; a handler that throws is logged, and cannot break the framing. */
export function deliver(
  t: UpstreamTransport,
  log: HttpTransportOptions['log'],
  m: JsonRpcMessage,
  ctx: UpstreamMessageContext,
): void {
  try {
    t.onmessage?.(m, ctx);
  } catch (err) {
    log.error({ err }, 'upstream onmessage handler threw');
  }
}

/** The id of a request, or undefined for notifications and responses. */
export function requestId(message: JsonRpcMessage): JsonRpcId | undefined {
  const m = message as { id?: JsonRpcId; method?: string };
  return m.method !== undefined ? m.id : undefined;
}

/**
 * The answer to request `id` carried by `m`, if `m` is one: a response with that id, or an error
 * response with a null id (the server could not read the request), re-addressed to `id`.
 */
function answerFor(m: JsonRpcMessage, id: JsonRpcId): JsonRpcMessage | undefined {
  const r = m as { id?: JsonRpcId | null; method?: string; error?: JsonRpcFailure['error'] };
  if (r.method !== undefined) return undefined;
  if (r.id === id) return m;
  if (r.id === null && r.error !== undefined) return { jsonrpc: '2.0', id, error: r.error };
  return undefined;
}

export function parseHttpUrl(url: string): URL {
  const u = new URL(url);
  if (u.protocol !== 'http:' && u.protocol !== 'https:')
    throw new Error(`backend URL must be http(s): ${u.protocol}`);
  return u;
}

/** Configured headers, lower-cased (so ours replace theirs), plus basic auth from URL credentials. */
export function baseHeaders(
  u: URL,
  headers: Readonly<Record<string, string>> | undefined,
): Record<string, string> {
  const h: Record<string, string> = {};
  if (u.username || u.password) {
    const cred = `${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`;
    h.authorization = `Basic ${Buffer.from(cred).toString('base64')}`;
  }
  if (headers) for (const k of Object.keys(headers)) h[k.toLowerCase()] = headers[k]!;
  return h;
}

export function contentType(h: IncomingHttpHeaders): string {
  const v = h['content-type'];
  return (Array.isArray(v) ? (v[0] ?? '') : (v ?? '')).toLowerCase();
}

/** Feeds a response body to an SSE parser; resolves when it ends, to the error that ended it if any. */
export async function pumpSse(
  body: AsyncIterable<Buffer>,
  parser: { feed(chunk: string): void },
): Promise<unknown> {
  const decoder = new StringDecoder('utf8');
  try {
    for await (const chunk of body) parser.feed(decoder.write(chunk));
    const rest = decoder.end();
    if (rest) parser.feed(rest);
    return undefined;
  } catch (err) {
    return err;
  }
}

/** Classifies a failed `request()`: timeouts apart, the backend is unavailable. */
export function describeNetworkError(
  err: unknown,
  timeoutMs: number,
): { code: BackendErrorCode; text: string } {
  const e = err as { code?: string; message?: string; name?: string };
  switch (e.code) {
    case 'UND_ERR_HEADERS_TIMEOUT':
    case 'UND_ERR_BODY_TIMEOUT':
      return { code: 'GW_BACKEND_TIMEOUT', text: `backend did not answer within ${timeoutMs} ms` };
    case 'UND_ERR_CONNECT_TIMEOUT':
      return { code: 'GW_BACKEND_UNAVAILABLE', text: 'backend unreachable: connect timeout' };
    case 'ECONNREFUSED':
      return {
        code: 'GW_BACKEND_UNAVAILABLE',
        text: 'backend unreachable: connection refused (ECONNREFUSED)',
      };
    case 'ECONNRESET':
    case 'UND_ERR_SOCKET':
      return { code: 'GW_BACKEND_UNAVAILABLE', text: `backend connection lost (${e.message ?? e.code})` };
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return { code: 'GW_BACKEND_UNAVAILABLE', text: `backend unreachable: host not found (${e.code})` };
    default:
      return {
        code: 'GW_BACKEND_UNAVAILABLE',
        text: `backend unreachable: ${e.code ?? e.name ?? 'error'}${e.message ? ` (${e.message})` : ''}`,
      };
  }
}

/** A short account of an HTTP error body: the JSON-RPC error message if there is one, else its start. */
export function errorDetail(text: string): string {
  const t = text.trim();
  if (t.length === 0) return '';
  if (t.charCodeAt(0) === 123 /* { */) {
    try {
      const v = JSON.parse(t) as { error?: { message?: unknown } | string; message?: unknown };
      const m = typeof v.error === 'object' ? v.error?.message : (v.error ?? v.message);
      if (typeof m === 'string' && m) return m.length > 300 ? `${m.slice(0, 300)}...` : m;
    } catch {
      /* fall through */
    }
  }
  const line = t.replace(/\s+/g, ' ');
  return line.length > 200 ? `${line.slice(0, 200)}...` : line;
}

function errMessage(err: unknown): string | undefined {
  return err === undefined ? undefined : ((err as Error)?.message ?? String(err));
}

function noop(): void {}
