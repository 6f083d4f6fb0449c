/**
 * Authorization, tenancy and the filters, as callers with different API keys see them through the SDK
 * client: each caller lists only what it may use (on /mcp and /servers/{name}/mcp), what is hidden
 * answers exactly like what does not exist, another tenant's server is a 404, arguments are checked
 * against the policy and the tool's inputSchema, and personal data is masked in results.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { RunningNode } from '../../cli/single.js';
import { generateApiKey } from '../../edge/auth/api-key.js';
import { MCP_HEADERS, raw, startGateway } from '../helpers/gateway.js';
import { connectWith, secureServer } from '../helpers/auth.js';

const PEPPER = randomBytes(24).toString('base64url');
const CALLERS = {
  alice: { tenant: 'acme', roles: ['dev'] },
  bob: { tenant: 'acme', roles: ['viewer'] },
  carol: { tenant: 'globex', roles: ['dev'] },
  root: { tenant: 'acme', roles: ['admin'] },
} as const;
type Caller = keyof typeof CALLERS;
const keys = Object.fromEntries(Object.keys(CALLERS).map((name) => [name, generateApiKey(PEPPER)])) as Record<
  Caller,
  ReturnType<typeof generateApiKey>
>;

const config = {
  auth: {
    mode: 'api-key',
    apiKeys: {
      pepper: PEPPER,
      keys: Object.entries(CALLERS).map(([owner, c]) => ({
        id: keys[owner as Caller].id,
        hash: keys[owner as Caller].hash,
        owner,
        tenant: c.tenant,
        roles: [...c.roles],
      })),
    },
  },
  servers: [
    secureServer('files'),
    secureServer('acme-crm', { tenant: 'acme' }),
    secureServer('globex-db', { tenant: 'globex' }),
  ],
  policy: {
    default: 'deny',
    rules: [
      { description: 'admins use everything of their tenant', roles: ['admin'] },
      {
        description: 'developers',
        roles: ['dev'],
        tools: ['echo', 'lookup', 'leak', 'whoami'],
        prompts: ['greet'],
        resources: ['file:///public/*', 'file:///docs/*'],
      },
      {
        description: 'viewers: two tools of the shared server, Europe only',
        roles: ['viewer'],
        servers: ['files'],
        tools: ['whoami', 'lookup'],
        arguments: { region: { enum: ['eu'], required: true } },
      },
      { effect: 'deny', tenants: ['globex'], servers: ['files'], tools: ['leak'] },
    ],
  },
  pii: {
    rules: [
      { servers: ['files', 'acme-crm'], tools: ['leak'], patterns: [{ name: 'ticket', regex: 'TCK-\\d+' }] },
      // Prompts and resources: only those named, only for the tenants named (the shared server's results
      // are masked for acme's callers, not for globex's).
      {
        servers: ['files'],
        prompts: ['greet'],
        resources: ['file:///docs/customer*'],
        tenants: ['acme'],
        detect: ['email', 'card'],
      },
    ],
  },
};

describe('per-caller authorization, tenancy and filters', () => {
  let gw: RunningNode;
  const clients: Client[] = [];
  const as = async (who: Caller, path = '/mcp') => {
    const c = await connectWith(`${gw.url}${path}`, { 'x-api-key': keys[who].key });
    clients.push(c);
    return c;
  };
  const toolNames = async (who: Caller, path = '/mcp') =>
    (await (await as(who, path)).listTools()).tools.map((t) => t.name).sort();
  /** The JSON-RPC error of one tools/call in a fresh raw session. */
  const callError = async (who: Caller, name: string, args: unknown = {}, path = '/mcp') => {
    const headers = { ...MCP_HEADERS, 'x-api-key': keys[who].key };
    const init = await raw(`${gw.url}${path}`, {
      headers,
      body: {
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 't', version: '1' } },
      },
    });
    const sid = init.headers.get('mcp-session-id')!;
    const r = await raw(`${gw.url}${path}`, {
      headers: { ...headers, 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' },
      body: { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name, arguments: args } },
    });
    return r.json.error;
  };

  before(async () => {
    gw = await startGateway(config);
  });
  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await gw?.close();
  });

  test('tools/list shows each caller only what it may use, its tenant and the shared servers', async () => {
    const dev = ['echo', 'leak', 'lookup', 'whoami'];
    assert.deepEqual(await toolNames('alice'), [
      ...dev.map((t) => `acme-crm__${t}`),
      ...dev.map((t) => `files__${t}`),
    ]);
    assert.deepEqual(await toolNames('carol'), [
      ...['echo', 'lookup', 'whoami'].map((t) => `files__${t}`),
      ...dev.map((t) => `globex-db__${t}`),
    ]);
    assert.deepEqual(await toolNames('bob'), ['files__lookup', 'files__whoami']);
    const all = ['admin_delete', ...dev].sort();
    assert.deepEqual(await toolNames('root'), [
      ...all.map((t) => `acme-crm__${t}`),
      ...all.map((t) => `files__${t}`),
    ]);
  });

  test('prompts, resources and templates are filtered the same way', async () => {
    const alice = await as('alice');
    assert.deepEqual((await alice.listPrompts()).prompts.map((p) => p.name).sort(), [
      'acme-crm__greet',
      'files__greet',
    ]);
    const uris = (await alice.listResources()).resources.map((r) => r.uri);
    assert.ok(uris.length > 0 && uris.every((u) => decodeURIComponent(u).includes('/public/')), uris.join());
    assert.ok((await alice.listResourceTemplates()).resourceTemplates.length > 0);
    await assert.rejects(alice.readResource({ uri: 'file:///secret/keys.txt' }), /Resource not found/);
    assert.match(
      JSON.stringify(await alice.readResource({ uri: 'file:///docs/guide' })),
      /content of file:\/\/\/docs\/guide/,
    );
    const root = await as('root');
    assert.ok((await root.listPrompts()).prompts.some((p) => p.name === 'files__admin_prompt'));
    const bob = await as('bob');
    assert.deepEqual((await bob.listPrompts()).prompts, []);
  });

  test('calling a hidden tool gets exactly the error of a tool that does not exist', async () => {
    const normalize = (e: any, name: string) => JSON.parse(JSON.stringify(e).replaceAll(name, '<name>'));
    const missing = normalize(await callError('alice', 'files__no_such_tool'), 'files__no_such_tool');
    assert.equal(missing.data.code, 'GW_UNKNOWN_TOOL');
    for (const [who, name] of [
      ['alice', 'files__admin_delete'],
      ['carol', 'acme-crm__echo'],
      ['carol', 'files__leak'],
      ['bob', 'files__echo'],
    ] as const)
      assert.deepEqual(normalize(await callError(who, name), name), missing, `${who} ${name}`);
  });

  test("another tenant's server is a 404 on /servers/{name}/mcp, exactly like one that does not exist", async () => {
    const init = (path: string) =>
      raw(`${gw.url}${path}`, {
        headers: { ...MCP_HEADERS, 'x-api-key': keys.carol.key },
        body: {
          jsonrpc: '2.0',
          id: 1,
          method: 'initialize',
          params: { protocolVersion: '2025-11-25', capabilities: {} },
        },
      });
    const other = await init('/servers/acme-crm/mcp');
    const none = await init('/servers/nowhere/mcp');
    assert.equal(other.status, 404);
    assert.deepEqual(
      JSON.parse(other.text.replaceAll('acme-crm', '<s>')),
      JSON.parse(none.text.replaceAll('nowhere', '<s>')),
    );
    assert.equal((await init('/servers/globex-db/mcp')).status, 200);
  });

  test('/servers/{name}/mcp shows the backend names, filtered; a hidden tool there is an unknown tool', async () => {
    assert.deepEqual(await toolNames('alice', '/servers/files/mcp'), ['echo', 'leak', 'lookup', 'whoami']);
    const hidden = await callError('alice', 'admin_delete', {}, '/servers/files/mcp');
    const missing = await callError('alice', 'nothing_here', {}, '/servers/files/mcp');
    assert.equal(hidden.data.code, 'GW_UNKNOWN_TOOL');
    assert.deepEqual(
      { ...hidden, message: '', data: { ...hidden.data, name: '' } },
      {
        ...missing,
        message: '',
        data: { ...missing.data, name: '' },
      },
    );
    const alice = await as('alice', '/servers/files/mcp');
    await assert.rejects(alice.getPrompt({ name: 'admin_prompt' }), /Unknown prompt/);
  });

  test('policy argument constraints: the viewer may look up Europe only', async () => {
    const bob = await as('bob');
    const ok = await bob.callTool({ name: 'files__lookup', arguments: { region: 'eu' } });
    assert.match(JSON.stringify(ok.content), /"region\\":\\"eu/);
    const denied = await callError('bob', 'files__lookup', { region: 'us' });
    assert.equal(denied.code, -32602);
    assert.equal(denied.data.code, 'GW_ARGUMENT_DENIED');
    assert.deepEqual(denied.data.violations, [{ path: '/region', message: 'must be one of "eu"' }]);
    // alice's rule has no constraints: any region her schema accepts.
    assert.ok(
      !(await (await as('alice')).callTool({ name: 'files__lookup', arguments: { region: 'us' } })).isError,
    );
  });

  test('arguments are validated against the inputSchema (2020-12 and draft-07), every violation listed', async () => {
    const missing = await callError('alice', 'files__echo', {});
    assert.equal(missing.code, -32602);
    assert.equal(missing.data.code, 'GW_INVALID_ARGUMENTS');
    assert.deepEqual(missing.data.violations, [
      { path: '/text', message: "must have required property 'text'" },
    ]);
    const several = await callError('alice', 'files__echo', { text: 'x'.repeat(60), count: 0, bogus: true });
    assert.deepEqual(several.data.violations.map((v: any) => v.path).sort(), ['/bogus', '/count', '/text']);
    const draft7 = await callError('alice', 'acme-crm__lookup', { region: 'mars', email: 'not-an-email' });
    assert.deepEqual(draft7.data.violations.map((v: any) => `${v.path} ${v.message}`).sort(), [
      '/email must match format "email"',
      '/region must be equal to one of the allowed values',
    ]);
    const alice = await as('alice');
    const fine = await alice.callTool({ name: 'files__echo', arguments: { text: 'hello', count: 2 } });
    assert.match(JSON.stringify(fine.content), /hello/);
  });

  test('2026-07-28 requests carry the same caller: filtered lists, hidden tools unknown, 401 without a key', async () => {
    const modern = (who: Caller | undefined, method: string, params: object = {}) =>
      raw(`${gw.url}/mcp`, {
        headers: {
          ...MCP_HEADERS,
          ...(who ? { 'x-api-key': keys[who].key } : {}),
          'mcp-protocol-version': '2026-07-28',
          'mcp-method': method,
          ...('name' in params ? { 'mcp-name': String((params as { name: string }).name) } : {}),
        },
        body: {
          jsonrpc: '2.0',
          id: 1,
          method,
          params: {
            ...params,
            _meta: {
              'io.modelcontextprotocol/protocolVersion': '2026-07-28',
              'io.modelcontextprotocol/clientCapabilities': {},
              'io.modelcontextprotocol/clientInfo': { name: 'modern', version: '1' },
            },
          },
        },
      });
    const list = await modern('bob', 'tools/list');
    assert.equal(list.status, 200, list.text);
    assert.deepEqual(list.json.result.tools.map((t: any) => t.name).sort(), [
      'files__lookup',
      'files__whoami',
    ]);
    const hidden = await modern('bob', 'tools/call', { name: 'files__echo', arguments: { text: 'x' } });
    assert.equal(hidden.json.error.data.code, 'GW_UNKNOWN_TOOL');
    assert.equal((await modern(undefined, 'tools/list')).status, 401);
  });

  test('personal data is masked in text, embedded resources and structuredContent; the result stays valid', async () => {
    const alice = await as('alice'); // the v1 SDK client validates the result shape
    const r: any = await alice.callTool({ name: 'files__leak', arguments: {} });
    const text = r.content[0].text as string;
    assert.ok(text.includes('[REDACTED:email]') && !text.includes('jane.doe@example.com'), text);
    assert.ok(text.includes('card [REDACTED:card]'), text);
    assert.ok(text.includes('1234 5678 9012 3456'), 'a number failing Luhn is kept');
    assert.ok(text.includes('IBAN [REDACTED:iban]'), text);
    assert.ok(text.includes('DE00 3704 0044 0532 0130 00'), 'an IBAN failing mod-97 is kept');
    assert.ok(text.includes('ticket [REDACTED:ticket]'), text);
    assert.equal(r.content[1].resource.text, 'owner: [REDACTED:email]');
    assert.deepEqual(r.structuredContent, {
      customer: { email: '[REDACTED:email]', cards: ['[REDACTED:card]'], note: 'ok 42' },
      iban: '[REDACTED:iban]',
      count: 3,
    });
    // Not configured for globex-db: untouched.
    const carol = await as('carol');
    const plain: any = await carol.callTool({ name: 'globex-db__leak', arguments: {} });
    assert.match(plain.content[0].text, /jane\.doe@example\.com/);
  });

  test('prompts/get and resources/read results are masked per server, item and tenant; blobs untouched', async () => {
    const alice = await as('alice');
    const p = await alice.getPrompt({ name: 'files__greet' });
    assert.equal(p.description, 'greet, written for [REDACTED:email]');
    const first = (p.messages[0]!.content as { text: string }).text;
    assert.ok(first.includes('[REDACTED:email]') && first.includes('card [REDACTED:card]'), first);
    assert.ok(first.includes('IBAN DE89'), 'iban is not among the detectors of this rule');
    assert.equal((p.messages[1]!.content as any).resource.text, 'from [REDACTED:email]');
    // The same prompt of acme-crm: its only rule names tools, so prompts there are not masked.
    const crm = await alice.getPrompt({ name: 'acme-crm__greet' });
    assert.match(crm.description!, /jane\.doe@example\.com/);

    const scoped = await as('alice', '/servers/files/mcp');
    const again = await scoped.getPrompt({ name: 'greet' });
    assert.equal(again.description, 'greet, written for [REDACTED:email]');
    const r = await scoped.readResource({ uri: 'file:///docs/customer-7' });
    const text = (r.contents[0] as { text: string }).text;
    assert.ok(text.startsWith('customer of files: Contact [REDACTED:email], card [REDACTED:card]'), text);
    assert.equal(
      Buffer.from((r.contents[1] as { blob: string }).blob, 'base64').toString(),
      'jane.doe@example.com',
    );
    // A resource the rule does not name is left as it is.
    const other = await scoped.readResource({ uri: 'file:///public/readme.txt' });
    assert.equal(
      (other.contents[0] as { text: string }).text,
      'content of file:///public/readme.txt from files',
    );

    // globex's caller reads the same shared server's prompt unmasked: the rule is acme's.
    const carol = await as('carol');
    const plain = await carol.getPrompt({ name: 'files__greet' });
    assert.match(plain.description!, /jane\.doe@example\.com/);
  });
});
