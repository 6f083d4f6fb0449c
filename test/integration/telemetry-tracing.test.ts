/**
 * Tracing across the gateway and its backends, checked with the SDK's in-memory exporter: the client's
 * traceparent is the parent of the gateway's root span, the stage spans nest (request > forward > route >
 * select_backend, backend_call), and each backend receives the backend_call span's context: in `_meta`
 * over stdio, in `_meta` and the `traceparent` header over Streamable HTTP and legacy HTTP+SSE.
 */
import assert from 'node:assert/strict';
import type { Server } from 'node:http';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { validateConfig } from '../../shared/config/load.js';
import { createLogger } from '../../shared/log.js';
import { startSingleNode, type RunningNode } from '../../cli/single.js';
import { recorderHttp, recorderSse } from '../fixtures/trace-recorder.js';
import { MCP_HEADERS, raw, rawSession } from '../helpers/gateway.js';
import { ROOT } from '../helpers/net.js';

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const CLIENT_SPAN = '00f067aa0ba902b7';

async function gateway(
  tracing: boolean,
  httpUrl: string,
  sseUrl: string,
  exporter?: InMemorySpanExporter,
  sampleRatio = 1,
  logTo?: NodeJS.WritableStream,
): Promise<RunningNode> {
  const level = logTo ? 'debug' : 'silent';
  const config = validateConfig(
    {
      listen: { host: '127.0.0.1', port: 0 },
      log: { level },
      telemetry: { tracing: { enabled: tracing, exporter: 'none', sampleRatio } },
      servers: [
        {
          name: 'recstdio',
          transport: 'stdio',
          command: process.execPath,
          args: [`${ROOT}dist/test/fixtures/trace-recorder.js`],
        },
        { name: 'rechttp', transport: 'streamable-http', url: httpUrl },
        { name: 'recsse', transport: 'sse', url: sseUrl },
      ],
    },
    'test',
    {},
  );
  return startSingleNode(config, {
    log: createLogger(level, logTo),
    spanProcessors: exporter ? [new SimpleSpanProcessor(exporter)] : [],
  });
}

async function call(
  url: string,
  sid: string,
  tool: string,
  extra: { headers?: Record<string, string>; meta?: Record<string, string> } = {},
): Promise<{ meta: Record<string, string> | null; headers: Record<string, string | null> }> {
  const r = await raw(`${url}/mcp`, {
    headers: { ...MCP_HEADERS, 'mcp-session-id': sid, ...extra.headers },
    body: {
      jsonrpc: '2.0',
      id: 7,
      method: 'tools/call',
      params: { name: tool, arguments: {}, ...(extra.meta && { _meta: extra.meta }) },
    },
  });
  assert.equal(r.status, 200, r.text);
  return JSON.parse(r.json.result.content[0].text);
}

/** The spans of one trace, by name; each name must occur once. */
function byName(spans: ReadableSpan[]): Record<string, ReadableSpan> {
  const out: Record<string, ReadableSpan> = {};
  for (const s of spans) {
    assert.equal(out[s.name], undefined, `one ${s.name} span per request`);
    out[s.name] = s;
  }
  return out;
}

const parentOf = (s: ReadableSpan | undefined) => s?.parentSpanContext?.spanId;

describe('tracing', () => {
  let http: { url: string; server: Server };
  let sse: { url: string; server: Server };
  before(async () => {
    http = await recorderHttp();
    sse = await recorderSse();
  });
  after(() => {
    http.server.close();
    sse.server.closeAllConnections();
    sse.server.close();
  });

  describe('enabled, with an in-memory exporter', () => {
    const exporter = new InMemorySpanExporter();
    let gw: RunningNode;
    let sid: string;
    before(async () => {
      gw = await gateway(true, http.url, sse.url, exporter);
      sid = await rawSession(`${gw.url}/mcp`);
    });
    after(() => gw.close());

    for (const [server, transport] of [
      ['rechttp', 'streamable-http'],
      ['recsse', 'sse'],
      ['recstdio', 'stdio'],
    ] as const) {
      it(`a span tree under the client's traceparent reaches the ${transport} backend`, async () => {
        exporter.reset();
        const seen = await call(gw.url, sid, `${server}__whoami`, {
          headers: { traceparent: `00-${TRACE_ID}-${CLIENT_SPAN}-01`, tracestate: 'vendor=abc' },
        });
        const spans = exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === TRACE_ID);
        const t = byName(spans);
        const [request, forward, route, select, backend] = [
          t['mcpgw.request'],
          t['mcpgw.forward'],
          t['mcpgw.route'],
          t['mcpgw.select_backend'],
          t['mcpgw.backend_call'],
        ];
        assert.ok(request && forward && route && select && backend, `spans: ${Object.keys(t).join(', ')}`);
        assert.equal(parentOf(request), CLIENT_SPAN, "the client's span is the root's parent");
        assert.equal(request.parentSpanContext?.isRemote, true);
        assert.equal(parentOf(forward), request.spanContext().spanId);
        assert.equal(parentOf(route), forward.spanContext().spanId);
        assert.equal(parentOf(select), route.spanContext().spanId);
        assert.equal(parentOf(backend), route.spanContext().spanId);
        assert.equal(route.attributes['rpc.method'], 'tools/call');
        assert.equal(route.attributes['mcp.tool.name'], `${server}__whoami`);
        assert.equal(backend.attributes['mcpgw.server'], server);
        assert.equal(request.attributes['http.response.status_code'], 200);

        const expected = `00-${TRACE_ID}-${backend.spanContext().spanId}-01`;
        assert.equal(seen.meta?.traceparent, expected, 'the backend got the backend_call context in _meta');
        assert.equal(seen.meta?.tracestate, 'vendor=abc', 'tracestate travels with it');
        if (transport !== 'stdio') {
          assert.equal(seen.headers.traceparent, expected, 'and in the traceparent header');
          assert.equal(seen.headers.tracestate, 'vendor=abc');
        }
      });
    }

    it('honours a trace context the client carries in params._meta', async () => {
      exporter.reset();
      const trace = 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa';
      const seen = await call(gw.url, sid, 'recstdio__whoami', {
        meta: { traceparent: `00-${trace}-bbbbbbbbbbbbbbbb-01` },
      });
      const t = byName(exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === trace));
      assert.equal(parentOf(t['mcpgw.request']), 'bbbbbbbbbbbbbbbb');
      assert.equal(seen.meta?.traceparent, `00-${trace}-${t['mcpgw.backend_call']!.spanContext().spanId}-01`);
    });

    it("replaces the client's trace keys in _meta and keeps its other keys", async () => {
      exporter.reset();
      const trace = 'cccccccccccccccccccccccccccccccc';
      const seen = await call(gw.url, sid, 'recstdio__whoami', {
        headers: { traceparent: `00-${trace}-dddddddddddddddd-01` },
        meta: {
          traceparent: `00-${'e'.repeat(32)}-${'f'.repeat(16)}-01`,
          tracestate: 'stale=1',
          'example.com/k': 'v',
        },
      });
      const t = byName(exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === trace));
      assert.equal(seen.meta?.traceparent, `00-${trace}-${t['mcpgw.backend_call']!.spanContext().spanId}-01`);
      assert.equal(seen.meta?.tracestate, undefined, 'no tracestate of ours: the stale one is not passed on');
      assert.equal(seen.meta?.['example.com/k'], 'v');
    });

    it('starts a new trace without an incoming context, and ignores a malformed one', async () => {
      exporter.reset();
      const seen = await call(gw.url, sid, 'rechttp__whoami', { headers: { traceparent: 'garbage' } });
      const roots = exporter.getFinishedSpans().filter((s) => s.name === 'mcpgw.request');
      assert.equal(roots.length, 1);
      assert.equal(roots[0]!.parentSpanContext, undefined, 'a root span of a new trace');
      assert.match(String(seen.headers.traceparent), new RegExp(`^00-${roots[0]!.spanContext().traceId}-`));
    });

    it('marks a failed stage', async () => {
      exporter.reset();
      const r = await raw(`${gw.url}/mcp`, {
        headers: { ...MCP_HEADERS, 'mcp-session-id': sid },
        body: { jsonrpc: '2.0', id: 9, method: 'tools/call', params: { name: 'nope__x', arguments: {} } },
      });
      assert.equal(r.json.error.data.code, 'GW_UNKNOWN_TOOL');
      const route = exporter.getFinishedSpans().find((s) => s.name === 'mcpgw.route');
      assert.equal(route?.status.code, 2 /* ERROR */);
      assert.equal(route?.attributes['mcpgw.error.code'], 'GW_UNKNOWN_TOOL');
    });
  });

  describe('sampled at the root (sampleRatio 0: only what a sampled parent asks for)', () => {
    const exporter = new InMemorySpanExporter();
    const lines: Record<string, unknown>[] = [];
    const logTo = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const l of chunk.toString().split('\n'))
          if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
        done();
      },
    });
    let gw: RunningNode;
    let sid: string;
    before(async () => {
      gw = await gateway(true, http.url, sse.url, exporter, 0, logTo);
      sid = await rawSession(`${gw.url}/mcp`);
    });
    after(() => gw.close());

    /** The access line (`request`, debug level) of the latest tools/call. */
    const accessLine = () => lines.filter((l) => l.msg === 'request' && l.method === 'tools/call').at(-1);

    it('names the trace of a request it does not sample on its access line', async () => {
      const unsampled = `00-${'3'.repeat(32)}-${'4'.repeat(16)}-00`;
      const seen = await call(gw.url, sid, 'rechttp__whoami', { headers: { traceparent: unsampled } });
      assert.equal(seen.headers.traceparent, null, 'nothing of ours reaches the backend');
      assert.equal(accessLine()?.traceId, '3'.repeat(32), "the client's trace id");
      // No trace context from the client: a trace id of its own, a new one per request.
      await call(gw.url, sid, 'rechttp__whoami');
      const first = accessLine()?.traceId;
      await call(gw.url, sid, 'rechttp__whoami');
      const second = accessLine()?.traceId;
      assert.match(String(first), /^[0-9a-f]{32}$/);
      assert.match(String(second), /^[0-9a-f]{32}$/);
      assert.notEqual(first, second);
      assert.deepEqual(exporter.getFinishedSpans(), [], 'and no span was recorded');
    });

    it('makes no span and sends no trace context for a request it does not sample', async () => {
      exporter.reset();
      const seen = await call(gw.url, sid, 'rechttp__whoami');
      assert.equal(seen.headers.traceparent, null);
      assert.equal(seen.meta, null);
      assert.deepEqual(exporter.getFinishedSpans(), []);
    });

    it("passes an unsampled client's _meta on unchanged, and records nothing of it", async () => {
      exporter.reset();
      const traceparent = `00-${'1'.repeat(32)}-${'2'.repeat(16)}-00`;
      const seen = await call(gw.url, sid, 'recstdio__whoami', {
        meta: { traceparent, 'example.com/k': 'v' },
      });
      assert.deepEqual(seen.meta, { traceparent, 'example.com/k': 'v' });
      assert.deepEqual(exporter.getFinishedSpans(), []);
    });

    it('follows a sampled parent: the whole stage tree, under it', async () => {
      exporter.reset();
      const seen = await call(gw.url, sid, 'rechttp__whoami', {
        headers: { traceparent: `00-${TRACE_ID}-${CLIENT_SPAN}-01` },
      });
      const t = byName(exporter.getFinishedSpans());
      assert.deepEqual(Object.keys(t).sort(), [
        'mcpgw.authorize',
        'mcpgw.backend_call',
        'mcpgw.forward',
        'mcpgw.request',
        'mcpgw.route',
        'mcpgw.select_backend',
      ]);
      for (const s of Object.values(t)) assert.equal(s.spanContext().traceId, TRACE_ID);
      assert.equal(parentOf(t['mcpgw.request']), CLIENT_SPAN);
      assert.equal(parentOf(t['mcpgw.authorize']), t['mcpgw.route']!.spanContext().spanId);
      assert.equal(
        seen.headers.traceparent,
        `00-${TRACE_ID}-${t['mcpgw.backend_call']!.spanContext().spanId}-01`,
      );
    });
  });

  describe('disabled', () => {
    let gw: RunningNode;
    before(async () => {
      gw = await gateway(false, http.url, sse.url);
    });
    after(() => gw.close());

    it('sends no trace context of its own to backends', async () => {
      const sid = await rawSession(`${gw.url}/mcp`);
      const seenHttp = await call(gw.url, sid, 'rechttp__whoami');
      assert.equal(seenHttp.headers.traceparent, null);
      assert.equal(seenHttp.meta, null);
      const seenStdio = await call(gw.url, sid, 'recstdio__whoami');
      assert.equal(seenStdio.meta, null);
      const seenSse = await call(gw.url, sid, 'recsse__whoami');
      assert.equal(seenSse.headers.traceparent, null);
    });
  });
});
