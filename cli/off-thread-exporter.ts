/**
 * A SpanExporter that hands finished spans to a worker thread (cli/span-export-worker.ts), which turns
 * them into OTLP and sends them. On the request thread an export costs a copy of each span's fields
 * into a plain object and a structured clone, instead of the OTLP transform, JSON text and HTTP send
 * (measured: about 4 µs a span on the event loop, docs/performance.md).
 *
 * A batch counts as exported once handed over: the BatchSpanProcessor never waits on the collector, and
 * a failing collector costs the worker, not the requests. Failures come back as messages and are logged
 * (the first one, then at most one line a minute with the count).
 */
import { Worker } from 'node:worker_threads';
import type { Attributes, HrTime, SpanContext, SpanKind, SpanStatus } from '@opentelemetry/api';
import type { ExportResult } from '@opentelemetry/core';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace-base';
import type { Logger } from '../shared/log.js';

/** What crosses to the worker for one span: the fields the OTLP transformer reads. */
export interface PlainSpan {
  name: string;
  kind: SpanKind;
  context: PlainContext;
  parent?: PlainContext;
  startTime: HrTime;
  endTime: HrTime;
  duration: HrTime;
  status: SpanStatus;
  attributes: Attributes;
  links: { context: PlainContext; attributes?: Attributes; droppedAttributesCount?: number }[];
  events: ReadableSpan['events'];
  scope: { name: string; version?: string; schemaUrl?: string };
  droppedAttributesCount: number;
  droppedEventsCount: number;
  droppedLinksCount: number;
}
interface PlainContext {
  traceId: string;
  spanId: string;
  traceFlags: number;
  isRemote?: boolean;
  traceState?: string;
}
export interface WorkerInit {
  url: string;
  resource: Attributes;
}
export type WorkerRequest =
  { type: 'export'; spans: PlainSpan[] } | { type: 'flush' | 'shutdown'; id: number };
export type WorkerReply =
  { type: 'failed'; spans: number; error: string } | { type: 'done'; id: number; error?: string };

function plainContext(c: SpanContext): PlainContext {
  const p: PlainContext = { traceId: c.traceId, spanId: c.spanId, traceFlags: c.traceFlags };
  if (c.isRemote) p.isRemote = true;
  const ts = c.traceState?.serialize();
  if (ts) p.traceState = ts;
  return p;
}

function plain(s: ReadableSpan): PlainSpan {
  const scope = s.instrumentationScope;
  return {
    name: s.name,
    kind: s.kind,
    context: plainContext(s.spanContext()),
    ...(s.parentSpanContext ? { parent: plainContext(s.parentSpanContext) } : {}),
    startTime: s.startTime,
    endTime: s.endTime,
    duration: s.duration,
    status: s.status,
    attributes: s.attributes,
    links: s.links.map((l) => ({
      context: plainContext(l.context),
      ...(l.attributes ? { attributes: l.attributes } : {}),
      ...(l.droppedAttributesCount ? { droppedAttributesCount: l.droppedAttributesCount } : {}),
    })),
    events: s.events,
    scope: {
      name: scope.name,
      ...(scope.version !== undefined ? { version: scope.version } : {}),
      ...(scope.schemaUrl !== undefined ? { schemaUrl: scope.schemaUrl } : {}),
    },
    droppedAttributesCount: s.droppedAttributesCount,
    droppedEventsCount: s.droppedEventsCount,
    droppedLinksCount: s.droppedLinksCount,
  };
}

export class OffThreadSpanExporter implements SpanExporter {
  private readonly worker: Worker;
  private readonly waiting = new Map<number, (error?: string) => void>();
  private nextId = 1;
  private failed = 0;
  private lastReport = 0;
  private stopped = false;

  constructor(init: WorkerInit, log: Logger) {
    this.worker = new Worker(new URL('./span-export-worker.js', import.meta.url), { workerData: init });
    // The worker must not keep a stopping process alive; shutdown() waits for it explicitly.
    this.worker.unref();
    this.worker.on('message', (m: WorkerReply) => {
      if (m.type === 'done') {
        this.waiting.get(m.id)?.(m.error);
        this.waiting.delete(m.id);
        return;
      }
      this.failed += m.spans;
      const now = Date.now();
      if (this.lastReport === 0 || now - this.lastReport >= 60_000) {
        log.warn({ err: m.error, lostSpans: this.failed }, 'span export to the OTLP endpoint failed');
        this.lastReport = now;
        this.failed = 0;
      }
    });
    this.worker.on('error', (err) => log.error({ err: err.message }, 'span export worker failed'));
    this.worker.on('exit', () => {
      this.stopped = true;
      for (const done of this.waiting.values()) done('span export worker exited');
      this.waiting.clear();
    });
  }

  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    if (this.stopped) return done({ code: 1, error: new Error('span export worker stopped') });
    this.worker.postMessage({ type: 'export', spans: spans.map(plain) } satisfies WorkerRequest);
    done({ code: 0 });
  }

  forceFlush(): Promise<void> {
    return this.ask('flush');
  }

  async shutdown(): Promise<void> {
    await this.ask('shutdown');
    await this.worker.terminate();
  }

  private ask(type: 'flush' | 'shutdown'): Promise<void> {
    if (this.stopped) return Promise.resolve();
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.waiting.set(id, () => resolve());
      this.worker.postMessage({ type, id } satisfies WorkerRequest);
    });
  }
}
