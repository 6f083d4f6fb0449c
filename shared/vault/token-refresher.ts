/**
 * Keeps OAuth access tokens fresh: `accessToken(id)` answers a token valid for at least
 * `refreshBeforeMs`, refreshing it first when needed (refresh_token grant for a user's token,
 * client_credentials for a client), once at a time per credential: concurrent callers share one
 * token request in this process, and the vault's `update` lock keeps other gateways from a second.
 * `start()` also refreshes ahead of expiry in the background.
 */
import { GatewayError } from '../errors.js';
import type { Logger } from '../log.js';
import type {
  Credential,
  CredentialUpdate,
  CredentialVault,
  OAuthClientSecret,
  OAuthTokenSecret,
} from '../ports/credential-vault.js';

export interface TokenRefresherOptions {
  refreshBeforeMs: number;
  log?: Logger;
  /** How long one token request may take. */
  timeoutMs?: number;
  now?: () => number;
}

interface TokenAnswer {
  access_token?: unknown;
  expires_in?: unknown;
  refresh_token?: unknown;
  error?: unknown;
}

export class TokenRefresher {
  private readonly inflight = new Map<string, Promise<Credential>>();
  private timer: NodeJS.Timeout | undefined;
  private readonly now: () => number;

  constructor(
    private readonly vault: CredentialVault,
    private readonly opts: TokenRefresherOptions,
  ) {
    this.now = opts.now ?? Date.now;
  }

  /** A usable access token (or API key) for credential `id`. */
  async accessToken(id: string): Promise<string> {
    const c = await this.vault.get(id);
    if (!c) throw new GatewayError('GW_CREDENTIAL_UNAVAILABLE', `No credential ${id}`, { credential: id });
    if (c.kind === 'api-key') return (c.secret as { apiKey: string }).apiKey;
    const token = (c.secret as { accessToken?: string }).accessToken;
    if (token && !this.due(c)) return token;
    const fresh = await this.refresh(id);
    return (fresh.secret as { accessToken: string }).accessToken;
  }

  /** Refreshes `id` now unless another refresh already made it fresh; one request at a time per id. */
  refresh(id: string): Promise<Credential> {
    let p = this.inflight.get(id);
    if (!p) {
      p = this.vault
        .update(
          id,
          (current) => (this.due(current) ? this.requestToken(current) : Promise.resolve(undefined)),
          'token-refresher',
        )
        .finally(() => this.inflight.delete(id));
      this.inflight.set(id, p);
    }
    return p;
  }

  /** Every `intervalMs`, refreshes the tokens that would expire within `refreshBeforeMs`. */
  start(intervalMs = 30_000): void {
    this.stop();
    const tick = async () => {
      const due = await this.vault.expiringBefore(this.now() + this.opts.refreshBeforeMs).catch(() => []);
      for (const c of due)
        await this.refresh(c.id).catch((err: unknown) =>
          this.opts.log?.warn({ credential: c.id, err: (err as Error).message }, 'token refresh failed'),
        );
    };
    this.timer = setInterval(() => void tick(), intervalMs);
    this.timer.unref();
    void tick();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private due(c: Credential): boolean {
    if (c.kind === 'api-key') return false;
    if (!(c.secret as { accessToken?: string }).accessToken) return true;
    return c.expiresAt !== undefined && c.expiresAt - this.opts.refreshBeforeMs <= this.now();
  }

  private async requestToken(c: Credential): Promise<CredentialUpdate> {
    const body = new URLSearchParams();
    const headers: Record<string, string> = {
      'content-type': 'application/x-www-form-urlencoded',
      accept: 'application/json',
    };
    let secret: OAuthClientSecret | OAuthTokenSecret;
    if (c.kind === 'oauth-client') {
      const s = c.secret as OAuthClientSecret;
      secret = s;
      body.set('grant_type', 'client_credentials');
      if (s.scope) body.set('scope', s.scope);
      headers.authorization = basic(s.clientId, s.clientSecret);
    } else {
      const s = c.secret as OAuthTokenSecret;
      secret = s;
      if (!s.refreshToken)
        throw new GatewayError(
          'GW_CREDENTIAL_UNAVAILABLE',
          `Credential ${c.id} expired and has no refresh token`,
          {
            credential: c.id,
          },
        );
      body.set('grant_type', 'refresh_token');
      body.set('refresh_token', s.refreshToken);
      if (s.scope) body.set('scope', s.scope);
      // A confidential client authenticates (client_secret_basic); a public one names itself.
      if (s.clientSecret) headers.authorization = basic(s.clientId, s.clientSecret);
      else body.set('client_id', s.clientId);
    }
    let res: Response;
    try {
      res = await fetch(secret.tokenUrl, {
        method: 'POST',
        headers,
        body,
        signal: AbortSignal.timeout(this.opts.timeoutMs ?? 10_000),
      });
    } catch (err) {
      throw this.failure(c, `token endpoint unreachable: ${(err as Error).message}`);
    }
    const answer = (await res.json().catch(() => ({}))) as TokenAnswer;
    // Only the OAuth error code is repeated: a token endpoint's body may echo what it was sent.
    if (!res.ok)
      throw this.failure(
        c,
        `token endpoint answered ${res.status}${typeof answer.error === 'string' ? ` (${answer.error})` : ''}`,
      );
    if (typeof answer.access_token !== 'string' || answer.access_token === '')
      throw this.failure(c, 'token endpoint answered without an access_token');
    const expiresIn =
      typeof answer.expires_in === 'number' && answer.expires_in > 0 ? answer.expires_in : undefined;
    const next = { ...secret, accessToken: answer.access_token };
    // Refresh-token rotation: a new refresh token replaces the one just used.
    if (c.kind === 'oauth-token' && typeof answer.refresh_token === 'string' && answer.refresh_token !== '')
      (next as OAuthTokenSecret).refreshToken = answer.refresh_token;
    this.opts.log?.info({ credential: c.id, expiresIn }, 'access token refreshed');
    return { secret: next, ...(expiresIn !== undefined ? { expiresAt: this.now() + expiresIn * 1000 } : {}) };
  }

  private failure(c: Credential, why: string): GatewayError {
    return new GatewayError('GW_CREDENTIAL_UNAVAILABLE', `Credential ${c.id}: ${why}`, { credential: c.id });
  }
}

function basic(id: string, secret: string): string {
  // RFC 6749 2.3.1: both parts form-urlencoded before base64.
  return `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`;
}
