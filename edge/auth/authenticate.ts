/**
 * The authenticate stage: who is calling, from the one credential the request carries. Methods are tried
 * in the configured order and the first whose credential is present decides; a credential that is present
 * but invalid is a 401, never a fall-through to another method or to anonymous. Tokens are read from the
 * Authorization header only (never the query string, where they would end up in logs).
 */
import type { IncomingMessage } from 'node:http';
import type { GatewayConfig } from '../../shared/config/schema.js';
import type { ErrorCode } from '../../shared/errors.js';
import type { AuthMethod, Principal } from '../../shared/identity/principal.js';
import type { ApiKeyStore } from '../../shared/ports/api-key-store.js';
import { ApiKeyAuthenticator, declaredKeyRecord, looksLikeApiKey } from './api-key.js';
import { JwtAuthenticator } from './jwt.js';
import { peerCertificateOf, principalFromCertificate } from './mtls.js';

export type AuthOutcome =
  | { ok: true; principal: Principal }
  | {
      ok: false;
      code: Extract<ErrorCode, 'GW_UNAUTHENTICATED' | 'GW_INVALID_TOKEN' | 'GW_INSUFFICIENT_SCOPE'>;
      /** The RFC 6750 error code for WWW-Authenticate (absent when no credential was sent). */
      error?: 'invalid_request' | 'invalid_token' | 'insufficient_scope';
      description: string;
      /**
       * The credential could not be checked (key store or signing keys unreachable): refused, but not
       * held against its source (an outage must not block every caller behind one address).
       */
      unverifiable?: boolean;
    };

type Method = Exclude<AuthMethod, 'none' | 'internal'>;

export interface AuthenticatorDeps {
  /** Where API keys live (mode api-key). */
  apiKeys?: ApiKeyStore;
}

export class Authenticator {
  readonly methods: readonly Method[];
  private readonly jwt: JwtAuthenticator | undefined;
  private readonly keys: ApiKeyAuthenticator | undefined;

  constructor(
    private readonly config: GatewayConfig,
    deps: AuthenticatorDeps,
  ) {
    const a = config.auth;
    this.methods = a.modes ?? (a.mode && a.mode !== 'none' ? [a.mode] : []);
    this.jwt = this.methods.includes('jwt') && a.jwt ? new JwtAuthenticator(a.jwt) : undefined;
    if (this.methods.includes('api-key')) {
      if (!deps.apiKeys || !a.apiKeys) throw new Error('auth mode api-key needs an ApiKeyStore');
      this.keys = new ApiKeyAuthenticator(
        deps.apiKeys,
        a.apiKeys.pepper,
        a.apiKeys.keys.map(declaredKeyRecord),
      );
    }
  }

  get enabled(): boolean {
    return this.methods.length > 0;
  }

  async authenticate(req: IncomingMessage): Promise<AuthOutcome> {
    const authz = req.headers.authorization;
    const xKey = req.headers['x-api-key'];
    if (Array.isArray(xKey) || (authz !== undefined && xKey !== undefined))
      return invalid('invalid_request', 'send one credential: Authorization or X-API-Key, not both');
    let bearer: string | undefined;
    if (authz !== undefined) {
      const m = /^Bearer[ ]+([A-Za-z0-9\-._~+/]+=*)$/i.exec(authz.trim());
      if (!m) return invalid('invalid_request', 'the Authorization header must be "Bearer <token>"');
      bearer = m[1];
    }
    for (const method of this.methods) {
      const outcome = await this.tryMethod(method, req, bearer, xKey);
      if (outcome) return outcome.ok ? this.withScopes(outcome.principal) : outcome;
    }
    if (bearer !== undefined || xKey !== undefined)
      return invalid('invalid_token', 'this kind of credential is not accepted here');
    return { ok: false, code: 'GW_UNAUTHENTICATED', description: 'a credential is required' };
  }

  /** The method's verdict, or undefined when the request carries no credential of its kind. */
  private async tryMethod(
    method: Method,
    req: IncomingMessage,
    bearer: string | undefined,
    xKey: string | undefined,
  ): Promise<AuthOutcome | undefined> {
    switch (method) {
      case 'jwt': {
        if (bearer === undefined || (this.keys && looksLikeApiKey(bearer))) return undefined;
        const r = await this.jwt!.verify(bearer);
        return r.ok ? r : invalid('invalid_token', r.reason, r.unverifiable);
      }
      case 'api-key': {
        const key = xKey ?? (bearer !== undefined && looksLikeApiKey(bearer) ? bearer : undefined);
        if (key === undefined) return undefined;
        const r = await this.keys!.verify(key);
        return r.ok ? r : invalid('invalid_token', r.reason, r.unverifiable);
      }
      case 'mtls': {
        const peer = peerCertificateOf(req.socket);
        const r = principalFromCertificate(peer?.cert, peer?.verified ?? false, this.config.auth.mtls!);
        if (!r) return undefined;
        return r.ok ? r : invalid('invalid_token', r.reason);
      }
    }
  }

  private withScopes(p: Principal): AuthOutcome {
    const missing = this.config.auth.requiredScopes.filter((s) => !p.scopes.includes(s));
    if (missing.length === 0) return { ok: true, principal: p };
    return {
      ok: false,
      code: 'GW_INSUFFICIENT_SCOPE',
      error: 'insufficient_scope',
      description: `missing scope: ${missing.join(' ')}`,
    };
  }
}

function invalid(
  error: 'invalid_request' | 'invalid_token',
  description: string,
  unverifiable?: boolean,
): AuthOutcome {
  return { ok: false, code: 'GW_INVALID_TOKEN', error, description, ...(unverifiable && { unverifiable }) };
}
