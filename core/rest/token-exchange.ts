/**
 * RFC 8693 token exchange: the caller's delegation token (made by the core for this server, never the
 * client's own token) is exchanged at the backend's token endpoint for a token the backend accepts.
 * Answers are cached per subject token until `refreshBeforeMs` before they expire; concurrent calls
 * for one subject share one exchange.
 */
import { createHash } from 'node:crypto';
import { GatewayError } from '../../shared/errors.js';

export const TOKEN_EXCHANGE_GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const JWT_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:jwt';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

export interface TokenExchangeOptions {
  server: string;
  tokenUrl: string;
  audience?: string | undefined;
  resource?: string | undefined;
  scope?: string | undefined;
  refreshBeforeMs: number;
  /** The gateway's client credentials at the endpoint, if it wants them. */
  client?: () => Promise<{ clientId: string; clientSecret: string } | undefined>;
  timeoutMs?: number;
  now?: () => number;
  maxEntries?: number;
}

export class TokenExchanger {
  private readonly cache = new Map<string, { token: string; renewAt: number }>();
  private readonly inflight = new Map<string, Promise<string>>();
  private readonly now: () => number;

  constructor(private readonly o: TokenExchangeOptions) {
    this.now = o.now ?? Date.now;
  }

  /** A backend token for the caller whose delegation token is `subjectToken`. */
  async tokenFor(subjectToken: string): Promise<string> {
    const key = createHash('sha256').update(subjectToken).digest('base64url');
    const hit = this.cache.get(key);
    if (hit && hit.renewAt > this.now()) return hit.token;
    let p = this.inflight.get(key);
    if (!p) {
      p = this.exchange(key, subjectToken).finally(() => this.inflight.delete(key));
      this.inflight.set(key, p);
    }
    return p;
  }

  private async exchange(key: string, subjectToken: string): Promise<string> {
    const o = this.o;
    const body = new URLSearchParams({
      grant_type: TOKEN_EXCHANGE_GRANT,
      subject_token: subjectToken,
      subject_token_type: JWT_TOKEN_TYPE,
      requested_token_type: ACCESS_TOKEN_TYPE,
    });
    if (o.audience) body.set('audience', o.audience);
    if (o.resource) body.set('resource', o.resource);
    if (o.scope) body.set('scope', o.scope);
    const headers: Record<string, string> = {
      'content-type': 'application/x-www-form-urlencoded',
      accept: 'application/json',
    };
    const client = await o.client?.();
    if (client)
      headers.authorization = `Basic ${Buffer.from(`${encodeURIComponent(client.clientId)}:${encodeURIComponent(client.clientSecret)}`).toString('base64')}`;
    let res: Response;
    try {
      res = await fetch(o.tokenUrl, {
        method: 'POST',
        headers,
        body,
        signal: AbortSignal.timeout(o.timeoutMs ?? 10_000),
      });
    } catch (err) {
      throw this.failure(`token endpoint unreachable: ${(err as Error).message}`);
    }
    const answer = (await res.json().catch(() => ({}))) as Record<string, unknown>;
    // Only the OAuth error code is repeated: the endpoint's body may echo the subject token.
    if (!res.ok)
      throw this.failure(
        `token endpoint answered ${res.status}${typeof answer.error === 'string' ? ` (${answer.error})` : ''}`,
      );
    if (typeof answer.access_token !== 'string' || answer.access_token === '')
      throw this.failure('token endpoint answered without an access_token');
    const expiresIn = typeof answer.expires_in === 'number' && answer.expires_in > 0 ? answer.expires_in : 60;
    const renewAt = this.now() + Math.max(0, expiresIn * 1000 - o.refreshBeforeMs);
    if (this.cache.size >= (o.maxEntries ?? 10_000)) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(key, { token: answer.access_token, renewAt });
    return answer.access_token;
  }

  private failure(why: string): GatewayError {
    return new GatewayError('GW_CREDENTIAL_UNAVAILABLE', `Token exchange for ${this.o.server}: ${why}`, {
      server: this.o.server,
    });
  }
}
