/**
 * Upstream transport to a 2026-07-28 (stateless) Streamable HTTP server: one POST per request, no
 * session, no initialize, no GET, no DELETE.
 *
 * - Each request carries the headers a 2026 server checks against its body: `MCP-Protocol-Version`
 *   (the envelope's), `Mcp-Method`, `Mcp-Name` (tools/call and prompts/get name, resources/read URI) and,
 *   on tools/call, one `Mcp-Param-{Name}` per argument the tool declares with `x-mcp-header`. The
 *   declarations come from the tools/list answers that pass through here; a call refused with -32020
 *   (header mismatch) refreshes them with a full tools/list and is sent once more, as the SDK client does.
 * - A JSON answer is the response; an SSE answer carries related messages (progress, log messages)
 *   before the response. A 4xx whose body is a JSON-RPC error is that request's answer (-32022, -32601,
 *   -32602, -32021 reach the caller as errors); anything else gets a synthesized GW_BACKEND_* error.
 * - Cancellation is closing the request's response: `notifications/cancelled` aborts that POST and is
 *   not sent. Other client notifications have no meaning to a 2026 server and are dropped.
 * - `listen()` holds one `subscriptions/listen` stream open (the caller reopens it).
 */
import { setMaxListeners } from 'node:events';
import type { Dispatcher } from 'undici';
import { createParser } from 'eventsource-parser';
import {
  classify,
  type JsonObject,
  type JsonRpcId,
  type JsonRpcMessage,
  type JsonRpcRequest,
} from '../../shared/mcp/jsonrpc.js';
import {
  encodeHeaderValue,
  META_PROTOCOL_VERSION,
  MODERN_CODES,
  MODERN_VERSION,
  NAME_FIELD,
  paramHeaders,
  paramHeaderValues,
  type ParamHeader,
} from '../../shared/mcp/eras.js';
import { backendError, upstreamAgent, type HttpTransportOptions } from './http-common.js';
import {
  baseHeaders,
  contentType,
  describeNetworkError,
  errorDetail,
  MAX_SSE_EVENT,
  parseHttpUrl,
  pumpSse,
  type BackendErrorCode,
} from './streamable-http.js';
import type { UpstreamMessageContext, UpstreamTransport } from './transport.js';

const ACCEPT = 'application/json, text/event-stream';
const DEFAULT_TIMEOUT_MS = 120_000;
const MAX_TOOL_PAGES = 100;

/** What one POST came to. */
type Outcome =
  | { kind: 'answer'; message: JsonRpcMessage }
  | { kind: 'refused'; status: number; message: JsonRpcMessage | undefined; text: string }
  | { kind: 'failed'; code: BackendErrorCode; text: string; status?: number };

/** How a listen stream ended: the server's final result, a drop, or a refusal before the stream. */
export type ListenEnd =
  | { kind: 'graceful' }
  | { kind: 'dropped'; error?: string }
  | { kind: 'refused'; error: string; status?: number };

export class StatelessHttpTransport implements UpstreamTransport {
  onmessage?: (message: JsonRpcMessage, context: UpstreamMessageContext) => void;
  onerror?: (error: Error) => void;
  onclose?: (reason?: Error) => void;
  readonly sessionId = undefined;

  private readonly origin: string;
  private readonly path: string;
  private readonly base: Record<string, string>;
  private readonly timeoutMs: number;
  private readonly abort = new AbortController();
  private readonly inflight = new Map<JsonRpcId, AbortController>();
  /** Tool name -> its `x-mcp-header` declarations, from the last tools/list seen. */
  private readonly declarations = new Map<string, ParamHeader[]>();
  private nextInternal = 0;
  private closed = false;

  constructor(private readonly o: HttpTransportOptions) {
    const u = parseHttpUrl(o.url);
    this.origin = u.origin;
    this.path = `${u.pathname}${u.search}`;
    this.base = baseHeaders(u, o.headers);
    this.timeoutMs = o.requestTimeoutMs ?? DEFAULT_TIMEOUT_MS;
    setMaxListeners(0, this.abort.signal);
  }

  async start(): Promise<void> {
    if (this.closed) throw new Error('transport is closed');
  }

  /** The version travels in each request's envelope and header; nothing to remember. */
  setProtocolVersion(): void {}

  async send(message: JsonRpcMessage): Promise<void> {
    const kind = classify(message);
    if (kind === 'notification') {
      const n = message as { method: string; params?: JsonObject };
      if (n.method === 'notifications/cancelled') {
        const id = n.params?.requestId as JsonRpcId | undefined;
        if (id !== undefined) this.inflight.get(id)?.abort('cancelled');
      }
      return;
    }
    if (kind !== 'request') return; // a 2026 server sends no requests, so there is nothing to answer
    const req = message as JsonRpcRequest;
    if (this.closed) return this.fail(req.id, 'GW_BACKEND_UNAVAILABLE', 'backend connection is closed');
    const ctrl = new AbortController();
    this.inflight.set(req.id, ctrl);
    try {
      const ctx: UpstreamMessageContext = { relatedRequestId: req.id };
      const related = (m: JsonRpcMessage) => this.onmessage?.(m, ctx);
      let out = await this.post(req, ctrl.signal, related);
      if (
        out.kind === 'refused' &&
        req.method === 'tools/call' &&
        errorCode(out.message) === MODERN_CODES.HeaderMismatch &&
        !ctrl.signal.aborted
      ) {
        // Our declarations were stale (or never fetched): refresh them and try once more.
        await this.refreshTools(req, ctrl.signal);
        out = await this.post(req, ctrl.signal, related);
      }
      if (ctrl.signal.aborted) return; // cancelled: the caller already gave up on the answer
      switch (out.kind) {
        case 'answer':
          if (req.method === 'tools/list') this.noteTools(req, out.message);
          return this.onmessage?.(out.message, ctx);
        case 'refused':
          if (out.message) return this.onmessage?.({ ...out.message, id: req.id } as JsonRpcMessage, ctx);
          return this.fail(
            req.id,
            out.status === 408 || out.status === 504 ? 'GW_BACKEND_TIMEOUT' : 'GW_BACKEND_UNAVAILABLE',
            `backend answered HTTP ${out.status}${out.text ? `: ${out.text}` : ''}`,
            out.status,
          );
        case 'failed':
          return this.fail(req.id, out.code, out.text, out.status);
      }
    } finally {
      this.inflight.delete(req.id);
    }
  }

  /**
   * Holds a `subscriptions/listen` request open, handing every notification on its stream to
   * `onNotification` (the acknowledgement included). Resolves when the stream ends or `signal` aborts.
   */
  async listen(
    request: JsonRpcRequest,
    onNotification: (n: JsonRpcMessage) => void,
    signal: AbortSignal,
  ): Promise<ListenEnd> {
    const out = await this.post(request, signal, onNotification, true);
    if (out.kind === 'answer') {
      const error = (out.message as { error?: { message?: string } }).error;
      return error ? { kind: 'refused', error: error.message ?? 'refused' } : { kind: 'graceful' };
    }
    if (out.kind === 'refused') {
      const msg = out.message as { error?: { message?: string } } | undefined;
      return { kind: 'refused', status: out.status, error: msg?.error?.message ?? out.text };
    }
    if (signal.aborted || out.status === undefined) return { kind: 'dropped', error: out.text };
    return { kind: 'refused', error: out.text, status: out.status };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.abort.abort('transport closed');
    this.onclose?.();
  }

  // ---------------------------------------------------------------------------------------------------

  /** One POST: the response (after any related messages), a refusal, or a failure. */
  private async post(
    req: JsonRpcRequest,
    signal: AbortSignal,
    related: (m: JsonRpcMessage) => void,
    longLived = false,
  ): Promise<Outcome> {
    let res: Dispatcher.ResponseData;
    try {
      res = await upstreamAgent.request({
        origin: this.origin,
        path: this.path,
        method: 'POST',
        headers: this.headersFor(req),
        body: JSON.stringify(req),
        headersTimeout: this.timeoutMs,
        bodyTimeout: 0,
        signal: AbortSignal.any([signal, this.abort.signal]),
      });
    } catch (err) {
      if (signal.aborted || this.closed)
        return { kind: 'failed', code: 'GW_BACKEND_UNAVAILABLE', text: 'request aborted' };
      const d = describeNetworkError(err, this.timeoutMs);
      return { kind: 'failed', code: d.code, text: d.text };
    }
    const status = res.statusCode;
    const ctype = contentType(res.headers);
    if (status >= 200 && status < 300 && ctype.startsWith('text/event-stream'))
      return this.readStream(res, req.id, related, longLived);
    const text = await res.body.text().catch(() => '');
    let parsed: unknown;
    try {
      parsed = text.length > 0 ? JSON.parse(text) : undefined;
    } catch {
      parsed = undefined;
    }
    const message = classify(parsed) === 'response' ? (parsed as JsonRpcMessage) : undefined;
    if (status < 200 || status >= 300) return { kind: 'refused', status, message, text: errorDetail(text) };
    if (!message)
      return {
        kind: 'failed',
        code: 'GW_BACKEND_PROTOCOL_ERROR',
        text: `backend answered HTTP ${status} without a JSON-RPC response (${ctype || 'no content type'})`,
        status,
      };
    return { kind: 'answer', message };
  }

  private async readStream(
    res: Dispatcher.ResponseData,
    id: JsonRpcId,
    related: (m: JsonRpcMessage) => void,
    longLived: boolean,
  ): Promise<Outcome> {
    let answer: JsonRpcMessage | undefined;
    const parser = createParser({
      onEvent: (ev) => {
        if (answer || (ev.event !== undefined && ev.event !== 'message') || ev.data.length === 0) return;
        let v: unknown;
        try {
          v = JSON.parse(ev.data);
        } catch {
          return;
        }
        const k = classify(v);
        if (k === 'response' && (v as { id?: unknown }).id === id) {
          answer = v as JsonRpcMessage;
          res.body.destroy(); // the stream ends after the response
          return;
        }
        if (k === 'notification') related(v as JsonRpcMessage);
      },
      maxBufferSize: MAX_SSE_EVENT,
    });
    const err = await pumpSse(res.body, parser);
    if (answer) return { kind: 'answer', message: answer };
    return {
      kind: 'failed',
      code: 'GW_BACKEND_UNAVAILABLE',
      text: longLived
        ? `listen stream ended${err ? `: ${(err as Error).message ?? String(err)}` : ''}`
        : 'backend closed the response stream before answering',
    };
  }

  private headersFor(req: JsonRpcRequest): Record<string, string> {
    const meta = req.params?._meta as JsonObject | undefined;
    const version =
      typeof meta?.[META_PROTOCOL_VERSION] === 'string' ? meta[META_PROTOCOL_VERSION] : MODERN_VERSION;
    const h: Record<string, string> = {
      ...this.base,
      'content-type': 'application/json',
      accept: ACCEPT,
      'mcp-protocol-version': version as string,
      'mcp-method': req.method,
    };
    const field = NAME_FIELD[req.method];
    const named = field === undefined ? undefined : req.params?.[field];
    if (typeof named === 'string') h['mcp-name'] = encodeHeaderValue(named);
    if (req.method === 'tools/call' && typeof named === 'string') {
      const decls = this.declarations.get(named);
      if (decls) Object.assign(h, paramHeaderValues(decls, req.params?.arguments));
    }
    return h;
  }

  /** Remembers the header declarations of the tools in a tools/list answer (a first page starts afresh). */
  private noteTools(req: JsonRpcRequest, answer: JsonRpcMessage): void {
    const result = (answer as { result?: JsonObject }).result;
    if (!result || !Array.isArray(result.tools)) return;
    if (req.params?.cursor === undefined) this.declarations.clear();
    for (const t of result.tools as JsonObject[]) {
      if (typeof t?.name !== 'string') continue;
      const decls = paramHeaders(t.inputSchema);
      if (decls.length > 0) this.declarations.set(t.name, decls);
      else this.declarations.delete(t.name);
    }
  }

  private async refreshTools(like: JsonRpcRequest, signal: AbortSignal): Promise<void> {
    const meta = like.params?._meta as JsonObject | undefined;
    let cursor: unknown;
    for (let page = 0; page < MAX_TOOL_PAGES; page++) {
      const req: JsonRpcRequest = {
        jsonrpc: '2.0',
        id: `mcpgw-tools-${++this.nextInternal}`,
        method: 'tools/list',
        params: { ...(cursor === undefined ? {} : { cursor }), ...(meta && { _meta: meta }) },
      };
      const out = await this.post(req, signal, () => {});
      if (out.kind !== 'answer') return;
      this.noteTools(req, out.message);
      cursor = (out.message as { result?: JsonObject }).result?.nextCursor;
      if (typeof cursor !== 'string' || cursor === '') return;
    }
  }

  private fail(id: JsonRpcId, code: BackendErrorCode, text: string, status?: number): void {
    this.onmessage?.(backendError(id, code, text, status), { relatedRequestId: id });
  }
}

function errorCode(m: JsonRpcMessage | undefined): number | undefined {
  return (m as { error?: { code?: number } } | undefined)?.error?.code;
}
