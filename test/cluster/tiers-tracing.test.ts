/**
 * One trace across the tier split, with edge and core as separate processes (`mcpgw start`, role edge and
 * role core). Both export their spans over OTLP/HTTP (JSON) to a receiver in this test, which keeps them in
 * memory; the backends (stdio, Streamable HTTP, legacy SSE) tell what trace context reached them. A call
 * with the client's traceparent must give one trace: the edge's request, authenticate and forward spans,
 * the core's route, quota, authorize, select_backend and backend_call spans under the edge's forward span,
 * and the backend_call span's context at the backend (in `_meta`, and in the headers over HTTP).
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { createPublicKey, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { recorderHttp, recorderSse } from '../fixtures/trace-recorder.js';
import { JwksServer, mint, signingKey } from '../helpers/auth.js';
import { MCP_HEADERS, raw } from '../helpers/gateway.js';
import { freePort, ROOT, spawnUntil, stopChild } from '../helpers/net.js';
import { makeSigningKey } from '../helpers/pki.js';

const MAIN = `${ROOT}dist/cli/main.js`;
const TRACE_ID = '0af7651916cd43dd8448eb211c80319c';
const CLIENT_SPAN = 'b7ad6b7169203331';

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  status?: { code?: number };
  attributes?: { key: string; value: Record<string, unknown> }[];
  service: string;
}

/** OTLP JSON ids are hex; a receiver that meets base64 (the protobuf JSON mapping) converts it. */
const hex = (id: string | undefined) =>
  id === undefined || id === ''
    ? undefined
    : /^[0-9a-f]+$/.test(id)
      ? id
      : Buffer.from(id, 'base64').toString('hex');

/** A minimal OTLP/HTTP traces receiver: every span it is sent, with the sender's service.name. */
async function otlpReceiver(): Promise<{
  url: string;
  spans: OtlpSpan[];
  contentTypes: Set<string>;
  server: Server;
}> {
  const spans: OtlpSpan[] = [];
  const contentTypes = new Set<string>();
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      contentTypes.add(String(req.headers['content-type']));
      if (req.url !== '/v1/traces' || !String(req.headers['content-type']).includes('json'))
        return void res.writeHead(415).end();
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
        resourceSpans: {
          resource: { attributes: { key: string; value: { stringValue?: string } }[] };
          scopeSpans: { spans: OtlpSpan[] }[];
        }[];
      };
      for (const rs of body.resourceSpans) {
        const service = rs.resource.attributes.find((a) => a.key === 'mcpgw.role')?.value.stringValue ?? '?';
        for (const ss of rs.scopeSpans)
          for (const s of ss.spans)
            spans.push({
              ...s,
              traceId: hex(s.traceId)!,
              spanId: hex(s.spanId)!,
              ...(hex(s.parentSpanId) && { parentSpanId: hex(s.parentSpanId) }),
              service,
            });
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/traces`,
    spans,
    contentTypes,
    server,
  };
}

const attr = (s: OtlpSpan, key: string) => {
  const v = s.attributes?.find((a) => a.key === key)?.value;
  return v === undefined ? undefined : (v.stringValue ?? v.intValue ?? v.boolValue);
};

describe(
  'a span tree across edge, core and backend (separate processes, OTLP export)',
  { timeout: 120_000 },
  () => {
    const dir = mkdtempSync(join(tmpdir(), 'mcpgw-tier-trace-'));
    const children: ChildProcess[] = [];
    let receiver: Awaited<ReturnType<typeof otlpReceiver>>;
    let http: { url: string; server: Server };
    let sse: { url: string; server: Server };
    let jwks: JwksServer;
    let key: Awaited<ReturnType<typeof signingKey>>;
    let edgeUrl = '';
    let token = '';
    /** The core's log lines (it logs at debug: its access lines). */
    const coreLines: Record<string, unknown>[] = [];

    async function spawnNode(name: string, doc: object): Promise<void> {
      const file = join(dir, `${name}.json`);
      writeFileSync(file, JSON.stringify({ store: { kind: 'memory' }, ...doc }));
      // Short export delay: the spans arrive within a second rather than the default five.
      children.push(
        await spawnUntil(process.execPath, [MAIN, 'start', '--config', file], /mcpgw listening/, {
          OTEL_BSP_SCHEDULE_DELAY: '200',
        }),
      );
    }

    before(async () => {
      receiver = await otlpReceiver();
      http = await recorderHttp();
      sse = await recorderSse();
      jwks = await new JwksServer().start();
      key = await signingKey('k1');
      jwks.keys = [key];
      token = await mint(key, { sub: 'alice', scope: 'mcp:access' });
      const edgeKey = makeSigningKey(dir, 'edge-signing');
      const jwk = createPublicKey(readFileSync(edgeKey.pub, 'utf8')).export({ format: 'jwk' });
      writeFileSync(join(dir, 'trusted.jwks.json'), JSON.stringify({ keys: [jwk] }));
      const [corePort, edgePort] = [await freePort(), await freePort()];
      const tracing = { enabled: true, exporter: 'otlp', endpoint: receiver.url, sampleRatio: 1 };
      await spawnNode('core', {
        role: 'core',
        region: 'eu',
        listen: { host: '127.0.0.1', port: corePort },
        log: { level: 'debug' },
        internal: { id: 'core-eu-1', trustedKeys: [join(dir, 'trusted.jwks.json')] },
        telemetry: { tracing: { ...tracing, serviceName: 'mcpgw-core' } },
        quotas: {
          enabled: true,
          servers: {
            rechttp: { tools: { whoami: { limit: 1000, windowMs: 60_000 } } },
            recsse: { tools: { whoami: { limit: 1000, windowMs: 60_000 } } },
            recstdio: { tools: { whoami: { limit: 1000, windowMs: 60_000 } } },
          },
        },
        servers: [
          {
            name: 'recstdio',
            transport: 'stdio',
            command: process.execPath,
            args: [`${ROOT}dist/test/fixtures/trace-recorder.js`],
          },
          { name: 'rechttp', transport: 'streamable-http', url: http.url },
          { name: 'recsse', transport: 'sse', url: sse.url },
        ],
      });
      let pending = '';
      children[0]!.stdout!.on('data', (b: Buffer) => {
        const parts = (pending + b.toString()).split('\n');
        pending = parts.pop()!;
        for (const l of parts)
          if (l.startsWith('{')) coreLines.push(JSON.parse(l) as Record<string, unknown>);
      });
      await spawnNode('edge', {
        role: 'edge',
        region: 'eu',
        listen: { host: '127.0.0.1', port: edgePort },
        log: { level: 'info' },
        cores: [{ region: 'eu', id: 'core-eu-1', url: `http://127.0.0.1:${corePort}` }],
        internal: { id: 'edge-eu', signingKey: edgeKey.priv },
        auth: {
          mode: 'jwt',
          jwt: { issuer: 'https://issuer.test', audience: 'https://gateway.test/mcp', jwksUrl: jwks.url },
        },
        // The edge exports from a worker thread (exportThread: worker), the core on its event loop: both paths.
        telemetry: { tracing: { ...tracing, serviceName: 'mcpgw-edge', exportThread: 'worker' } },
      });
      edgeUrl = `http://127.0.0.1:${edgePort}`;
    });

    after(async () => {
      await Promise.all(children.map((c) => stopChild(c)));
      receiver.server.close();
      http.server.close();
      sse.server.closeAllConnections();
      sse.server.close();
      await jwks.stop();
      rmSync(dir, { recursive: true, force: true });
    });

    /** The headers of a request in session `sid`, with the caller's token. */
    const inSession = (sid: string): Record<string, string> => ({
      ...MCP_HEADERS,
      authorization: `Bearer ${token}`,
      'mcp-session-id': sid,
      'mcp-protocol-version': '2025-11-25',
    });

    async function session(): Promise<string> {
      const auth = { authorization: `Bearer ${token}` };
      const r = await raw(`${edgeUrl}/mcp`, {
        headers: { ...MCP_HEADERS, ...auth },
        body: {
          jsonrpc: '2.0',
          id: 1,
          method: 'initialize',
          params: {
            protocolVersion: '2025-11-25',
            capabilities: {},
            clientInfo: { name: 't', version: '1' },
          },
        },
      });
      const sid = r.headers.get('mcp-session-id');
      assert.ok(r.status === 200 && sid, `initialize: ${r.status} ${r.text}`);
      await raw(`${edgeUrl}/mcp`, {
        headers: inSession(sid),
        body: { jsonrpc: '2.0', method: 'notifications/initialized' },
      });
      return sid;
    }

    async function spansOf(traceId: string, until: (s: OtlpSpan[]) => boolean): Promise<OtlpSpan[]> {
      const deadline = Date.now() + 15_000;
      for (;;) {
        const s = receiver.spans.filter((x) => x.traceId === traceId);
        if (until(s) || Date.now() > deadline) return s;
        await new Promise((r) => setTimeout(r, 100));
      }
    }

    for (const [server, transport] of [
      ['rechttp', 'streamable-http'],
      ['recsse', 'sse'],
      ['recstdio', 'stdio'],
    ] as const) {
      test(`one trace from the client through edge and core to the ${transport} backend`, async () => {
        const sid = await session();
        const traceId = transport === 'stdio' ? TRACE_ID : randomBytes(16).toString('hex');
        const r = await raw(`${edgeUrl}/mcp`, {
          headers: {
            ...inSession(sid),
            traceparent: `00-${traceId}-${CLIENT_SPAN}-01`,
            tracestate: 'vendor=xyz',
          },
          body: {
            jsonrpc: '2.0',
            id: 7,
            method: 'tools/call',
            params: { name: `${server}__whoami`, arguments: {} },
          },
        });
        assert.equal(r.status, 200, r.text);
        const seen = JSON.parse(r.json.result.content[0].text) as {
          meta: Record<string, string> | null;
          headers: Record<string, string | null>;
        };
        const names = [
          'mcpgw.request',
          'mcpgw.authenticate',
          'mcpgw.forward',
          'mcpgw.route',
          'mcpgw.quota',
          'mcpgw.authorize',
          'mcpgw.select_backend',
          'mcpgw.backend_call',
        ];
        const spans = await spansOf(traceId, (s) => names.every((n) => s.some((x) => x.name === n)));
        const one = (name: string) => {
          const found = spans.filter((s) => s.name === name);
          assert.equal(
            found.length,
            1,
            `one ${name} span in the trace; got: ${spans.map((s) => s.name).join(', ')}`,
          );
          return found[0]!;
        };
        const [request, authn, forward, route, quota, authz, select, backend] = names.map(
          one,
        ) as OtlpSpan[] as [OtlpSpan, OtlpSpan, OtlpSpan, OtlpSpan, OtlpSpan, OtlpSpan, OtlpSpan, OtlpSpan];
        // Who made which span: the edge process the first three, the core process the rest.
        for (const s of [request, authn, forward]) assert.equal(s.service, 'edge', `${s.name} from the edge`);
        for (const s of [route, quota, authz, select, backend])
          assert.equal(s.service, 'core', `${s.name} from the core`);
        assert.equal(request.parentSpanId, CLIENT_SPAN, "the client's span is the root's parent");
        assert.equal(authn.parentSpanId, request.spanId);
        assert.equal(forward.parentSpanId, request.spanId);
        assert.equal(
          route.parentSpanId,
          forward.spanId,
          "the core's route span is a child of the edge's forward span",
        );
        for (const s of [quota, authz, select, backend])
          assert.equal(s.parentSpanId, route.spanId, `${s.name} under route`);
        assert.equal(attr(route, 'mcp.tool.name'), `${server}__whoami`);
        assert.equal(attr(backend, 'mcpgw.server'), server);
        assert.equal(attr(authz, 'mcp.tool.name'), 'whoami');
        assert.equal(attr(authn, 'mcpgw.auth.outcome'), 'jwt');
        const expected = `00-${traceId}-${backend.spanId}-01`;
        assert.equal(seen.meta?.traceparent, expected, 'the backend got the backend_call context in _meta');
        assert.equal(seen.meta?.tracestate, 'vendor=xyz');
        if (transport !== 'stdio')
          assert.equal(seen.headers.traceparent, expected, 'and in the traceparent header');
        assert.ok([...receiver.contentTypes].every((c) => c.startsWith('application/json')));
      });
    }

    test("a request the edge does not sample is not traced by the core either (the edge's decision holds)", async () => {
      const sid = await session();
      await new Promise((r) => setTimeout(r, 600)); // the session's own spans exported
      const routes = () => receiver.spans.filter((s) => s.name === 'mcpgw.route').length;
      const before = routes();
      const traceId = randomBytes(16).toString('hex');
      const r = await raw(`${edgeUrl}/mcp`, {
        headers: { ...inSession(sid), traceparent: `00-${traceId}-${CLIENT_SPAN}-00` }, // the client's: not sampled
        body: {
          jsonrpc: '2.0',
          id: 8,
          method: 'tools/call',
          params: { name: 'rechttp__whoami', arguments: {} },
        },
      });
      assert.equal(r.status, 200, r.text);
      const seen = JSON.parse(r.json.result.content[0].text) as { headers: Record<string, string | null> };
      assert.equal(seen.headers.traceparent, null, 'no trace context of ours reaches the backend');
      await new Promise((r) => setTimeout(r, 800)); // the export delay is 200 ms
      assert.equal(routes(), before, 'the core (sampling every new trace) made no span for it');
      assert.deepEqual(
        receiver.spans.filter((s) => s.traceId === traceId),
        [],
      );
      // The trace id still travels: the core's access line for the call names the client's trace.
      const line = coreLines.find(
        (l) => l.msg === 'request' && l.requestId === 8 && l.method === 'tools/call',
      );
      assert.equal(line?.traceId, traceId, 'the core logged the trace id the client sent');
    });

    test('a refused credential ends the authenticate span with an error status', async () => {
      const traceId = randomBytes(16).toString('hex');
      const r = await raw(`${edgeUrl}/mcp`, {
        headers: {
          ...MCP_HEADERS,
          authorization: 'Bearer not-a-jwt',
          traceparent: `00-${traceId}-${CLIENT_SPAN}-01`,
        },
        body: { jsonrpc: '2.0', id: 1, method: 'ping' },
      });
      assert.equal(r.status, 401);
      const spans = await spansOf(traceId, (s) => s.some((x) => x.name === 'mcpgw.authenticate'));
      const authn = spans.find((s) => s.name === 'mcpgw.authenticate');
      assert.ok(authn, 'an authenticate span');
      assert.equal(authn.status?.code, 2, 'status ERROR');
      assert.equal(attr(authn, 'mcpgw.error.code'), 'GW_INVALID_TOKEN');
      assert.ok(!spans.some((s) => s.service === 'core'), 'nothing reached the core');
    });
  },
);
