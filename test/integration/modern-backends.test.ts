/**
 * 2026-07-28 backends through the gateway (docs/adr/0004-protocol-eras.md (c), (d), (e)): a 2026-only
 * server and a dual-era one (both `createMcpHandler`, SDK v2 2.4) that `protocol: auto` must call 2026,
 * beside the sessionful 2025 conformance fixture that it must call 2025. Every client kind (2026
 * pinned, v2 default, v1) on `/mcp` and `/servers/{name}/mcp`: lists with or without the 2026 result
 * fields, call, read, prompt, completion, cancellation; sampling, elicitation and roots translated in
 * both directions; change notifications from a 2026 backend reaching 2025 sessions and 2026 listens.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import type { RunningNode } from '../../cli/single.js';
import { generateApiKey } from '../../edge/auth/api-key.js';
import { startModernServer, type ModernServer } from '../fixtures/modern-server.js';
import { MCP_HEADERS, raw, rawSession, startGateway } from '../helpers/gateway.js';
import { freePort, ROOT, spawnUntil, stopChild } from '../helpers/net.js';
import { connectSdk, type SdkClient } from '../helpers/sdk-clients.js';

const V = '2026-07-28';
type Kind = '2026' | 'v2' | 'v1';
const KINDS: Kind[] = ['2026', 'v2', 'v1'];

interface Handlers {
  sampling?: (p: any) => any;
  elicitation?: (p: any) => any;
  roots?: () => any;
}

/** A 2026 client pinned so that a silent fallback to 2025 fails the test. */
async function modernClient(url: string, h: Handlers = {}): Promise<Client> {
  const capabilities: Record<string, unknown> = {};
  if (h.sampling) capabilities.sampling = {};
  if (h.elicitation) capabilities.elicitation = {};
  if (h.roots) capabilities.roots = {};
  const c = new Client({ name: 'mcpgw-test-2026', version: '1.0.0' }, {
    capabilities,
    versionNegotiation: { mode: { pin: V } },
  } as any);
  if (h.sampling) c.setRequestHandler('sampling/createMessage', async (r: any) => h.sampling!(r.params));
  if (h.elicitation) c.setRequestHandler('elicitation/create', async (r: any) => h.elicitation!(r.params));
  if (h.roots) c.setRequestHandler('roots/list', async () => h.roots!());
  await c.connect(new StreamableHTTPClientTransport(new URL(url)));
  assert.equal((c as any).getProtocolEra(), 'modern');
  return c;
}

async function connect(kind: Kind, url: string, h: Handlers = {}): Promise<SdkClient> {
  if (kind === '2026') return (await modernClient(url, h)) as unknown as SdkClient;
  return connectSdk(kind, url, h);
}

const ENVELOPE = {
  'io.modelcontextprotocol/protocolVersion': V,
  'io.modelcontextprotocol/clientCapabilities': {},
  'io.modelcontextprotocol/clientInfo': { name: 'raw-2026', version: '1' },
};

describe('2026-07-28 backends through the gateway', { timeout: 120_000 }, () => {
  let gw: RunningNode;
  let modern: ModernServer;
  let dual: ModernServer;
  let legacy: ChildProcess;

  before(async () => {
    [modern, dual] = await Promise.all([
      startModernServer({ name: 'modern-only', legacy: 'reject', toolsTtlMs: 30_000 }),
      startModernServer({ name: 'dual-era', legacy: 'stateless', toolsTtlMs: 5_000 }),
    ]);
    const port = await freePort();
    legacy = await spawnUntil(
      process.execPath,
      [`${ROOT}dist/test/fixtures/conformance-server.js`, '--port', String(port)],
      /listening/,
    );
    gw = await startGateway({
      servers: [
        // protocol defaults to auto: the probe decides each one's era.
        { name: 'modern', transport: 'streamable-http', url: modern.url },
        { name: 'dual', transport: 'streamable-http', url: dual.url },
        { name: 'legacy', transport: 'streamable-http', url: `http://127.0.0.1:${port}/mcp` },
      ],
    });
  });
  after(async () => {
    await gw?.close();
    await Promise.all([modern?.close(), dual?.close(), stopChild(legacy)]);
  });

  const rawModern = (
    url: string,
    method: string,
    params: object = {},
    headers: Record<string, string> = {},
    capabilities: object = {},
  ) =>
    raw(url, {
      headers: { ...MCP_HEADERS, 'mcp-protocol-version': V, 'mcp-method': method, ...headers },
      body: {
        jsonrpc: '2.0',
        id: 7,
        method,
        params: {
          ...params,
          _meta: { ...ENVELOPE, 'io.modelcontextprotocol/clientCapabilities': capabilities },
        },
      },
    });

  test('auto calls the 2026-only and the dual-era server 2026 and the sessionful one 2025', async () => {
    const before = modern.record.callHeaders.length;
    const c = await connectSdk('v1', `${gw.url}/mcp`);
    await c.callTool({ name: 'modern__echo', arguments: { message: 'a' } });
    await c.callTool({ name: 'dual__echo', arguments: { message: 'b' } });
    const l: any = await c.callTool({ name: 'legacy__test_simple_text', arguments: {} });
    assert.equal(l.content[0].text, 'This is a simple text response for testing.');
    await c.close();
    // The 2026-only server would refuse anything but 2026 requests; it saw one with its headers.
    const seen = modern.record.callHeaders.slice(before);
    assert.equal(seen.length, 1);
    assert.deepEqual(
      [seen[0]!['mcp-protocol-version'], seen[0]!['mcp-method'], seen[0]!['mcp-name']],
      [V, 'tools/call', 'echo'],
    );
    assert.equal(dual.record.callHeaders.at(-1)?.['mcp-method'], 'tools/call', 'dual-era served as 2026');
  });

  test("with authentication on, a backend's cacheScope public becomes private (views differ per caller)", async () => {
    const pepper = 'a-test-pepper-of-enough-length';
    const key = generateApiKey(pepper);
    const secured = await startGateway({
      auth: {
        mode: 'api-key',
        apiKeys: { pepper, keys: [{ id: key.id, hash: key.hash, owner: 'ada', tenant: 'acme', roles: [] }] },
      },
      servers: [{ name: 'modern', transport: 'streamable-http', url: modern.url }],
    });
    try {
      const one = await rawModern(
        `${secured.url}/servers/modern/mcp`,
        'tools/list',
        {},
        {
          authorization: `Bearer ${key.key}`,
        },
      );
      assert.equal(one.status, 200);
      assert.deepEqual([one.json.result.ttlMs, one.json.result.cacheScope], [30_000, 'private']);
    } finally {
      await secured.close();
    }
  });

  test('2026 answers carry resultType, ttlMs and cacheScope; 2025 answers none of them', async () => {
    // 2026, aggregate: the least ttlMs of the contributors (a 2025 server counts 0), private.
    const agg = await rawModern(`${gw.url}/mcp`, 'tools/list');
    assert.equal(agg.status, 200);
    assert.equal(agg.json.result.resultType, 'complete');
    assert.equal(agg.json.result.ttlMs, 0);
    assert.equal(agg.json.result.cacheScope, 'private');
    // 2026, one server: the backend's own hints, passed through.
    const one = await rawModern(`${gw.url}/servers/modern/mcp`, 'tools/list');
    assert.deepEqual(
      [one.json.result.resultType, one.json.result.ttlMs, one.json.result.cacheScope],
      ['complete', 30_000, 'public'],
    );
    const read = await rawModern(
      `${gw.url}/servers/modern/mcp`,
      'resources/read',
      { uri: 'note://modern-only' },
      {
        'mcp-name': 'note://modern-only',
      },
    );
    assert.equal(read.json.result.contents[0].text, 'a note of modern-only');
    assert.equal(typeof read.json.result.ttlMs, 'number');
    // 2025 sessions on both endpoints: none of the 2026 fields, no 2026 serverInfo in _meta.
    for (const url of [`${gw.url}/mcp`, `${gw.url}/servers/modern/mcp`]) {
      const sid = await rawSession(url);
      const h = { ...MCP_HEADERS, 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' };
      for (const [method, params] of [
        ['tools/list', {}],
        ['resources/list', {}],
        ['prompts/list', {}],
        ['resources/read', { uri: 'note://modern-only' }],
        [
          'tools/call',
          {
            name: url.endsWith('/servers/modern/mcp') ? 'echo' : 'modern__echo',
            arguments: { message: 'x' },
          },
        ],
      ] as const) {
        const r = await raw(url, { headers: h, body: { jsonrpc: '2.0', id: 1, method, params } });
        const result = r.json?.result ?? JSON.parse(r.text.split('data: ').at(-1)!).result;
        assert.ok(result, `${method} answered on ${url}`);
        for (const k of ['resultType', 'ttlMs', 'cacheScope'])
          assert.equal(result[k], undefined, `${method} on ${url} has no ${k}`);
        assert.equal(result._meta?.['io.modelcontextprotocol/serverInfo'], undefined);
      }
    }
  });

  for (const kind of KINDS)
    for (const scoped of [false, true])
      test(`${kind} client on ${scoped ? '/servers/modern/mcp' : '/mcp'}: list, call, read, prompt, completion`, async () => {
        const c = await connect(kind, scoped ? `${gw.url}/servers/modern/mcp` : `${gw.url}/mcp`);
        const n = (name: string) => (scoped ? name : `modern__${name}`);
        const { tools } = await c.listTools();
        assert.ok(tools.some((t: any) => t.name === n('echo')));
        assert.ok(tools.some((t: any) => t.name === n('regional')));
        const echo: any = await c.callTool({ name: n('echo'), arguments: { message: kind } });
        assert.equal(echo.content[0].text, `Echo: ${kind}`);
        // The backend checks Mcp-Param-Region against the argument (Base64 form for a non-ASCII value).
        const region: any = await c.callTool({ name: n('regional'), arguments: { region: 'eu-ö' } });
        assert.equal(region.content[0].text, 'region=eu-ö');
        assert.equal(modern.record.callHeaders.at(-1)?.['mcp-param-region'], '=?base64?ZXUtw7Y=?=');
        const { resources } = await c.listResources();
        assert.ok(resources.some((r: any) => r.uri === 'note://modern-only'));
        const read: any = await c.readResource({ uri: 'note://modern-only' });
        assert.equal(read.contents[0].text, 'a note of modern-only');
        const prompt: any = await c.getPrompt({ name: n('greet'), arguments: { name: 'bob' } });
        assert.equal(prompt.messages[0].content.text, 'Hello bob');
        const done: any = await c.complete({
          ref: { type: 'ref/prompt', name: n('greet') },
          argument: { name: 'name', value: 'al' },
        });
        assert.deepEqual(done.completion.values, ['alice', 'albert']);
        if (kind !== '2026') {
          assert.equal(echo.resultType, undefined, 'a 2025 client never sees resultType');
          assert.equal(echo._meta?.['io.modelcontextprotocol/serverInfo'], undefined);
        }
        await c.close();
      });

  for (const kind of KINDS)
    for (const scoped of [false, true])
      test(`${kind} client on ${scoped ? '/servers/modern/mcp' : '/mcp'}: cancelling a call aborts the backend's request`, async () => {
        const c = await connect(kind, scoped ? `${gw.url}/servers/modern/mcp` : `${gw.url}/mcp`);
        const ctrl = new AbortController();
        const started = modern.waitStarted();
        const cancelled = modern.cancellation();
        const call = c.callTool(
          { name: scoped ? 'wait' : 'modern__wait', arguments: {} },
          { signal: ctrl.signal },
        );
        await started;
        ctrl.abort('enough');
        await assert.rejects(call);
        await cancelled;
        await c.close();
      });

  test('2025 client on /servers/modern/mcp: elicitation from the 2026 server becomes a real request', async () => {
    const c = await connectSdk('v2', `${gw.url}/servers/modern/mcp`, {
      elicitation: () => ({ action: 'accept', content: { yes: false } }),
    });
    const r: any = await c.callTool({ name: 'confirm', arguments: {} });
    assert.equal(r.content[0].text, 'action=accept yes=false');
    await c.close();
  });

  for (const kind of ['v2', 'v1'] as const)
    test(`${kind} (2025) client, 2026 backend: elicitation, sampling and roots become real requests`, async () => {
      const asked: string[] = [];
      const c = await connectSdk(kind, `${gw.url}/mcp`, {
        elicitation: (p) => {
          asked.push(`elicit:${p.message}`);
          return p.message === 'Sure?'
            ? { action: 'accept', content: { yes: true } }
            : { action: 'accept', content: { name: 'ada' } };
        },
        sampling: (p) => {
          asked.push(`sample:${p.messages[0].content.text}`);
          return { role: 'assistant', content: { type: 'text', text: 'short' }, model: 'm' };
        },
        roots: () => {
          asked.push('roots');
          return { roots: [{ uri: 'file:///work', name: 'work' }] };
        },
      });
      const confirm: any = await c.callTool({ name: 'modern__confirm', arguments: {} });
      assert.equal(confirm.content[0].text, 'action=accept yes=true');
      const summary: any = await c.callTool({ name: 'dual__summarize', arguments: {} });
      assert.equal(summary.content[0].text, 'summary=short');
      // Roots, then a state-only round (requestState echoed verbatim), then an elicitation.
      const rounds: number[] = [];
      const two: any = await c.callTool(
        { name: 'modern__two-rounds', arguments: {} },
        { onprogress: (p: any) => rounds.push(p.progress) },
      );
      assert.equal(two.content[0].text, 'roots=1 name=ada');
      assert.deepEqual(rounds, [1, 2, 3], 'a progress notification per round');
      assert.deepEqual(asked, ['elicit:Sure?', 'sample:summarize this', 'roots', 'elicit:Name?']);
      assert.equal(confirm.resultType, undefined);
      await c.close();
    });

  test('a 2025 client that refuses sampling ends the call with isError; one without the capability too', async () => {
    const c = await connectSdk('v1', `${gw.url}/mcp`, {
      sampling: () => {
        throw new Error('no model here');
      },
    });
    const refused: any = await c.callTool({ name: 'modern__summarize', arguments: {} });
    assert.equal(refused.isError, true);
    assert.match(refused.content[0].text, /no model here/);
    const bare = await connectSdk('v2', `${gw.url}/mcp`);
    const missing: any = await bare
      .callTool({ name: 'modern__confirm', arguments: {} })
      .catch((e: Error) => e);
    // The backend sees the envelope without elicitation and refuses (-32021): nobody is asked.
    assert.ok(missing instanceof Error, JSON.stringify(missing));
    assert.equal((missing as any).code, -32021, String(missing));
    await Promise.all([c.close(), bare.close()]);
  });

  test('a 2026 backend that keeps asking a 2025 client is stopped after mrtr.maxRounds (8)', async () => {
    let asked = 0;
    const c = await connectSdk('v1', `${gw.url}/mcp`, {
      elicitation: () => (asked++, { action: 'accept', content: { ok: true } }),
    });
    const err: any = await c.callTool({ name: 'modern__forever', arguments: {} }).catch((e: unknown) => e);
    assert.ok(err instanceof Error);
    assert.equal((err as any).data?.code, 'GW_TOO_MANY_INPUT_ROUNDS');
    assert.equal(asked, 8);
    await c.close();
  });

  test('2026 client, 2026 backend: input_required and requestState pass through', async () => {
    const c = await modernClient(`${gw.url}/mcp`, {
      elicitation: (p: any) =>
        p.message === 'Sure?' ? { action: 'decline' } : { action: 'accept', content: { name: 'bo' } },
      roots: () => ({ roots: [{ uri: 'file:///a' }, { uri: 'file:///b' }] }),
    });
    const confirm: any = await c.callTool({ name: 'modern__confirm', arguments: {} });
    assert.equal(confirm.content[0].text, 'action=decline yes=undefined');
    const two: any = await c.callTool({ name: 'dual__two-rounds', arguments: {} });
    assert.equal(two.content[0].text, 'roots=2 name=bo');
    await c.close();
    // On the wire: the backend's keys as they are, its state under a prefix of ours, returned verbatim.
    const call = (extra: object) =>
      rawModern(
        `${gw.url}/mcp`,
        'tools/call',
        { name: 'modern__two-rounds', arguments: {}, ...extra },
        { 'mcp-name': 'modern__two-rounds' },
        { roots: {}, elicitation: {} },
      );
    const first = await call({});
    assert.deepEqual(Object.keys(first.json.result.inputRequests), ['roots']);
    const second = await call({ inputResponses: { roots: { roots: [] } } });
    assert.equal(second.json.result.requestState, 'mcpgw-b.roots=0');
    const third = await call({ requestState: second.json.result.requestState });
    assert.equal(third.json.result.requestState, 'mcpgw-b.roots=0;asked');
  });

  test('2026 client, 2025 backend: the 2025 server asks, the client answers input_required rounds', async () => {
    const c = await modernClient(`${gw.url}/mcp`, {
      elicitation: () => ({ action: 'accept', content: { username: 'u', email: 'e@x' } }),
    });
    const r: any = await c.callTool({ name: 'legacy__test_elicitation', arguments: { message: 'who?' } });
    assert.match(r.content[0].text, /action=accept/);
    await c.close();
  });

  test('list_changed from a 2026 backend reaches a 2025 session and a 2026 listen stream', async () => {
    const v1 = await connectSdk('v1', `${gw.url}/mcp`);
    const v2 = await connectSdk('v2', `${gw.url}/servers/modern/mcp`);
    const c26 = await modernClient(`${gw.url}/mcp`);
    const heard = (c: SdkClient) =>
      new Promise<void>((resolve) => c.onNotification('notifications/tools/list_changed', () => resolve()));
    const got1 = heard(v1);
    const got2 = heard(v2);
    const got26 = new Promise<void>((resolve) =>
      c26.setNotificationHandler('notifications/tools/list_changed', async () => resolve()),
    );
    const sub: any = await (c26 as any).listen({ toolsListChanged: true, promptsListChanged: true });
    assert.equal(sub.honoredFilter?.toolsListChanged ?? sub.honored?.toolsListChanged, true);
    // The gateway's one upstream listen holds (the SDK client's own listen streams are not ours).
    await modern.listeners(1);
    modern.handler.notify.toolsChanged();
    await Promise.all([got1, got2, got26]);
    await sub.close?.();
    await Promise.all([v1.close(), v2.close(), c26.close()]);
  });

  test('a 2026 listen with a resource URI hears that resource updated at a 2026 backend', async () => {
    const c26 = await modernClient(`${gw.url}/mcp`);
    const updated = new Promise<any>((resolve) =>
      c26.setNotificationHandler('notifications/resources/updated', async (n: any) => resolve(n.params)),
    );
    const before = modern.subscriptions();
    const sub: any = await (c26 as any).listen({ resourceSubscriptions: ['note://modern-only'] });
    assert.deepEqual(sub.honoredFilter?.resourceSubscriptions, ['note://modern-only']);
    // The gateway's upstream listen is reopened with the URI.
    await modern.subscribed(before + 1);
    modern.handler.notify.resourceUpdated('note://modern-only');
    assert.equal((await updated).uri, 'note://modern-only');
    await sub.close?.();
    await c26.close();
  });

  test('a 2026 server is never sent 2025-only requests: setLevel and subscribe are kept by the gateway', async () => {
    const c = await connectSdk('v1', `${gw.url}/servers/modern/mcp`);
    await c.setLoggingLevel('warning');
    await c.callTool({ name: 'echo', arguments: { message: 'lvl' } });
    assert.equal(modern.record.logLevels.at(-1), 'warning', 'the level travels in the envelope');
    assert.equal(modern.record.clientNames.at(-1), 'mcpgw-test-v1', "the client's own clientInfo");
    const updated = new Promise<any>((resolve) =>
      c.onNotification('notifications/resources/updated', resolve),
    );
    await c.subscribeResource({ uri: 'note://modern-only' });
    // The upstream listen is reopened with the URI, new first: two listens for a moment.
    await modern.listeners(2);
    modern.handler.notify.resourceUpdated('note://modern-only');
    const u: any = await updated;
    assert.equal(u.uri, 'note://modern-only');
    await c.close();
  });

  test('a stdio server pinned to 2026: discover instead of initialize, the envelope on each call', async () => {
    const g = await startGateway({
      servers: [
        {
          name: 'shouter',
          transport: 'stdio',
          protocol: '2026',
          command: process.execPath,
          args: [`${ROOT}dist/test/fixtures/modern-stdio.js`],
        },
      ],
    });
    try {
      for (const kind of KINDS) {
        const c = await connect(kind, `${g.url}/mcp`);
        const r: any = await c.callTool({ name: 'shouter__shout', arguments: { text: kind } });
        assert.equal(r.content[0].text, kind.toUpperCase());
        if (kind !== '2026') assert.equal(r.resultType, undefined);
        await c.close();
      }
      // Its list change (heard on the gateway's listen over stdio) reaches a 2025 session.
      const c = await connectSdk('v1', `${g.url}/mcp`);
      const changed = new Promise<void>((resolve) =>
        c.onNotification('notifications/tools/list_changed', () => resolve()),
      );
      await c.callTool({ name: 'shouter__grow', arguments: {} });
      await changed;
      const { tools } = await c.listTools();
      assert.ok(tools.some((t: any) => t.name === 'shouter__grown'));
      await c.close();
    } finally {
      await g.close();
    }
  });
});

describe('protocol: auto when a server changes era', { timeout: 60_000 }, () => {
  test('a 2025 server replaced by a 2026 one on the same URL: probed again, switched, announced', async () => {
    const port = await freePort();
    let legacy: ChildProcess | undefined = await spawnUntil(
      process.execPath,
      [`${ROOT}dist/test/fixtures/conformance-server.js`, '--port', String(port)],
      /listening/,
    );
    let modern: ModernServer | undefined;
    const gw = await startGateway({
      aggregate: { listTtlMs: 1500 },
      servers: [{ name: 'flip', transport: 'streamable-http', url: `http://127.0.0.1:${port}/mcp` }],
    });
    try {
      // Only a 2025 server contributes: a 2026 client's merged list gets aggregate.listTtlMs.
      const list = await raw(`${gw.url}/mcp`, {
        headers: { ...MCP_HEADERS, 'mcp-protocol-version': V, 'mcp-method': 'tools/list' },
        body: { jsonrpc: '2.0', id: 1, method: 'tools/list', params: { _meta: ENVELOPE } },
      });
      assert.equal(list.json.result.ttlMs, 1500);
      const before: any = await (
        await connectSdk('v1', `${gw.url}/mcp`)
      ).callTool({
        name: 'flip__test_simple_text',
        arguments: {},
      });
      assert.match(before.content[0].text, /simple text/);

      await stopChild(legacy);
      legacy = undefined;
      modern = await startModernServer({ name: 'flipped', port });
      const c = await connectSdk('v1', `${gw.url}/mcp`);
      // Each list_changed is a cue to look again, until the list shows the 2026 server's tools.
      const switched = new Promise<void>((resolve) =>
        c.onNotification('notifications/tools/list_changed', async () => {
          const { tools } = await c.listTools();
          if (tools.some((t: any) => t.name === 'flip__echo')) resolve();
        }),
      );
      // The new session's initialize is refused (400): the gateway probes again and switches to 2026.
      await assert.rejects(c.callTool({ name: 'flip__echo', arguments: { message: 'x' } }));
      await switched;
      const after: any = await c.callTool({ name: 'flip__echo', arguments: { message: 'after' } });
      assert.equal(after.content[0].text, 'Echo: after');
      await c.close();
    } finally {
      await gw.close();
      await Promise.all([stopChild(legacy), modern?.close()]);
    }
  });

  test('a 2026 server replaced by a sessionful 2025 one: probed again and switched back', async () => {
    const port = await freePort();
    let modern: ModernServer | undefined = await startModernServer({ name: 'first', port });
    let legacy: ChildProcess | undefined;
    const gw = await startGateway({
      servers: [{ name: 'flop', transport: 'streamable-http', url: `http://127.0.0.1:${port}/mcp` }],
    });
    try {
      const c = await connectSdk('v1', `${gw.url}/mcp`);
      const echo: any = await c.callTool({ name: 'flop__echo', arguments: { message: 'first' } });
      assert.equal(echo.content[0].text, 'Echo: first');
      await modern.close();
      modern = undefined;
      legacy = await spawnUntil(
        process.execPath,
        [`${ROOT}dist/test/fixtures/conformance-server.js`, '--port', String(port)],
        /listening/,
      );
      const switched = new Promise<void>((resolve) =>
        c.onNotification('notifications/tools/list_changed', async () => {
          const { tools } = await c.listTools();
          if (tools.some((t: any) => t.name === 'flop__test_simple_text')) resolve();
        }),
      );
      // The 2025 server answers a 2026 request "no session": the gateway probes again.
      await assert.rejects(c.callTool({ name: 'flop__echo', arguments: { message: 'x' } }));
      await switched;
      const r: any = await c.callTool({ name: 'flop__test_simple_text', arguments: {} });
      assert.match(r.content[0].text, /simple text/);
      await c.close();
    } finally {
      await gw.close();
      await Promise.all([modern?.close(), stopChild(legacy)]);
    }
  });
});
