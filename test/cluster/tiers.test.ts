/**
 * The tier split with separate processes: one core and two edges (`mcpgw start`), TLS everywhere, mTLS
 * from edge to core, sessions in Redis under a unique prefix. Real SDK clients (v1 and v2) call tools,
 * get progress and answer sampling through edge A, then continue the same session through edge B; a core
 * refuses every request that lacks a valid internal token of a trusted edge; the client's own
 * Authorization never reaches a backend, while signed identity headers and delegation tokens do.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { createPublicKey, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { Agent, fetch as undiciFetch, request } from 'undici';
import { SignJWT, importPKCS8 } from 'jose';
import { freePort, ROOT, spawnUntil, stopChild } from '../helpers/net.js';
import { collectOutput, type Output } from '../helpers/output.js';
import { thumbprint } from '../../shared/identity/keys.js';
import { makeCa, makeLeaf, makeSigningKey, type Ca, type Leaf } from '../helpers/pki.js';
import { connectSdk, type SdkClient, type SdkKind } from '../helpers/sdk-clients.js';
import {
  Client as V2Client,
  StreamableHTTPClientTransport as V2Transport,
} from '@modelcontextprotocol/client';
import { Client as V1Client } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport as V1SseTransport } from '@modelcontextprotocol/sdk/client/sse.js';

const REDIS_URL = process.env.MCPGW_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const MAIN = `${ROOT}dist/cli/main.js`;
const BACKEND = `${ROOT}dist/test/fixtures/identity-backend.js`;
const LATE_TOOL = `${ROOT}dist/test/fixtures/late-tool-http.js`;
const CLIENT_SECRET = 'client-own-secret-never-forwarded';

interface Proc {
  child: ChildProcess;
  out: Output;
  url: string;
}

describe('edge and core tiers as separate processes', { timeout: 120_000 }, () => {
  const prefix = `mcpgw-test-${randomBytes(6).toString('hex')}`;
  const dir = mkdtempSync(join(tmpdir(), 'mcpgw-tiers-'));
  const children: ChildProcess[] = [];
  let redis: Redis;
  let ca: Ca;
  let otherCa: Ca;
  let coreLeaf: Leaf;
  let edgeLeaf: Leaf;
  let edgeClient: Leaf;
  let otherClient: Leaf;
  let edgeKey: { priv: string; pub: string };
  let delegation: { priv: string; pub: string };
  let hmacFile: string;
  let backendUrl = '';
  let lateUrl = '';
  let core: Proc;
  let edgeA: Proc;
  let edgeB: Proc;
  /** The TLS client the SDK clients and raw checks use toward the edges. */
  let clientAgent: Agent;

  async function spawnNode(name: string, doc: object): Promise<Proc> {
    const file = join(dir, `${name}.json`);
    // The registry store is beside the point here (an embedded one per process only slows the start).
    writeFileSync(file, JSON.stringify({ store: { kind: 'memory' }, ...doc }));
    const child = await spawnUntil(process.execPath, [MAIN, 'start', '--config', file], /mcpgw listening/);
    children.push(child);
    const out = collectOutput(child);
    const port = (doc as { listen: { port: number } }).listen.port;
    return { child, out, url: `https://127.0.0.1:${port}` };
  }

  function coreDoc(port: number): object {
    const server = (n: string, identity: string) => ({
      name: n,
      transport: 'streamable-http',
      url: `${backendUrl}/${n}/mcp`,
      identity,
    });
    return {
      role: 'core',
      region: 'eu',
      listen: { host: '127.0.0.1', port, tls: { cert: coreLeaf.cert, key: coreLeaf.key, clientCa: ca.cert } },
      log: { level: 'info' },
      internal: { id: 'core-eu-1', trustedKeys: [join(dir, 'trusted.jwks.json')] },
      backendIdentity: { hmacKeyFile: hmacFile, delegationKey: delegation.priv },
      sessions: { store: 'redis' },
      redis: { url: REDIS_URL, keyPrefix: prefix },
      servers: [
        server('plain', 'none'),
        server('signed', 'headers'),
        server('delegated', 'delegation'),
        { name: 'late', transport: 'streamable-http', url: lateUrl },
      ],
    };
  }

  function edgeDoc(port: number, corePort: number): object {
    return {
      role: 'edge',
      region: 'eu',
      listen: { host: '127.0.0.1', port, tls: { cert: edgeLeaf.cert, key: edgeLeaf.key } },
      log: { level: 'info' },
      cores: [
        {
          region: 'eu',
          id: 'core-eu-1',
          url: `https://127.0.0.1:${corePort}`,
          tls: { ca: ca.cert, cert: edgeClient.cert, key: edgeClient.key },
        },
      ],
      internal: { id: 'edge-eu', signingKey: edgeKey.priv, tokenTtlSeconds: 10 },
      sessions: { store: 'redis' },
      redis: { url: REDIS_URL, keyPrefix: prefix },
    };
  }

  /** A fetch toward whichever edge `target()` names, trusting the test CA, with the client's own token. */
  function fetchVia(target: () => string) {
    return (url: string | URL, init?: RequestInit) => {
      const u = new URL(String(url));
      const t = new URL(target());
      u.protocol = t.protocol;
      u.host = t.host;
      const headers = new Headers(init?.headers);
      headers.set('authorization', `Bearer ${CLIENT_SECRET}`);
      return undiciFetch(u, {
        ...(init as object),
        headers,
        dispatcher: clientAgent,
      } as never) as unknown as Promise<Response>;
    };
  }

  /** An SDK client whose requests go to whichever edge `target()` names (the session stays the same). */
  async function clientVia(kind: SdkKind, target: () => string, sampled: string[] = []): Promise<SdkClient> {
    return connectSdk(
      kind,
      `${target()}/mcp`,
      {
        sampling: (params: { messages: { content: { text: string } }[] }) => {
          sampled.push(params.messages[0]!.content.text);
          return {
            role: 'assistant',
            model: 'test-model',
            content: { type: 'text', text: `answer-${kind}` },
          };
        },
      },
      { fetch: fetchVia(target) },
    );
  }

  function writeTrust(pubFiles: string[]): void {
    const keys = pubFiles.map((f) => createPublicKey(readFileSync(f, 'utf8')).export({ format: 'jwk' }));
    writeFileSync(join(dir, 'trusted.jwks.json.tmp'), JSON.stringify({ keys }));
    // An atomic rename, as operators (and Kubernetes secret mounts) rotate files.
    renameSync(join(dir, 'trusted.jwks.json.tmp'), join(dir, 'trusted.jwks.json'));
  }

  before(async () => {
    redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
    await redis.ping().catch((err: unknown) => {
      throw new Error(`these tests need a real Redis at ${REDIS_URL} (set MCPGW_TEST_REDIS_URL): ${err}`);
    });
    ca = makeCa(dir, 'ca');
    otherCa = makeCa(dir, 'other-ca');
    coreLeaf = makeLeaf(dir, ca, 'core');
    edgeLeaf = makeLeaf(dir, ca, 'edge');
    edgeClient = makeLeaf(dir, ca, 'edge-client');
    otherClient = makeLeaf(dir, otherCa, 'other-client');
    edgeKey = makeSigningKey(dir, 'edge-signing');
    delegation = makeSigningKey(dir, 'delegation', 'p256');
    hmacFile = join(dir, 'hmac.key');
    writeFileSync(hmacFile, randomBytes(32).toString('hex'));
    writeTrust([edgeKey.pub]);
    clientAgent = new Agent({ connect: { ca: readFileSync(ca.cert, 'utf8') } });

    const backendPort = await freePort();
    children.push(
      await spawnUntil(
        process.execPath,
        [BACKEND, '--port', String(backendPort), '--hmac-key', hmacFile, '--delegation-pub', delegation.pub],
        /listening/,
      ),
    );
    backendUrl = `http://127.0.0.1:${backendPort}`;
    const latePort = await freePort();
    children.push(await spawnUntil(process.execPath, [LATE_TOOL, '--port', String(latePort)], /listening/));
    lateUrl = `http://127.0.0.1:${latePort}/mcp`;
    const [corePort, portA, portB] = [await freePort(), await freePort(), await freePort()];
    core = await spawnNode('core', coreDoc(corePort));
    [edgeA, edgeB] = await Promise.all([
      spawnNode('edge-a', edgeDoc(portA, corePort)),
      spawnNode('edge-b', edgeDoc(portB, corePort)),
    ]);
  });

  after(async () => {
    await Promise.all(children.map((c) => stopChild(c)));
    await clientAgent?.close();
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
      cursor = next;
      if (keys.length > 0) await redis.del(...keys);
    } while (cursor !== '0');
    redis.disconnect();
    rmSync(dir, { recursive: true, force: true });
  });

  for (const kind of ['v2', 'v1'] as const) {
    test(`${kind} client: tools, progress and sampling through edge A, then the same session through edge B`, async () => {
      let target = edgeA.url;
      const sampled: string[] = [];
      const client = await clientVia(kind, () => target, sampled);
      try {
        for (const edge of ['A', 'B']) {
          if (edge === 'B') target = edgeB.url;
          const echo = await client.callTool({ name: 'plain__echo', arguments: { text: `via ${edge}` } });
          assert.equal(echo.content[0].text, `echo: via ${edge}`);
          const progress: number[] = [];
          const done = await client.callTool(
            { name: 'plain__progress', arguments: { steps: 3 } },
            { onprogress: (p: { progress: number }) => progress.push(p.progress) },
          );
          assert.equal(done.content[0].text, 'done');
          assert.deepEqual(progress, [1, 2, 3]);
          const s = await client.callTool({
            name: 'plain__sample',
            arguments: { prompt: `prompt via ${edge}` },
          });
          assert.equal(s.content[0].text, `sampled: answer-${kind}`);
        }
        assert.deepEqual(sampled, ['prompt via A', 'prompt via B']);
        const tools = await client.listTools();
        assert.ok(tools.tools.some((t: { name: string }) => t.name === 'delegated__whoami'));
      } finally {
        await client.close();
      }
    });
  }

  test('list_changed from a backend reaches the client through the core and the edge (GET stream)', async () => {
    const client = await clientVia('v2', () => edgeA.url);
    try {
      const changed = new Promise<void>((resolve) =>
        client.onNotification('notifications/tools/list_changed', () => resolve()),
      );
      const r = await client.callTool({ name: 'late__add_tool', arguments: { name: 'fresh' } });
      assert.equal(r.content[0].text, 'added fresh; GET stream open: true');
      await changed;
      const tools = await client.listTools();
      assert.ok(tools.tools.some((t: { name: string }) => t.name === 'late__fresh'));
    } finally {
      await client.close();
    }
  });

  test('a cancellation travels from the client through edge and core to the backend', async () => {
    const client = await clientVia('v1', () => edgeB.url);
    try {
      const ac = new AbortController();
      const call = client.callTool(
        { name: 'plain__wait_for_cancel', arguments: {} },
        { signal: ac.signal, onprogress: () => ac.abort() },
      );
      await assert.rejects(call);
      const r = await client.callTool({ name: 'plain__cancelled', arguments: {} });
      assert.equal(r.content[0].text, 'cancelled: 1');
    } finally {
      await client.close();
    }
  });

  test('a 2026-07-28 client (stateless) through edge A, then edge B', async () => {
    let target = edgeA.url;
    const c = new V2Client({ name: 'mcpgw-test-2026', version: '1.0.0' }, {
      capabilities: {},
      versionNegotiation: { mode: { pin: '2026-07-28' } },
    } as never);
    await c.connect(new V2Transport(new URL(`${target}/mcp`), { fetch: fetchVia(() => target) } as never));
    try {
      for (const edge of [edgeA, edgeB]) {
        target = edge.url;
        const r = (await c.callTool({ name: 'plain__echo', arguments: { text: '2026' } })) as {
          content: { text: string }[];
        };
        assert.equal(r.content[0]!.text, 'echo: 2026');
        const progress: number[] = [];
        await c.callTool({ name: 'plain__progress', arguments: { steps: 2 } }, {
          onprogress: (p: { progress: number }) => progress.push(p.progress),
        } as never);
        assert.deepEqual(progress, [1, 2]);
      }
    } finally {
      await c.close();
    }
  });

  test('a legacy HTTP+SSE client (2024-11-05) through an edge', async () => {
    const c = new V1Client({ name: 'mcpgw-test-legacy', version: '1.0.0' });
    await c.connect(
      new V1SseTransport(new URL(`${edgeA.url}/sse`), { fetch: fetchVia(() => edgeA.url) } as never),
    );
    try {
      const r = (await c.callTool({ name: 'plain__echo', arguments: { text: 'legacy' } })) as {
        content: { text: string }[];
      };
      assert.equal(r.content[0]!.text, 'echo: legacy');
    } finally {
      await c.close();
    }
  });

  test("the client's own Authorization never reaches a backend; identity headers and delegation tokens do", async () => {
    const client = await clientVia('v2', () => edgeA.url);
    try {
      const signed = JSON.parse(
        (await client.callTool({ name: 'signed__whoami', arguments: {} })).content[0].text,
      );
      assert.deepEqual(signed.headers, { user: 'anonymous', tenant: 'default', roles: [] });
      const delegated = JSON.parse(
        (await client.callTool({ name: 'delegated__whoami', arguments: {} })).content[0].text,
      );
      assert.equal(typeof delegated.delegation, 'object', String(delegated.delegation));
      assert.equal(delegated.delegation.sub, 'anonymous');
      assert.equal(delegated.delegation.aud, 'delegated');
      assert.equal(delegated.delegation.iss, 'core-eu-1');
      assert.equal(delegated.delegation.alg, 'ES256');
      assert.ok(delegated.delegation.lifetime <= 60);
      await client.callTool({ name: 'plain__echo', arguments: { text: 'x' } });
    } finally {
      await client.close();
    }
    const seen = (await (await fetch(`${backendUrl}/seen`)).json()) as Record<string, string | undefined>[];
    assert.ok(seen.length > 0);
    for (const h of seen) {
      assert.ok(
        !JSON.stringify(h).includes(CLIENT_SECRET),
        `the client's token reached the backend: ${JSON.stringify(h)}`,
      );
      if (h['x-test-server'] === 'delegated')
        assert.match(h.authorization ?? '', /^Bearer ey/, `no delegation token on ${JSON.stringify(h)}`);
      else assert.equal(h.authorization, undefined, `${h['x-test-server']} got an Authorization header`);
      if (h['x-test-server'] !== 'signed') assert.equal(h['x-mcpgw-signature'], undefined);
    }
  });

  describe('a core refuses whatever is not a valid internal token of a trusted edge', () => {
    const coreCall = (headers: Record<string, string>, tls: Leaf | null = edgeClient) =>
      request(`${core.url}/internal/v1/info`, {
        headers,
        dispatcher: new Agent({
          connect: {
            ca: readFileSync(ca.cert, 'utf8'),
            ...(tls && { cert: readFileSync(tls.cert, 'utf8'), key: readFileSync(tls.key, 'utf8') }),
          },
        }),
      });
    const sign = async (
      claims: Record<string, unknown>,
      o: { key?: string; aud?: string; iat?: number; exp?: number; typ?: string; sub?: string } = {},
    ) => {
      const pem = readFileSync(o.key ?? edgeKey.priv, 'utf8');
      const key = await importPKCS8(pem, 'EdDSA');
      const now = Math.floor(Date.now() / 1000);
      return new SignJWT({ ten: 'default', rol: [], scp: [], am: 'none', reg: 'eu', ...claims })
        .setProtectedHeader({
          alg: 'EdDSA',
          kid: thumbprint(createPublicKey(pem)),
          typ: o.typ ?? 'mcpgw-internal+jwt',
        })
        .setIssuer('edge-eu')
        .setSubject(o.sub ?? 'anonymous')
        .setAudience(o.aud ?? 'core-eu-1')
        .setIssuedAt(o.iat ?? now)
        .setExpirationTime(o.exp ?? now + 30)
        .sign(key);
    };
    const refusedWith = async (headers: Record<string, string>, code: string) => {
      const res = await coreCall(headers);
      const body = (await res.body.json()) as { error: { data: { code: string } } };
      assert.equal(res.statusCode, 401);
      assert.equal(body.error.data.code, code);
      assert.match(String(res.headers['www-authenticate']), /^Bearer/);
    };

    test('a valid token is accepted (the control)', async () => {
      const res = await coreCall({ authorization: `Bearer ${await sign({})}` });
      assert.equal(res.statusCode, 200);
      assert.deepEqual(((await res.body.json()) as { servers: string[] }).servers, [
        'plain',
        'signed',
        'delegated',
        'late',
      ]);
    });
    test('no token', () => refusedWith({}, 'GW_INTERNAL_TOKEN_MISSING'));
    test('an expired token', async () => {
      const now = Math.floor(Date.now() / 1000);
      await refusedWith(
        { authorization: `Bearer ${await sign({}, { iat: now - 50, exp: now - 20 })}` },
        'GW_INTERNAL_TOKEN_EXPIRED',
      );
    });
    test('a token for another core', async () =>
      refusedWith(
        { authorization: `Bearer ${await sign({}, { aud: 'core-us-1' })}` },
        'GW_INTERNAL_TOKEN_AUDIENCE',
      ));
    test('a token signed by a key the core does not trust', async () => {
      const stranger = makeSigningKey(dir, 'stranger');
      await refusedWith(
        { authorization: `Bearer ${await sign({}, { key: stranger.priv })}` },
        'GW_INTERNAL_TOKEN_INVALID',
      );
    });
    test("a client's raw token, and a JWT that is not an internal token", async () => {
      await refusedWith({ authorization: `Bearer ${CLIENT_SECRET}` }, 'GW_INTERNAL_TOKEN_INVALID');
      await refusedWith(
        { authorization: `Bearer ${await sign({}, { typ: 'JWT' })}` },
        'GW_INTERNAL_TOKEN_INVALID',
      );
    });
    test('a token that lives longer than 60 s', async () => {
      const now = Math.floor(Date.now() / 1000);
      await refusedWith(
        { authorization: `Bearer ${await sign({}, { exp: now + 3600 })}` },
        'GW_INTERNAL_TOKEN_INVALID',
      );
    });

    test("a valid token of another principal cannot use someone else's session on the core", async () => {
      const init = await undiciFetch(`${edgeA.url}/mcp`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
        body: JSON.stringify({
          jsonrpc: '2.0',
          id: 1,
          method: 'initialize',
          params: {
            protocolVersion: '2025-06-18',
            capabilities: {},
            clientInfo: { name: 'raw', version: '1' },
          },
        }),
        dispatcher: clientAgent,
      });
      const sid = init.headers.get('mcp-session-id')!;
      await init.text();
      const call = async (token: string) => {
        const res = await request(`${core.url}/internal/v1/sessions/${sid}/request`, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ scope: 'aggregate', message: { jsonrpc: '2.0', id: 2, method: 'ping' } }),
          dispatcher: new Agent({
            connect: {
              ca: readFileSync(ca.cert, 'utf8'),
              cert: readFileSync(edgeClient.cert, 'utf8'),
              key: readFileSync(edgeClient.key, 'utf8'),
            },
          }),
        });
        return { status: res.statusCode, body: await res.body.text() };
      };
      const mallory = await call(await sign({ ten: 'evil', am: 'jwt' }, { sub: 'mallory' }));
      // Another principal's session does not exist for it (as at the edge): 404, and no hint that it exists.
      assert.equal(mallory.status, 404);
      assert.match(mallory.body, /GW_SESSION_NOT_FOUND/);
      const owner = await call(await sign({}));
      assert.equal(owner.status, 200);
      assert.match(owner.body, /"r":\{"jsonrpc":"2.0","id":2,"result":\{\}\}/);
    });

    test('mTLS: a client certificate of another CA, or none, is refused at the handshake', async () => {
      const token = `Bearer ${await sign({})}`;
      await assert.rejects(coreCall({ authorization: token }, null));
      await assert.rejects(coreCall({ authorization: token }, otherClient));
      const ok = await coreCall({ authorization: token }, edgeClient);
      assert.equal(ok.statusCode, 200);
      await ok.body.dump();
    });
  });

  test('key rotation under load: the edges switch signing keys, the core trusts old and new, no call fails', async () => {
    const clients = await Promise.all([clientVia('v2', () => edgeA.url), clientVia('v1', () => edgeB.url)]);
    let calls = 0;
    const failures: unknown[] = [];
    let stop = false;
    const waiting: { at: number; resolve: () => void }[] = [];
    /** Resolves once `n` more calls have succeeded. */
    const moreCalls = (n: number) => new Promise<void>((resolve) => waiting.push({ at: calls + n, resolve }));
    const loops = clients.flatMap((c) =>
      [0, 1].map(async () => {
        while (!stop) {
          try {
            const r = await c.callTool({ name: 'plain__echo', arguments: { text: 'r' } });
            if (r.content[0].text !== 'echo: r') failures.push(r);
            calls++;
            for (const w of waiting.filter((x) => calls >= x.at)) {
              waiting.splice(waiting.indexOf(w), 1);
              w.resolve();
            }
          } catch (err) {
            failures.push(err);
          }
        }
      }),
    );
    try {
      const next = makeSigningKey(dir, 'edge-signing-2');
      const kid2 = thumbprint(createPublicKey(readFileSync(next.pub, 'utf8')));
      const kid1 = thumbprint(createPublicKey(readFileSync(edgeKey.pub, 'utf8')));
      await moreCalls(4);
      // 1. the core trusts old and new
      let mark = core.out.mark();
      writeTrust([edgeKey.pub, next.pub]);
      await core.out.waitFor(new RegExp(`${kid2}.*trusted edge keys reloaded`), mark);
      // 2. the edges sign with the new key
      const marks = [edgeA.out.mark(), edgeB.out.mark()];
      writeFileSync(`${edgeKey.priv}.tmp`, readFileSync(next.priv));
      renameSync(`${edgeKey.priv}.tmp`, edgeKey.priv);
      await edgeA.out.waitFor(new RegExp(`"kid":"${kid2}".*internal signing key switched`), marks[0]);
      await edgeB.out.waitFor(new RegExp(`"kid":"${kid2}".*internal signing key switched`), marks[1]);
      await moreCalls(4);
      // 3. the old key leaves the core's trust
      mark = core.out.mark();
      writeTrust([next.pub]);
      await core.out.waitFor(new RegExp(`"removed":\\["${kid1}"\\].*trusted edge keys reloaded`), mark);
      await moreCalls(8);
    } finally {
      stop = true;
      await Promise.all(loops);
      await Promise.all(clients.map((c) => c.close()));
    }
    assert.deepEqual(failures, []);
    assert.ok(calls >= 16, `only ${calls} calls ran`);
  });

  test('edge A dies: its session continues through edge B', async () => {
    let target = edgeA.url;
    const client = await clientVia('v1', () => target);
    try {
      assert.equal(
        (await client.callTool({ name: 'plain__echo', arguments: { text: '1' } })).content[0].text,
        'echo: 1',
      );
      edgeA.child.kill('SIGKILL');
      await new Promise((r) => edgeA.child.once('exit', r));
      target = edgeB.url;
      assert.equal(
        (await client.callTool({ name: 'plain__echo', arguments: { text: '2' } })).content[0].text,
        'echo: 2',
      );
      const s = await client.callTool({ name: 'plain__sample', arguments: { prompt: 'after the crash' } });
      assert.equal(s.content[0].text, 'sampled: answer-v1');
    } finally {
      await client.close();
    }
  });
});
