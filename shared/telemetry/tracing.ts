/**
 * Tracing through the OpenTelemetry API only: the SDK and its exporter are chosen by the composition root
 * (cli/), which calls `enableTracing()` once it has registered a tracer provider. Until then every helper
 * here returns at its first line: no span objects, no attribute objects, no context switches, so tracing
 * costs nothing when it is off.
 *
 * The stages of the request path each get a span named `mcpgw.<stage>` (STAGE below); the edge's HTTP
 * request is the root (`mcpgw.request`, kind SERVER), whose parent is the client's W3C trace context when it
 * sends one (a `traceparent` header, or `params._meta.traceparent` as MCP clients carry it). The backend
 * call (`mcpgw.backend_call`, kind CLIENT) hands its context to the backend in `params._meta` (every
 * transport, stdio included) and, for HTTP backends, in the `traceparent`/`tracestate` headers.
 */
import {
  context as otelContext,
  createTraceState,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  TraceFlags,
  type Attributes,
  type Context,
  type Span,
  type Tracer,
} from '@opentelemetry/api';

export const TRACER_NAME = 'mcpgw';

/** Span names of the pipeline stages, in request order. Stages other modules own call `inStage` with these. */
export const STAGE = {
  request: 'mcpgw.request',
  authenticate: 'mcpgw.authenticate',
  quota: 'mcpgw.quota',
  authorize: 'mcpgw.authorize',
  forward: 'mcpgw.forward',
  route: 'mcpgw.route',
  selectBackend: 'mcpgw.select_backend',
  backendCall: 'mcpgw.backend_call',
} as const;
export type StageName = (typeof STAGE)[keyof typeof STAGE];

let active = false;
/** Taken once the provider is registered (the API's proxy tracer keeps the first provider it finds). */
let tracer: Tracer | undefined;

/** Called by the composition root after registering a tracer provider; `false` turns tracing off again. */
export function enableTracing(on = true): void {
  active = on;
  tracer = on ? trace.getTracer(TRACER_NAME) : undefined;
}

/** True when spans are being made: callers skip building attributes otherwise. */
export function tracingActive(): boolean {
  return active;
}

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/**
 * The context a W3C `traceparent` (and optional `tracestate`) names, as the parent of our spans; the root
 * context when the value is absent or malformed (a bad header never fails a request). Parsed here rather
 * than through the global propagator so that it works whatever propagators the SDK was given.
 */
export function contextFromTraceparent(traceparent: unknown, tracestate?: unknown): Context {
  if (typeof traceparent !== 'string') return ROOT_CONTEXT;
  const m = TRACEPARENT.exec(traceparent.trim().toLowerCase());
  if (!m || m[1] === 'ff' || /^0+$/.test(m[2]!) || /^0+$/.test(m[3]!)) return ROOT_CONTEXT;
  return trace.setSpanContext(ROOT_CONTEXT, {
    traceId: m[2]!,
    spanId: m[3]!,
    traceFlags: parseInt(m[4]!, 16) & TraceFlags.SAMPLED,
    isRemote: true,
    ...(typeof tracestate === 'string' && tracestate !== '' && { traceState: createTraceState(tracestate) }),
  });
}

/** The incoming trace context of a client request: the HTTP headers first, else the MCP `_meta` keys. */
export function incomingContext(headers: Record<string, unknown>, params: unknown): Context {
  if (headers.traceparent !== undefined)
    return contextFromTraceparent(headers.traceparent, headers.tracestate);
  const meta = (params as { _meta?: Record<string, unknown> } | undefined)?._meta;
  return meta ? contextFromTraceparent(meta.traceparent, meta.tracestate) : ROOT_CONTEXT;
}

/** A started stage: `ctx` is the context to run the stage's work in (its span as the active one). */
export interface StageSpan {
  readonly span: Span;
  readonly ctx: Context;
}

/**
 * Starts the span of a stage under `parent` (default: the active context). Undefined when tracing is off.
 * `attributes` is a function so that nothing is built for a span that is not recorded.
 */
export function startStage(
  name: StageName,
  options: { parent?: Context; kind?: SpanKind; attributes?: () => Attributes } = {},
): StageSpan | undefined {
  if (!active) return undefined;
  const parent = options.parent ?? otelContext.active();
  const span = tracer!.startSpan(name, { kind: options.kind ?? SpanKind.INTERNAL }, parent);
  if (options.attributes && span.isRecording()) span.setAttributes(options.attributes());
  return { span, ctx: trace.setSpan(parent, span) };
}

/** Ends a stage's span; an error (thrown, or a JSON-RPC error answer) marks it failed. */
export function endStage(stage: StageSpan | undefined, error?: { code?: string; message?: string }): void {
  if (!stage) return;
  if (error) {
    stage.span.setStatus({ code: SpanStatusCode.ERROR, message: error.message });
    if (error.code && stage.span.isRecording()) stage.span.setAttribute('mcpgw.error.code', error.code);
  }
  stage.span.end();
}

/**
 * Runs `fn` as a stage: its span is the active one while `fn` runs (so nested stages and log lines see it)
 * and ends when `fn` settles. With tracing off this is a plain call of `fn`.
 */
export async function inStage<T>(
  name: StageName,
  fn: () => Promise<T>,
  attributes?: () => Attributes,
): Promise<T> {
  if (!active) return fn();
  const stage = startStage(name, { attributes })!;
  try {
    return await otelContext.with(stage.ctx, fn);
  } catch (err) {
    endStage(stage, { code: (err as { code?: string }).code, message: (err as Error)?.message });
    throw err;
  } finally {
    if (stage.span.isRecording()) stage.span.end();
  }
}

/** Runs `fn` with `ctx` as the active context (a no-op wrapper when tracing is off). */
export function withContext<T>(ctx: Context | undefined, fn: () => T): T {
  return active && ctx ? otelContext.with(ctx, fn) : fn();
}

/** `traceparent` of a span (W3C format); undefined for a span without a valid context. */
export function traceparentOf(span: Span): { traceparent: string; tracestate?: string } | undefined {
  const sc = span.spanContext();
  if (!trace.isSpanContextValid(sc)) return undefined;
  const flags = (sc.traceFlags & TraceFlags.SAMPLED) === TraceFlags.SAMPLED ? '01' : '00';
  const traceparent = `00-${sc.traceId}-${sc.spanId}-${flags}`;
  const tracestate = sc.traceState?.serialize();
  return tracestate ? { traceparent, tracestate } : { traceparent };
}

/**
 * `params` with the span's trace context in `_meta` (`traceparent`, `tracestate`), the way MCP carries it
 * on every transport; a new object, the caller's is left alone. Unchanged when there is no stage.
 */
export function withTraceMeta<P extends Record<string, unknown> | undefined>(
  params: P,
  stage: StageSpan | undefined,
): P {
  if (!stage) return params;
  const tp: Record<string, unknown> | undefined = traceparentOf(stage.span);
  if (!tp) return params;
  const theirs = params?._meta as Record<string, unknown> | undefined;
  let meta = tp; // a new object: ours to hand on
  if (theirs) {
    // The client's other keys, without its trace context (no `delete`: it turns the object slow).
    meta = {};
    for (const k of Object.keys(theirs)) if (k !== 'traceparent' && k !== 'tracestate') meta[k] = theirs[k];
    meta.traceparent = tp.traceparent;
    if (tp.tracestate !== undefined) meta.tracestate = tp.tracestate;
  }
  return { ...(params ?? {}), _meta: meta } as unknown as P;
}

/**
 * The W3C headers an HTTP backend transport adds to a message's POST: copied from `params._meta`, so that
 * the transport needs no knowledge of spans. Undefined (the common case) when the message carries none.
 */
export function traceHeadersOf(message: unknown): Record<string, string> | undefined {
  const meta = (message as { params?: { _meta?: Record<string, unknown> } }).params?._meta;
  const tp = meta?.traceparent;
  if (typeof tp !== 'string') return undefined;
  const ts = meta!.tracestate;
  return typeof ts === 'string' ? { traceparent: tp, tracestate: ts } : { traceparent: tp };
}

/**
 * The W3C headers naming the active span, for a hop between our own tiers (edge to core): undefined when
 * tracing is off or no span is active. The receiving tier makes them the parent with `contextFromTraceparent`.
 */
export function activeTraceHeaders(): { traceparent: string; tracestate?: string } | undefined {
  if (!active) return undefined;
  const span = trace.getSpan(otelContext.active());
  return span ? traceparentOf(span) : undefined;
}

/** Trace and span id of the active span, for log lines; undefined when tracing is off or none is active. */
export function activeTraceIds(): { traceId: string; spanId: string } | undefined {
  if (!active) return undefined;
  const span = trace.getSpan(otelContext.active());
  if (!span) return undefined;
  const sc = span.spanContext();
  return trace.isSpanContextValid(sc) ? { traceId: sc.traceId, spanId: sc.spanId } : undefined;
}

export { SpanKind };
