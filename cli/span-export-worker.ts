/**
 * The worker thread behind OffThreadSpanExporter (cli/off-thread-exporter.ts): it receives finished spans
 * as plain data, rebuilds the fields the OTLP transformer reads, and sends them with the stock
 * OTLPTraceExporter. Turning spans into OTLP JSON and sending them costs about as much CPU as making
 * them; here it is spent beside the event loop that serves requests, not on it.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { createTraceState, type SpanContext } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import type { PlainSpan, WorkerInit, WorkerReply, WorkerRequest } from './off-thread-exporter.js';

const init = workerData as WorkerInit;
const exporter = new OTLPTraceExporter({ url: init.url });
const resource = resourceFromAttributes(init.resource);
const port = parentPort!;

function contextOf(c: PlainSpan['context']): SpanContext {
  return {
    traceId: c.traceId,
    spanId: c.spanId,
    traceFlags: c.traceFlags,
    isRemote: c.isRemote,
    ...(c.traceState ? { traceState: createTraceState(c.traceState) } : {}),
  };
}

function readable(s: PlainSpan): ReadableSpan {
  const ctx = contextOf(s.context);
  return {
    name: s.name,
    kind: s.kind,
    spanContext: () => ctx,
    ...(s.parent ? { parentSpanContext: contextOf(s.parent) } : {}),
    startTime: s.startTime,
    endTime: s.endTime,
    duration: s.duration,
    status: s.status,
    attributes: s.attributes,
    links: s.links.map((l) => ({ ...l, context: contextOf(l.context) })),
    events: s.events,
    ended: true,
    resource,
    instrumentationScope: s.scope,
    droppedAttributesCount: s.droppedAttributesCount,
    droppedEventsCount: s.droppedEventsCount,
    droppedLinksCount: s.droppedLinksCount,
  } as ReadableSpan;
}

port.on('message', (m: WorkerRequest) => {
  if (m.type === 'export') {
    exporter.export(m.spans.map(readable), (r) => {
      if (r.code !== 0)
        port.postMessage({
          type: 'failed',
          spans: m.spans.length,
          error: r.error?.message ?? 'export failed',
        } satisfies WorkerReply);
    });
  } else {
    const done = m.type === 'flush' ? exporter.forceFlush() : exporter.shutdown();
    void done.then(
      () => port.postMessage({ type: 'done', id: m.id } satisfies WorkerReply),
      (err: unknown) =>
        port.postMessage({ type: 'done', id: m.id, error: String(err) } satisfies WorkerReply),
    );
  }
});
