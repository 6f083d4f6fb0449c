/**
 * mTLS identity: the edge app served over a real TLS listener the test creates (requestCert, its own
 * CA), certificates made with openssl at test time, and the SDK client presenting one. The verified
 * certificate's CN or SAN names the caller; no certificate, or one from another CA, is a 401.
 */
import assert from 'node:assert/strict';
import { createServer, request, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { Agent, fetch as undiciFetch } from 'undici';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { FastifyInstance } from 'fastify';
import { validateConfig } from '../../shared/config/load.js';
import { createLogger } from '../../shared/log.js';
import { MemoryEventStore } from '../../shared/adapters/memory/event-store.js';
import { MemorySessionStore } from '../../shared/adapters/memory/session-store.js';
import { GatewayCore } from '../../core/mcp/gateway-core.js';
import { buildEdgeApp } from '../../edge/http/app.js';
import { principalFromCertificate, peerCertificateOf } from '../../edge/auth/mtls.js';
import { secureServer } from '../helpers/auth.js';
import { TestPki, type Pem } from '../helpers/certs.js';

const INIT = {
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'mtls', version: '1' } },
};

describe('mTLS identity over a real TLS listener', () => {
  const pki = new TestPki();
  const ca = pki.ca('trusted-ca');
  const otherCa = pki.ca('other-ca');
  const serverCert = pki.leaf(ca, 'server', '/CN=localhost', 'DNS:localhost,IP:127.0.0.1', 'serverAuth');
  const billing = pki.leaf(
    ca,
    'billing',
    '/O=acme/CN=svc-billing',
    'URI:spiffe://acme/billing,DNS:billing.internal,email:billing@acme.test',
    'clientAuth',
  );
  const intruder = pki.leaf(
    otherCa,
    'intruder',
    '/CN=svc-billing',
    'URI:spiffe://acme/billing',
    'clientAuth',
  );

  let app: FastifyInstance;
  let core: GatewayCore;
  let tls: Server;
  let url: string;

  before(async () => {
    const config = validateConfig(
      {
        listen: { host: '127.0.0.1', port: 0 },
        log: { level: 'silent' },
        auth: {
          mode: 'mtls',
          mtls: {
            subjectFrom: 'cn',
            tenant: 'acme',
            roles: ['service'],
            identities: { 'svc-billing': { roles: ['billing'], scopes: ['invoices'] } },
          },
        },
        servers: [secureServer('files')],
      },
      'test',
      {},
    );
    const log = createLogger('silent');
    core = new GatewayCore({ config, log });
    await core.start();
    ({ app } = buildEdgeApp({
      config,
      core,
      sessions: new MemorySessionStore(),
      events: new MemoryEventStore(),
      log,
    }));
    await app.ready();
    // The listener verifies client certificates against its CA but lets unverified ones through, so that
    // the edge (not the handshake) decides and answers with a 401 the client can read.
    tls = createServer(
      {
        key: serverCert.key,
        cert: serverCert.cert,
        ca: [ca.cert],
        requestCert: true,
        rejectUnauthorized: false,
      },
      (req, res) => app.routing(req, res),
    );
    await new Promise<void>((r) => tls.listen(0, '127.0.0.1', r));
    url = `https://127.0.0.1:${(tls.address() as AddressInfo).port}/mcp`;
  });
  after(async () => {
    tls.closeAllConnections();
    await new Promise<void>((r) => tls.close(() => r()));
    await app.close();
    await core.close();
  });

  const post = (client?: Pem) =>
    new Promise<{ status: number; challenge?: string; body: any }>((resolve, reject) => {
      const req = request(
        url,
        {
          method: 'POST',
          ca: ca.cert,
          ...(client ? { key: client.key, cert: client.cert } : {}),
          headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
        },
        (res) => {
          let text = '';
          res.on('data', (d) => (text += d));
          res.on('end', () =>
            resolve({
              status: res.statusCode!,
              challenge: res.headers['www-authenticate'],
              body: JSON.parse(text),
            }),
          );
        },
      );
      req.on('error', reject);
      req.end(JSON.stringify(INIT));
    });

  test('a certificate from the trusted CA: the SDK client works as that caller', async () => {
    const agent = new Agent({ connect: { ca: ca.cert, key: billing.key, cert: billing.cert } });
    const client = new Client({ name: 'mtls', version: '1' });
    await client.connect(
      new StreamableHTTPClientTransport(new URL(url), {
        fetch: ((u: any, init: any) => undiciFetch(u, { ...init, dispatcher: agent })) as any,
      }),
    );
    assert.ok((await client.listTools()).tools.some((t) => t.name === 'files__echo'));
    await client.close();
    await agent.close();
  });

  test('no client certificate: 401', async () => {
    const r = await post();
    assert.equal(r.status, 401);
    assert.equal(r.body.error.data.code, 'GW_UNAUTHENTICATED');
    assert.match(r.challenge ?? '', /^Bearer realm="mcpgw"/);
  });

  test('a certificate from another CA (same subject): 401 invalid_token, never that caller', async () => {
    const r = await post(intruder);
    assert.equal(r.status, 401);
    assert.equal(r.body.error.data.code, 'GW_INVALID_TOKEN');
    assert.match(r.challenge ?? '', /not signed by a trusted CA/);
  });

  test('the mapping reads CN or each SAN kind from the verified peer certificate', async () => {
    // The peer certificate object exactly as the listener hands it to the edge.
    const peer = await new Promise<ReturnType<typeof peerCertificateOf>>((resolve, reject) => {
      const probe = createServer(
        {
          key: serverCert.key,
          cert: serverCert.cert,
          ca: [ca.cert],
          requestCert: true,
          rejectUnauthorized: false,
        },
        (req, res) => {
          resolve(peerCertificateOf(req.socket));
          res.end();
        },
      );
      probe.listen(0, '127.0.0.1', () => {
        const port = (probe.address() as AddressInfo).port;
        request(
          `https://127.0.0.1:${port}/`,
          { ca: ca.cert, key: billing.key, cert: billing.cert },
          (res) => {
            res.resume();
            res.on('end', () => probe.close());
          },
        )
          .on('error', reject)
          .end();
      });
    });
    assert.ok(peer?.verified);
    const base = { tenant: 'acme', roles: ['service'], scopes: [], identities: {} };
    const subjectOf = (subjectFrom: 'cn' | 'san-uri' | 'san-dns' | 'san-email') => {
      const r = principalFromCertificate(peer!.cert, true, { ...base, subjectFrom });
      assert.ok(r?.ok);
      return r.principal.subject;
    };
    assert.equal(subjectOf('cn'), 'svc-billing');
    assert.equal(subjectOf('san-uri'), 'spiffe://acme/billing');
    assert.equal(subjectOf('san-dns'), 'billing.internal');
    assert.equal(subjectOf('san-email'), 'billing@acme.test');
    const mapped = principalFromCertificate(peer!.cert, true, {
      ...base,
      subjectFrom: 'cn',
      identities: { 'svc-billing': { tenant: 'finance', roles: ['billing'] } },
    });
    assert.deepEqual(mapped, {
      ok: true,
      principal: {
        subject: 'svc-billing',
        tenant: 'finance',
        roles: ['billing'],
        scopes: [],
        authMethod: 'mtls',
      },
    });
    assert.equal(principalFromCertificate(peer!.cert, false, { ...base, subjectFrom: 'cn' })?.ok, false);
    assert.equal(principalFromCertificate(undefined, false, { ...base, subjectFrom: 'cn' }), undefined);
  });
});
