/**
 * Test support for the security tests: a JWKS server with rotating keys and a token minter, API keys,
 * the secure fixture server, and the SDK client with credentials in its headers.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT, type JWK, type CryptoKey } from 'jose';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ROOT } from './net.js';
import { generateApiKey } from '../../edge/auth/api-key.js';
import type { ApiKeyStore } from '../../shared/ports/api-key-store.js';

export const SECURE = `${ROOT}dist/test/fixtures/secure-server.js`;

export function secureServer(name: string, extra: Record<string, unknown> = {}) {
  return {
    name,
    transport: 'stdio',
    command: process.execPath,
    args: [SECURE],
    env: { FIXTURE_NAME: name },
    ...extra,
  };
}

export interface SigningKey {
  kid: string;
  alg: 'RS256' | 'ES256';
  privateKey: CryptoKey;
  publicJwk: JWK;
}

export async function signingKey(kid: string, alg: 'RS256' | 'ES256' = 'RS256'): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
  return { kid, alg, privateKey, publicJwk };
}

/** A JWKS endpoint serving `keys` (mutable: rotation is a push), counting its fetches. */
export class JwksServer {
  keys: SigningKey[] = [];
  fetches = 0;
  private server: Server | undefined;
  url = '';

  async start(): Promise<this> {
    this.server = createServer((req, res) => {
      this.fetches++;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ keys: this.keys.map((k) => k.publicJwk) }));
    });
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/jwks.json`;
    return this;
  }

  async stop(): Promise<void> {
    if (!this.server) return;
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server!.close(() => r()));
  }
}

export async function mint(
  key: SigningKey,
  claims: Record<string, unknown>,
  o: { issuer?: string; audience?: string; expiresIn?: string | number; notBefore?: string | number } = {},
): Promise<string> {
  let jwt = new SignJWT(claims)
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'JWT' })
    .setIssuedAt()
    .setIssuer(o.issuer ?? 'https://issuer.test')
    .setAudience(o.audience ?? 'https://gateway.test/mcp')
    .setExpirationTime(o.expiresIn ?? '5m');
  if (o.notBefore !== undefined) jwt = jwt.setNotBefore(o.notBefore);
  return jwt.sign(key.privateKey);
}

/** The v1 SDK client over Streamable HTTP with `headers` on every request. */
export async function connectWith(url: string, headers: Record<string, string>): Promise<Client> {
  const client = new Client({ name: 'auth-test', version: '1' });
  await client.connect(new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } }));
  return client;
}

export const b64url = (s: string | Buffer) => Buffer.from(s).toString('base64url');

/** A fresh API key with these grants, put in `keys` (a key store the gateway under test reads). */
export async function putApiKey(
  keys: ApiKeyStore,
  pepper: string,
  owner: string,
  roles: string[],
  tenant = 'default',
): Promise<string> {
  const g = generateApiKey(pepper);
  await keys.put({
    id: g.id,
    hash: g.hash,
    owner,
    tenant,
    roles,
    scopes: [],
    createdAt: Date.now(),
    revoked: false,
  });
  return g.key;
}
