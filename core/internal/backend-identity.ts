/**
 * The core's side of `servers[].identity`: which principal each client session acts for (learned from the
 * internal token of its latest request), and the headers that tell an HTTP backend so. Signatures and
 * delegation tokens are made once per principal and server and reused for half their lifetime: the
 * transports ask for headers on every request and get them from this cache.
 */
import { createHash, sign } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { DELEGATION_TOKEN_TYP, signIdentityHeaders } from '../../shared/identity/backend-identity.js';
import { loadSigningKey, type SigningKey } from '../../shared/identity/keys.js';
import type { Principal } from '../../shared/identity/principal.js';
import { watchFiles, type FileWatch } from '../../shared/files/watch.js';
import type { GatewayConfig } from '../../shared/config/schema.js';
import type { Logger } from '../../shared/log.js';
import { serverId } from '../../shared/mcp/server-versions.js';

const CACHE_LIMIT = 20_000;

export class BackendIdentity {
  private readonly modes = new Map<string, 'headers' | 'delegation'>();
  private readonly bySession = new Map<string, Principal>();
  private readonly cache = new Map<string, { headers: Record<string, string>; renewAt: number }>();
  private hmacKey: Buffer | undefined;
  private delegationKey: SigningKey | undefined;
  private readonly watches: FileWatch[] = [];
  private readonly ttl: number;
  private readonly self: Principal;

  constructor(
    config: GatewayConfig,
    /** The token's `iss`: this core. */
    private readonly issuer: string,
    private readonly log: Logger,
  ) {
    const bi = config.backendIdentity;
    this.self = Object.freeze({
      subject: `mcpgw-core:${issuer}`,
      tenant: 'mcpgw-system',
      roles: Object.freeze(['gateway']),
      scopes: Object.freeze([]),
      authMethod: 'internal',
    });
    this.ttl = bi.ttlSeconds;
    for (const s of config.servers)
      if (s.transport !== 'stdio' && s.identity !== 'none') this.modes.set(serverId(s), s.identity);
    if (bi.hmacKeyFile) {
      const file = bi.hmacKeyFile;
      this.hmacKey = readHmacKey(file);
      this.watches.push(watchFiles([file], () => this.reload(() => (this.hmacKey = readHmacKey(file)))));
    }
    if (bi.delegationKey) {
      const file = bi.delegationKey;
      this.delegationKey = loadSigningKey(file);
      this.watches.push(
        watchFiles([file], () => this.reload(() => (this.delegationKey = loadSigningKey(file)))),
      );
    }
  }

  /** Any backend that wants to know who calls? */
  get active(): boolean {
    return this.modes.size > 0;
  }

  /** The principal session `id` acts for, from the internal token of its latest request. */
  bind(sessionId: string, principal: Principal): void {
    if (this.bySession.get(sessionId) !== principal) this.bySession.set(sessionId, principal);
  }

  unbind(sessionId: string): void {
    this.bySession.delete(sessionId);
  }

  /**
   * The headers for a request of session `sessionId` to `server` (undefined: none). Without a session
   * (the start-up probe) the core speaks for itself; a session whose principal is unknown gets nothing,
   * never the core's identity.
   */
  headersFor(server: string, sessionId: string | undefined): Record<string, string> | undefined {
    const mode = this.modes.get(server);
    const principal = sessionId === undefined ? this.self : this.bySession.get(sessionId);
    if (!mode || !principal) return undefined;
    const key = `${server}\u0000${principalCacheKey(principal)}`;
    const now = Date.now();
    const hit = this.cache.get(key);
    if (hit && hit.renewAt > now) return hit.headers;
    const t = Math.floor(now / 1000);
    const headers =
      mode === 'headers'
        ? signIdentityHeaders(
            this.hmacKey!,
            server,
            { user: principal.subject, tenant: principal.tenant, roles: principal.roles },
            t,
          )
        : { authorization: `Bearer ${this.delegationToken(server, principal, t)}` };
    if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
    this.cache.set(key, { headers, renewAt: now + (this.ttl * 1000) / 2 });
    return headers;
  }

  close(): void {
    for (const w of this.watches) w.close();
  }

  /** A compact JWS made with node:crypto directly: synchronous, so the transports can ask per request. */
  private delegationToken(server: string, p: Principal, iat: number): string {
    const k = this.delegationKey!;
    const header = { alg: k.alg, kid: k.kid, typ: DELEGATION_TOKEN_TYP };
    const payload = {
      iss: this.issuer,
      aud: server,
      sub: p.subject,
      ten: p.tenant,
      rol: p.roles,
      scp: p.scopes,
      ...(p.clientApp !== undefined && { app: p.clientApp }),
      iat,
      exp: iat + this.ttl,
    };
    const input = `${b64(header)}.${b64(payload)}`;
    const sig =
      k.alg === 'EdDSA'
        ? sign(null, Buffer.from(input), k.key)
        : sign('sha256', Buffer.from(input), { key: k.key, dsaEncoding: 'ieee-p1363' });
    return `${input}.${sig.toString('base64url')}`;
  }

  private reload(load: () => unknown): void {
    try {
      load();
      this.cache.clear();
      this.log.info({}, 'backend identity key reloaded');
    } catch (err) {
      this.log.error(
        { err: (err as Error).message },
        'backend identity key not reloaded; keeping the current one',
      );
    }
  }
}

function readHmacKey(file: string): Buffer {
  const raw = readFileSync(file);
  const text = raw.toString('utf8').trim();
  const key = Buffer.from(text, 'utf8');
  if (key.length < 32) throw new Error(`${file}: an HMAC key needs at least 32 bytes`);
  return key;
}

function b64(o: object): string {
  return Buffer.from(JSON.stringify(o)).toString('base64url');
}

function principalCacheKey(p: Principal): string {
  return createHash('sha1')
    .update(JSON.stringify([p.subject, p.tenant, p.roles, p.scopes, p.clientApp ?? null]))
    .digest('base64url');
}
