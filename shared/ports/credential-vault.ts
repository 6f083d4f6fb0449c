/**
 * CredentialVault: the upstream credentials the gateway presents to backends (API keys, OAuth client
 * credentials, per-user OAuth tokens), encrypted at rest. Only `get` and `update` ever return a
 * secret; `list` and every other answer describe credentials without them.
 */

export type CredentialKind = 'api-key' | 'oauth-client' | 'oauth-token';

export interface ApiKeySecret {
  apiKey: string;
}

/** OAuth client credentials; the access token got with the client_credentials grant is cached here. */
export interface OAuthClientSecret {
  clientId: string;
  clientSecret: string;
  tokenUrl: string;
  scope?: string;
  accessToken?: string;
}

/** A user's OAuth tokens, refreshed with the refresh_token grant. */
export interface OAuthTokenSecret {
  accessToken: string;
  refreshToken?: string;
  tokenUrl: string;
  clientId: string;
  clientSecret?: string;
  scope?: string;
}

export type CredentialSecret<K extends CredentialKind = CredentialKind> = K extends 'api-key'
  ? ApiKeySecret
  : K extends 'oauth-client'
    ? OAuthClientSecret
    : OAuthTokenSecret;

/** What may be said of a credential anywhere: no secret. */
export interface CredentialInfo {
  id: string;
  kind: CredentialKind;
  /** The upstream server it is for. */
  server?: string;
  /** The user a per-user token belongs to (principal subject). */
  owner?: string;
  /** When the access token expires (ms since the epoch), for OAuth kinds. */
  expiresAt?: number;
  keyId: string;
  version: number;
  updatedAt: number;
  updatedBy: string;
}

export interface Credential extends CredentialInfo {
  secret: CredentialSecret;
}

export interface CredentialInput {
  kind: CredentialKind;
  secret: CredentialSecret;
  server?: string;
  owner?: string;
  expiresAt?: number;
}

/** What an update changes: the secret (whole) and the expiry. */
export interface CredentialUpdate {
  secret: CredentialSecret;
  expiresAt?: number;
}

export interface RotationReport {
  total: number;
  reencrypted: number;
  /** Credentials whose key is not in the keyring: left as they are. */
  undecryptable: string[];
}

export interface CredentialVault {
  put(id: string, input: CredentialInput, by: string): Promise<CredentialInfo>;
  get(id: string): Promise<Credential | undefined>;
  list(filter?: { server?: string; owner?: string; kind?: CredentialKind }): Promise<CredentialInfo[]>;
  delete(id: string, by: string): Promise<boolean>;
  /** Credentials whose access token expires before `t` (the refresher's work list). */
  expiringBefore(t: number): Promise<CredentialInfo[]>;
  /**
   * Runs `change` on the current credential while no other gateway runs one on it, and stores what it
   * returns (nothing: unchanged). This is what makes a token refresh happen once across processes.
   */
  update(
    id: string,
    change: (current: Credential) => Promise<CredentialUpdate | undefined>,
    by: string,
  ): Promise<Credential>;
  /** Re-encrypts every credential not under the keyring's current key with it. */
  rotateKey(): Promise<RotationReport>;
  close(): Promise<void>;
}
