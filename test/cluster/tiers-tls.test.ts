/**
 * TLS on the listeners: HTTPS with TLS 1.2 at least and 1.3 when the client has it, certificates reloaded
 * when their files change (new handshakes get the new certificate, no restart), mTLS refusing clients
 * without a certificate of the configured CA, and the verified peer certificate readable on the request.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { copyFileSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type PeerCertificate } from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { Agent, request } from 'undici';
import { validateConfig } from '../../shared/config/load.js';
import { createLogger, type Logger } from '../../shared/log.js';
import { EventEmitter, once } from 'node:events';
import { peerCertificate } from '../../shared/tls/peer-certificate.js';
import { serverTlsOptions, watchServerTls } from '../../shared/tls/server-tls.js';
import { GatewayCore } from '../../core/mcp/gateway-core.js';
import { buildEdgeApp } from '../../edge/http/app.js';
import { MemorySessionStore } from '../../shared/adapters/memory/session-store.js';
import { MemoryEventStore } from '../../shared/adapters/memory/event-store.js';
import { startSingleNode, type RunningNode } from '../../cli/single.js';
import { makeCa, makeLeaf, type Ca, type Leaf } from '../helpers/pki.js';

const dir = mkdtempSync(join(tmpdir(), 'mcpgw-tls-'));
let ca: Ca;
let other: Ca;
let first: Leaf;
let second: Leaf;
let client: Leaf;
let stranger: Leaf;
const log = createLogger('silent');
/** A logger that says when a certificate was reloaded (the only outside sign of it). */
const events = new EventEmitter();
const quiet = () => {};
const watchingLog: Logger = {
  trace: quiet,
  debug: quiet,
  warn: quiet,
  error: quiet,
  fatal: quiet,
  info: (_o, m) => void (m === 'TLS certificate reloaded' && events.emit('reloaded')),
  child: () => watchingLog,
};

function handshake(
  port: number,
  o: { maxVersion?: 'TLSv1.2' | 'TLSv1.3'; leaf?: Leaf } = {},
): Promise<{ protocol: string; cert: PeerCertificate }> {
  return new Promise((resolve, reject) => {
    const s = connect(
      {
        host: '127.0.0.1',
        port,
        ca: readFileSync(ca.cert),
        ...(o.maxVersion && { maxVersion: o.maxVersion }),
        ...(o.leaf && { cert: readFileSync(o.leaf.cert), key: readFileSync(o.leaf.key) }),
      },
      () => {
        const r = { protocol: s.getProtocol()!, cert: s.getPeerCertificate() };
        s.end();
        resolve(r);
      },
    );
    s.on('error', reject);
  });
}

before(() => {
  ca = makeCa(dir, 'ca');
  other = makeCa(dir, 'other');
  first = makeLeaf(dir, ca, 'first');
  second = makeLeaf(dir, ca, 'second');
  client = makeLeaf(dir, ca, 'client');
  stranger = makeLeaf(dir, other, 'stranger');
});
after(() => rmSync(dir, { recursive: true, force: true }));

describe('an HTTPS listener', () => {
  let node: RunningNode;
  const cert = join(dir, 'live.crt');
  const key = join(dir, 'live.key');

  before(async () => {
    copyFileSync(first.cert, cert);
    copyFileSync(first.key, key);
    node = await startSingleNode(
      validateConfig(
        { listen: { host: '127.0.0.1', port: 0, tls: { cert, key } }, log: { level: 'silent' } },
        't',
        {},
      ),
      { log: watchingLog },
    );
  });
  after(() => node.close());

  test('serves MCP over TLS 1.3, accepts 1.2, refuses older', async () => {
    assert.match(node.url, /^https:/);
    const port = Number(new URL(node.url).port);
    assert.equal((await handshake(port)).protocol, 'TLSv1.3');
    assert.equal((await handshake(port, { maxVersion: 'TLSv1.2' })).protocol, 'TLSv1.2');
    await assert.rejects(
      new Promise((resolve, reject) => {
        const s = connect(
          { host: '127.0.0.1', port, ca: readFileSync(ca.cert), maxVersion: 'TLSv1.1', minVersion: 'TLSv1' },
          () => resolve(undefined),
        );
        s.on('error', reject);
      }),
    );
    const res = await request(`${node.url}/healthz`, {
      dispatcher: new Agent({ connect: { ca: readFileSync(ca.cert) } }),
    });
    assert.equal(res.statusCode, 200);
    await res.body.dump();
  });

  test('a rewritten certificate is used by new handshakes, without a restart', async () => {
    const port = Number(new URL(node.url).port);
    const want = new X509Certificate(readFileSync(second.cert)).fingerprint256;
    assert.notEqual((await handshake(port)).cert.fingerprint256, want);
    // Key first, then certificate, each by atomic rename: the pair is only consistent at the end, and
    // the listener keeps the last good pair meanwhile.
    const reloaded = once(events, 'reloaded');
    copyFileSync(second.key, `${key}.tmp`);
    copyFileSync(second.cert, `${cert}.tmp`);
    renameSync(`${key}.tmp`, key);
    renameSync(`${cert}.tmp`, cert);
    await reloaded;
    assert.equal((await handshake(port)).cert.fingerprint256, want);
  });
});

describe('mTLS (listen.tls.clientCa)', () => {
  let server: import('fastify').FastifyInstance;
  let port = 0;

  before(async () => {
    const config = validateConfig(
      {
        listen: { host: '127.0.0.1', port: 0, tls: { cert: first.cert, key: first.key, clientCa: ca.cert } },
        log: { level: 'silent' },
      },
      't',
      {},
    );
    const core = new GatewayCore({ config, log });
    const tls = config.listen.tls!;
    const { app } = buildEdgeApp({
      config,
      core,
      sessions: new MemorySessionStore(),
      events: new MemoryEventStore(config.sessions.eventRetention),
      log,
      https: serverTlsOptions(tls),
    });
    // What the auth stage's mTLS mode reads: the verified certificate of the connection.
    app.get('/peer', async (req) => {
      const p = peerCertificate(req.raw.socket);
      return { cn: p?.subject.CN, san: p?.subjectAltName };
    });
    const w = watchServerTls(app.server as never, tls, log);
    app.addHook('onClose', async () => w.close());
    await app.listen({ host: '127.0.0.1', port: 0 });
    server = app;
    const addr = app.server.address();
    port = typeof addr === 'object' && addr ? addr.port : 0;
  });
  after(() => server.close());

  const get = (leaf?: Leaf) =>
    request(`https://127.0.0.1:${port}/peer`, {
      dispatcher: new Agent({
        connect: {
          ca: readFileSync(ca.cert),
          ...(leaf && { cert: readFileSync(leaf.cert), key: readFileSync(leaf.key) }),
        },
      }),
    });

  test('a certificate of the client CA gets in, and the request sees it', async () => {
    const res = await get(client);
    assert.equal(res.statusCode, 200);
    assert.deepEqual(await res.body.json(), { cn: 'client', san: 'IP Address:127.0.0.1, DNS:localhost' });
  });

  test('no certificate, or one of another CA, is refused at the handshake', async () => {
    await assert.rejects(get());
    await assert.rejects(get(stranger));
  });
});
