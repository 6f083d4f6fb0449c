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
 *
 * Contexts are passed explicitly, stage to stage (`startStage(name, parent)`, `inStage`'s callback, and a
 * message's context with `setMessageTrace`/`messageTrace` between layers): no context manager is
 * registered, so Node's AsyncLocalStorage promise hooks are not paid on every await of every request. The
 * sampling decision is made once, at a request's root (`sampledParent`); a request not sampled makes no
 * span, context or stage wrapper at all.
 */
import { randomFillSync } from 'node:crypto';
import {
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
import { ObjectSlot } from '../object-slot.js';

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
/** The share of new traces sampled (`telemetry.tracing.sampleRatio`). */
let ratio = 1;

/**
 * Called by the composition root after registering a tracer provider, with the share of new traces to
 * sample; `false` turns tracing off again.
 */
export function enableTracing(on = true, sampleRatio = 1): void {
  active = on;
  ratio = sampleRatio;
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

/** A started stage: `ctx` is the context its child stages are made under (its span as their parent). */
export interface StageSpan {
  readonly span: Span;
  readonly ctx: Context;
}

/**
 * Whether a request is traced, decided once at its root: the parent's sampled flag when it names a valid
 * span context (a client's or an upstream tier's `traceparent`), else `sampleRatio`. The context to make
 * the request's spans under (the root context for a new trace), or undefined when it is not sampled: no
 * span, context or wrapper is then made for it anywhere on its path (the incoming `_meta` is forwarded
 * as it came). The SDK's own sampler only follows this decision (parent-based, new roots always on).
 */
export function sampledParent(parent: Context): Context | undefined {
  if (!active) return undefined;
  const sc = trace.getSpanContext(parent);
  if (sc && trace.isSpanContextValid(sc))
    return (sc.traceFlags & TraceFlags.SAMPLED) === TraceFlags.SAMPLED ? parent : undefined;
  return ratio >= 1 || Math.random() < ratio ? parent : undefined;
}

/**
 * Starts the span of a stage under `parent`, the context of the stage it belongs to (contexts are passed
 * explicitly: no context manager, so no AsyncLocalStorage hooks on every promise). Undefined when there is
 * no parent (the request is not traced). `attributes` is a function so that nothing is built otherwise.
 */
export function startStage(
  name: StageName,
  parent: Context | undefined,
  options: { kind?: SpanKind; attributes?: () => Attributes } = {},
): StageSpan | undefined {
  if (!active || !parent) return undefined;
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
 * Runs `fn` as a stage under `parent`, handing it the stage's context (for the stages within it); the span
 * ends when `fn` settles. Without a parent (tracing off, or the request not sampled) a plain call of
 * `fn(undefined)`.
 */
export function inStage<T>(
  name: StageName,
  parent: Context | undefined,
  fn: (ctx: Context | undefined) => Promise<T>,
  attributes?: () => Attributes,
): Promise<T> {
  const stage = startStage(name, parent, { attributes });
  // Not traced: fn's own promise, without an async wrapper's (one promise and three microtask turns); a
  // synchronous throw still comes back as a rejection.
  if (!stage)
    try {
      return fn(undefined);
    } catch (err) {
      return Promise.reject(err as Error);
    }
  return traced(stage, fn);
}

async function traced<T>(stage: StageSpan, fn: (ctx: Context | undefined) => Promise<T>): Promise<T> {
  try {
    return await fn(stage.ctx);
  } catch (err) {
    endStage(stage, { code: (err as { code?: string }).code, message: (err as Error)?.message });
    throw err;
  } finally {
    if (stage.span.isRecording()) stage.span.end();
  }
}

/**
 * The trace a JSON-RPC message travels with between the gateway's own layers (the edge's forward stage to
 * the core's route stage, the internal API to the core): keyed by the message object, which each layer
 * hands on, so that no signature needs a context argument and no context manager is needed. A sampled
 * request's entry is the context its spans are made under; a request not sampled keeps its trace id alone
 * (a string: no context, span or wrapper), for its log lines, its audit record and the next tier.
 */
const messageTraces = new ObjectSlot<object, Context | string>('mcpgw.messageTrace');

/**
 * Records the context `message` is traced under, or (not sampled) its trace id; nothing when undefined.
 */
export function setMessageTrace(message: object, trace: Context | string | undefined): void {
  if (trace !== undefined) messageTraces.set(message, trace);
}

/** The context `message` is traced under; undefined when it is not sampled (or tracing is off). */
export function messageTrace(message: object): Context | undefined {
  if (!active) return undefined;
  const t = messageTraces.get(message);
  return typeof t === 'string' ? undefined : t;
}

/** The trace id of `message`, sampled or not; undefined when tracing is off. */
export function messageTraceId(message: object): string | undefined {
  if (!active) return undefined;
  const t = messageTraces.get(message);
  return typeof t === 'string' ? t : traceIdOf(t);
}

/**
 * The trace id of a request that is not sampled: its parent's (a client's or an upstream tier's
 * `traceparent`, flags 00) when it names one, else a new one. W3C trace context propagates the id whatever
 * the sampling decision, so the request's log lines and audit record still name its trace.
 */
export function unsampledTraceId(parent: Context): string {
  const sc = trace.getSpanContext(parent);
  return sc && trace.isSpanContextValid(sc) ? sc.traceId : randomHex(16);
}

/**
 * Random ids for requests not sampled (one or two per request): hex of bytes taken from a pool that
 * the CSPRNG refills 4 KiB at a time, cheaper than a `randomUUID` reshaped per id. Never all zeros
 * (an invalid W3C id).
 */
const pool = Buffer.alloc(4096);
let poolAt = pool.length;
function randomHex(bytes: number): string {
  if (poolAt + bytes > pool.length) {
    randomFillSync(pool);
    poolAt = 0;
  }
  const hex = pool.toString('hex', poolAt, (poolAt += bytes));
  return /^0+$/.test(hex) ? randomHex(bytes) : hex;
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
 * The W3C headers naming the span of `ctx`, for a hop between our own tiers (edge to core): undefined when
 * there is none. The receiving tier makes them the parent with `contextFromTraceparent`.
 */
export function traceHeadersOfContext(
  ctx: Context | undefined,
): { traceparent: string; tracestate?: string } | undefined {
  const span = ctx && trace.getSpan(ctx);
  return span ? traceparentOf(span) : undefined;
}

/**
 * A `traceparent` that says "not sampled" (flags 00; the request's trace id when known, a fresh span id):
 * what an edge with tracing on sends a core for a request it decided not to trace, so that the core
 * follows that decision instead of sampling the request again on its own (which would record core-only
 * fragments of traces), and logs the same trace id. Undefined when tracing is off: the core then decides
 * for itself.
 */
export function unsampledTraceparent(traceId?: string): string | undefined {
  if (!active) return undefined;
  return `00-${traceId ?? randomHex(16)}-${randomHex(8)}-00`;
}

/** The trace id of `ctx`'s span, for log lines and audit records; undefined when there is none. */
export function traceIdOf(ctx: Context | undefined): string | undefined {
  const sc = ctx && trace.getSpanContext(ctx);
  return sc && trace.isSpanContextValid(sc) ? sc.traceId : undefined;
}

export { SpanKind };
