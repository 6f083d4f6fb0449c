/**
 * REST APIs as MCP tools (`transport: http`), through the gateway with the official SDK client over
 * real sockets: declared endpoints and an OpenAPI 3 document against a local Fastify API, credentials
 * from the vault on the real Postgres (sent upstream, absent from logs, answers and the database),
 * HTTP and network errors as tool errors, RFC 8693 token exchange, and token budgets.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import Fastify, { type FastifyInstance } from 'fastify';
import { startSingleNode, type RunningNode } from '../../cli/single.js';
import { validateConfig } from '../../shared/config/load.js';
import { createLogger } from '../../shared/log.js';
import { connectSdk, type SdkClient } from '../helpers/sdk-clients.js';
import { dropSchema, PG_URL, uniqueSchema, withClient } from '../helpers/postgres.js';
import { TokenExchanger, TOKEN_EXCHANGE_GRANT, JWT_TOKEN_TYPE } from '../../core/rest/token-exchange.js';
import { applyTokenBudget, TokenCounter } from '../../core/rest/token-budget.js';

const API_KEY = `sk-${randomBytes(12).toString('hex')}`;
const schema = uniqueSchema('rest');
const PETSTORE = fileURLToPath(new URL('../../../test/fixtures/petstore.openapi.json', import.meta.url));

let api: FastifyInstance;
let apiUrl: string;
let closedUrl: string;
const seen: { method: string; url: string; headers: Record<string, unknown>; body: unknown }[] = [];
const pets = new Map([['1', { id: '1', name: 'Rex', tags: ['dog'] }]]);

before(async () => {
  api = Fastify();
  api.addHook('onRequest', async (req, reply) => {
    seen.push({ method: req.method, url: req.url, headers: { ...req.headers }, body: undefined });
    if (req.headers['x-api-key'] !== API_KEY) return reply.code(401).send({ error: 'bad key' });
  });
  api.get('/pets/:id', async (req, reply) => {
    const p = pets.get((req.params as { id: string }).id);
    return p ?? reply.code(404).send({ error: 'no such pet' });
  });
  api.get('/pets', async (req) => {
    const q = req.query as { limit?: string; tag?: string };
    return { data: { items: [...pets.values()].slice(0, Number(q.limit ?? 100)), tag: q.tag ?? null } };
  });
  api.post('/pets', async (req, reply) => {
    seen.at(-1)!.body = req.body;
    const p = { id: String(pets.size + 1), ...(req.body as object) } as {
      id: string;
      name: string;
      tags: string[];
    };
    pets.set(p.id, p);
    return reply.code(201).send(p);
  });
  api.delete('/pets/:id', async (req, reply) => {
    pets.delete((req.params as { id: string }).id);
    return reply.code(204).send();
  });
  api.get('/broken', async (_req, reply) => reply.code(500).send('database on fire '.repeat(100)));
  api.get('/big', async () => ({
    rows: Array.from({ length: 400 }, (_, i) => ({ n: i, text: `row number ${i} of a long answer` })),
  }));
  apiUrl = await api.listen({ host: '127.0.0.1', port: 0 });
  // A port that was just free and is closed again: connections to it are refused.
  const probe = Fastify();
  closedUrl = await probe.listen({ host: '127.0.0.1', port: 0 });
  await probe.close();
});
after(async () => {
  await api.close();
});

function restServer(extra: Record<string, unknown> = {}) {
  return {
    name: 'pets',
    transport: 'http',
    url: apiUrl,
    auth: { kind: 'api-key', credential: 'pets-key', header: 'x-api-key' },
    endpoints: [
      {
        name: 'get_pet',
        description: 'One pet',
        method: 'GET',
        path: '/pets/{id}',
        inputSchema: { type: 'object', properties: { id: { type: 'string' } }, required: ['id'] },
        outputSchema: { type: 'object', properties: { id: { type: 'string' }, name: { type: 'string' } } },
      },
      {
        name: 'list_pets',
        method: 'GET',
        path: '/pets',
        query: ['limit', 'tag'],
        select: ['/data/items', '/data/tag'],
        inputSchema: { type: 'object', properties: { limit: { type: 'number' }, tag: { type: 'string' } } },
      },
      {
        name: 'add_pet',
        method: 'POST',
        path: '/pets',
        inputSchema: { type: 'object', properties: { name: { type: 'string' }, tags: { type: 'array' } } },
      },
      {
        name: 'remove_pet',
        method: 'DELETE',
        path: '/pets/{id}',
        inputSchema: { type: 'object', properties: { id: { type: 'string' } } },
      },
      { name: 'broken', method: 'GET', path: '/broken' },
      { name: 'big', method: 'GET', path: '/big', tokenBudget: 200 },
    ],
    ...extra,
  };
}

describe('REST APIs as tools through the gateway (vault on the real Postgres)', () => {
  let node: RunningNode;
  let client: SdkClient;
  const logs: string[] = [];
  before(async () => {
    process.env.MCPGW_VAULT_KEY = randomBytes(32).toString('base64');
    const config = validateConfig(
      {
        role: 'single',
        listen: { host: '127.0.0.1', port: 0 },
        log: { level: 'debug' },
        store: { kind: 'postgres', url: PG_URL, schema },
        servers: [
          restServer(),
          {
            name: 'petstore',
            transport: 'http',
            url: apiUrl,
            auth: { kind: 'api-key', credential: 'pets-key' },
            openapi: { source: PETSTORE },
          },
          {
            name: 'down',
            transport: 'http',
            url: closedUrl,
            endpoints: [{ name: 'ping', method: 'GET', path: '/' }],
          },
        ],
      },
      'test',
      {},
    );
    const sink = new Writable({
      write(chunk: Buffer, _e, cb) {
        logs.push(chunk.toString());
        cb();
      },
    });
    node = await startSingleNode(config, { log: createLogger('debug', sink) });
    await node.stores.vault!.put(
      'pets-key',
      { kind: 'api-key', server: 'pets', secret: { apiKey: API_KEY } },
      'test',
    );
    client = await connectSdk('v1', `${node.url}/mcp`);
  });
  after(async () => {
    await client?.close();
    await node?.close();
    delete process.env.MCPGW_VAULT_KEY;
    await dropSchema(schema);
  });

  test('declared endpoints are tools with the annotations their methods imply', async () => {
    const { tools } = await client.listTools();
    const byName = new Map<string, any>(tools.map((t: any) => [t.name, t]));
    const get = byName.get('pets__get_pet');
    assert.ok(get, `tools: ${tools.map((t: any) => t.name).join(', ')}`);
    assert.equal(get.annotations.readOnlyHint, true);
    assert.equal(get.annotations.idempotentHint, true);
    assert.deepEqual(get.outputSchema.properties.name, { type: 'string' });
    const del = [...byName.values()].find((t: any) => t.name.endsWith('remove_pet')) as any;
    assert.equal(del.annotations.destructiveHint, true);
  });

  async function call(name: string, args: Record<string, unknown> = {}) {
    const { tools } = await client.listTools();
    const t = tools.find(
      (x: any) => x.name === name || x.name.endsWith(`_${name}`) || x.name.endsWith(`__${name}`),
    );
    assert.ok(t, `no tool ${name}`);
    return (await client.callTool({ name: t.name, arguments: args })) as any;
  }

  test('a GET with a path argument answers structured JSON, with the key from the vault sent upstream', async () => {
    const r = await call('get_pet', { id: '1' });
    assert.equal(r.isError, undefined);
    assert.deepEqual(r.structuredContent, { id: '1', name: 'Rex', tags: ['dog'] });
    assert.deepEqual(JSON.parse(r.content[0].text), r.structuredContent);
    assert.equal(seen.at(-1)!.url, '/pets/1');
    assert.equal(seen.at(-1)!.headers['x-api-key'], API_KEY);
    assert.ok(!JSON.stringify(r).includes(API_KEY));
  });

  test('query mapping and response field selection', async () => {
    const r = await call('list_pets', { limit: 1, tag: 'dog' });
    assert.equal(seen.at(-1)!.url, '/pets?limit=1&tag=dog');
    assert.deepEqual(r.structuredContent, { items: [{ id: '1', name: 'Rex', tags: ['dog'] }], tag: 'dog' });
  });

  test('a POST sends the arguments as its JSON body; a DELETE removes', async () => {
    const r = await call('add_pet', { name: 'Tom', tags: ['cat'] });
    assert.deepEqual(seen.at(-1)!.body, { name: 'Tom', tags: ['cat'] });
    assert.equal(r.structuredContent.name, 'Tom');
    await call('remove_pet', { id: r.structuredContent.id });
    assert.equal(pets.has(r.structuredContent.id), false);
  });

  test('HTTP errors and network failures are tool errors naming the status and an excerpt', async () => {
    const missing = await call('get_pet', { id: 'nope' });
    assert.equal(missing.isError, true);
    assert.match(missing.content[0].text, /GET \/pets\/nope answered HTTP 404 Not Found: .*no such pet/);
    const broken = await call('broken');
    assert.equal(broken.isError, true);
    assert.match(broken.content[0].text, /HTTP 500/);
    assert.ok(broken.content[0].text.length < 500, 'only an excerpt of the body');
    const down = await call('ping');
    assert.equal(down.isError, true);
    assert.match(down.content[0].text, /GET \/ failed: .*ECONNREFUSED/);
  });

  test('a result over its token budget is truncated, marked, and still valid', async () => {
    const r = await call('big');
    assert.equal(r.isError, undefined);
    const rows = r.structuredContent.rows;
    assert.ok(Array.isArray(rows) && rows.length > 0 && rows.length < 400, `rows kept: ${rows.length}`);
    assert.deepEqual(rows[0], { n: 0, text: 'row number 0 of a long answer' });
    assert.deepEqual(JSON.parse(r.content[0].text), r.structuredContent);
    assert.match(r.content[1].text, /truncated by mcpgw/);
    assert.ok(r._meta['mcpgw/tokens'] <= 200, `tokens: ${r._meta['mcpgw/tokens']}`);
    assert.ok(r._meta['mcpgw/truncated'].tokens > 200);
  });

  test('tools generated from an OpenAPI 3 document ($refs resolved)', async () => {
    const { tools } = await client.listTools();
    const get = tools.find((t: any) => t.name.endsWith('getPet')) as any;
    assert.ok(get, `tools: ${tools.map((t: any) => t.name).join(', ')}`);
    assert.equal(get.description, 'One pet by id');
    assert.deepEqual(get.inputSchema.required, ['id']);
    assert.equal(get.outputSchema.properties.name.type, 'string');
    assert.equal(get.annotations.readOnlyHint, true);
    const add = tools.find((t: any) => t.name.endsWith('addPet')) as any;
    assert.equal(add.inputSchema.properties.body.properties.name.type, 'string');
    assert.equal(
      (tools.find((t: any) => t.name.endsWith('deletePet')) as any).annotations.destructiveHint,
      true,
    );
    const r = (await client.callTool({ name: add.name, arguments: { body: { name: 'Kit' } } })) as any;
    assert.equal(r.structuredContent.name, 'Kit');
    const got = (await client.callTool({ name: get.name, arguments: { id: r.structuredContent.id } })) as any;
    assert.equal(got.structuredContent.name, 'Kit');
  });

  test('the secret is in no log line and in no row of the database', async () => {
    assert.ok(logs.length > 0);
    assert.ok(!logs.join('').includes(API_KEY));
    const hits = await withClient(async (c) => {
      const tables = await c.query<{ table_name: string }>(
        `SELECT table_name FROM information_schema.tables WHERE table_schema = $1`,
        [schema],
      );
      const found: string[] = [];
      for (const { table_name } of tables.rows) {
        const rows = await c.query<{ t: string }>(`SELECT t::text AS t FROM ${schema}.${table_name} t`);
        for (const row of rows.rows)
          if (
            [API_KEY, Buffer.from(API_KEY).toString('hex'), Buffer.from(API_KEY).toString('base64')].some(
              (n) => row.t.includes(n),
            )
          )
            found.push(table_name);
      }
      return found;
    });
    assert.deepEqual(hits, []);
  });
});

describe('RFC 8693 token exchange', () => {
  test('the delegation token is exchanged with the RFC form fields, and the answer cached until near expiry', async () => {
    const idp = Fastify();
    const forms: URLSearchParams[] = [];
    idp.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_r, body, done) =>
      done(null, new URLSearchParams(body as string)),
    );
    idp.post('/token', async (req, reply) => {
      const f = req.body as URLSearchParams;
      forms.push(f);
      const basic = Buffer.from('gw-client:gw-secret').toString('base64');
      if (req.headers.authorization !== `Basic ${basic}`)
        return reply.code(401).send({ error: 'invalid_client' });
      if (
        f.get('grant_type') !== TOKEN_EXCHANGE_GRANT ||
        f.get('subject_token_type') !== JWT_TOKEN_TYPE ||
        !f.get('subject_token')
      )
        return reply.code(400).send({ error: 'invalid_request' });
      if (f.get('audience') !== 'payments-api') return reply.code(400).send({ error: 'invalid_target' });
      return {
        access_token: `exchanged-for-${f.get('subject_token')}-${forms.length}`,
        issued_token_type: 'urn:ietf:params:oauth:token-type:access_token',
        token_type: 'Bearer',
        expires_in: 60,
      };
    });
    const base = await idp.listen({ host: '127.0.0.1', port: 0 });
    let now = 1_000_000;
    const ex = new TokenExchanger({
      server: 'payments',
      tokenUrl: `${base}/token`,
      audience: 'payments-api',
      scope: 'payments:read',
      refreshBeforeMs: 10_000,
      client: async () => ({ clientId: 'gw-client', clientSecret: 'gw-secret' }),
      now: () => now,
    });
    try {
      const [a, b] = await Promise.all([ex.tokenFor('delegation-alice'), ex.tokenFor('delegation-alice')]);
      assert.equal(a, 'exchanged-for-delegation-alice-1');
      assert.equal(b, a, 'concurrent callers share one exchange');
      assert.equal(forms.length, 1);
      assert.equal(forms[0]!.get('scope'), 'payments:read');
      assert.equal(forms[0]!.get('requested_token_type'), 'urn:ietf:params:oauth:token-type:access_token');
      now += 45_000;
      assert.equal(await ex.tokenFor('delegation-alice'), a, 'still cached');
      now += 10_000; // 55 s: within refreshBeforeMs of the 60 s expiry
      assert.equal(await ex.tokenFor('delegation-alice'), 'exchanged-for-delegation-alice-2');
      assert.equal(
        await ex.tokenFor('delegation-bob'),
        'exchanged-for-delegation-bob-3',
        'one token per caller',
      );
      const bad = new TokenExchanger({ server: 'payments', tokenUrl: `${base}/token`, refreshBeforeMs: 0 });
      await assert.rejects(
        bad.tokenFor('x'),
        /Token exchange for payments: token endpoint answered 401 \(invalid_client\)/,
      );
    } finally {
      await idp.close();
    }
  });
});

describe('token budgets', () => {
  test('plain text is cut on a token boundary and marked; counts are cached by content', () => {
    const counter = new TokenCounter();
    const text = 'word '.repeat(2000);
    const r = applyTokenBudget({ content: [{ type: 'text', text }] }, 100, counter) as any;
    assert.ok(r.content[0].text.length < text.length && text.startsWith(r.content[0].text));
    assert.match(r.content[1].text, /truncated by mcpgw: \d+ of \d+ tokens shown, budget 100/);
    assert.ok(r._meta['mcpgw/tokens'] <= 100);
    const before = counter.hits;
    counter.count(text);
    assert.equal(counter.hits, before + 1);
  });

  test('short texts are cached under themselves, bounded, and count the same as uncached', () => {
    const fox = 'The quick brown fox jumps over the lazy dog, then naps under the old oak tree.';
    const counter = new TokenCounter(2); // one count per generation
    const n = counter.count(fox);
    assert.ok(n > 10);
    assert.equal(counter.count(fox), n);
    assert.equal(counter.hits, 1);
    assert.equal(new TokenCounter().count(fox), n);
    // Bounded: two other texts push the first out of both generations; it is counted again when asked.
    counter.count(fox.replace('fox', 'cat'));
    counter.count(fox.replace('fox', 'owl'));
    const misses = counter.misses;
    assert.equal(counter.count(fox), n);
    assert.equal(counter.misses, misses + 1);
  });
});
