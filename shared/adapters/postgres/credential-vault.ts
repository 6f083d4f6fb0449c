/**
 * CredentialVault on Postgres (a server or the embedded PGlite): one row per credential, its secret as
 * AES-256-GCM ciphertext with the key id beside it; only kind, server, owner and expiry are in clear.
 * `update` serialises per credential with an advisory lock held in its transaction, so that a token
 * refresh runs in one gateway at a time.
 */
import type {
  Credential,
  CredentialInfo,
  CredentialInput,
  CredentialKind,
  CredentialSecret,
  CredentialUpdate,
  CredentialVault,
  RotationReport,
} from '../../ports/credential-vault.js';
import { checkCredential } from '../../vault/credential-input.js';
import type { Keyring } from '../../vault/keyring.js';
import type { SqlDatabase, SqlQueryable } from './sql.js';

interface Row {
  id: string;
  kind: CredentialKind;
  server: string | null;
  owner: string | null;
  key_id: string;
  nonce: Uint8Array;
  ciphertext: Uint8Array;
  expires_at: Date | null;
  version: number;
  updated_at: Date;
  updated_by: string;
}

const INFO = 'id, kind, server, owner, key_id, expires_at, version, updated_at, updated_by';
const ALL = `${INFO}, nonce, ciphertext`;

/** Bound into each ciphertext: a secret decrypts only in the row (id) and kind it was written for. */
function aad(id: string, kind: string): string {
  return `mcpgw-vault/1\0${id}\0${kind}`;
}

export class PostgresCredentialVault implements CredentialVault {
  constructor(
    private readonly db: SqlDatabase,
    private readonly keyring: Keyring,
    private readonly options: { ownsDb?: boolean } = {},
  ) {}

  async put(id: string, input: CredentialInput, by: string): Promise<CredentialInfo> {
    checkCredential(id, input);
    const s = this.keyring.seal(JSON.stringify(input.secret), aad(id, input.kind));
    const r = await this.db.query<Row>(
      `INSERT INTO vault_credentials AS v (id, kind, server, owner, key_id, nonce, ciphertext, expires_at, version,
         created_at, updated_at, updated_by)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, now(), now(), $9)
       ON CONFLICT (id) DO UPDATE SET kind = EXCLUDED.kind, server = EXCLUDED.server, owner = EXCLUDED.owner,
         key_id = EXCLUDED.key_id, nonce = EXCLUDED.nonce, ciphertext = EXCLUDED.ciphertext,
         expires_at = EXCLUDED.expires_at, version = v.version + 1, updated_at = now(), updated_by = EXCLUDED.updated_by
       RETURNING ${INFO}`,
      [
        id,
        input.kind,
        input.server ?? null,
        input.owner ?? null,
        s.keyId,
        s.nonce,
        s.ciphertext,
        input.expiresAt === undefined ? null : new Date(input.expiresAt),
        by,
      ],
    );
    return toInfo(r.rows[0]!);
  }

  async get(id: string): Promise<Credential | undefined> {
    const r = await this.db.query<Row>(`SELECT ${ALL} FROM vault_credentials WHERE id = $1`, [id]);
    return r.rows[0] ? this.decrypt(r.rows[0]) : undefined;
  }

  async list(
    filter: { server?: string; owner?: string; kind?: CredentialKind } = {},
  ): Promise<CredentialInfo[]> {
    const r = await this.db.query<Row>(
      `SELECT ${INFO} FROM vault_credentials
       WHERE ($1::text IS NULL OR server = $1) AND ($2::text IS NULL OR owner = $2) AND ($3::text IS NULL OR kind = $3)
       ORDER BY id`,
      [filter.server ?? null, filter.owner ?? null, filter.kind ?? null],
    );
    return r.rows.map(toInfo);
  }

  async delete(id: string, _by: string): Promise<boolean> {
    return (await this.db.query('DELETE FROM vault_credentials WHERE id = $1', [id])).rowCount > 0;
  }

  async expiringBefore(t: number): Promise<CredentialInfo[]> {
    const r = await this.db.query<Row>(
      `SELECT ${INFO} FROM vault_credentials WHERE expires_at IS NOT NULL AND expires_at < $1 ORDER BY expires_at`,
      [new Date(t)],
    );
    return r.rows.map(toInfo);
  }

  async update(
    id: string,
    change: (current: Credential) => Promise<CredentialUpdate | undefined>,
    by: string,
  ): Promise<Credential> {
    const run = async (q: SqlQueryable, lock: boolean): Promise<Credential> => {
      if (lock) await q.query(`SELECT pg_advisory_xact_lock(hashtext('mcpgw.vault'), hashtext($1))`, [id]);
      const r = await q.query<Row>(`SELECT ${ALL} FROM vault_credentials WHERE id = $1`, [id]);
      if (!r.rows[0]) throw new Error(`no credential ${id}`);
      const current = this.decrypt(r.rows[0]);
      const next = await change(current);
      if (!next) return current;
      const s = this.keyring.seal(JSON.stringify(next.secret), aad(id, current.kind));
      const u = await q.query<Row>(
        `UPDATE vault_credentials SET key_id = $2, nonce = $3, ciphertext = $4, expires_at = $5,
           version = version + 1, updated_at = now(), updated_by = $6
         WHERE id = $1 AND version = $7 RETURNING ${INFO}`,
        [
          id,
          s.keyId,
          s.nonce,
          s.ciphertext,
          next.expiresAt === undefined ? null : new Date(next.expiresAt),
          by,
          current.version,
        ],
      );
      if (!u.rows[0]) throw new Error(`credential ${id} changed during its update`);
      return { ...toInfo(u.rows[0]), secret: next.secret };
    };
    // One embedded node has one process: its caller's single-flight suffices, and a transaction held
    // over a token request would stall every other query on PGlite's one connection.
    if (this.db.kind === 'embedded') return run(this.db, false);
    return this.db.transaction((tx) => run(tx, true));
  }

  async rotateKey(): Promise<RotationReport> {
    const current = this.keyring.current.id;
    const report: RotationReport = { total: 0, reencrypted: 0, undecryptable: [] };
    report.total = Number(
      (await this.db.query<{ n: number }>('SELECT count(*)::int AS n FROM vault_credentials')).rows[0]?.n ??
        0,
    );
    let after = '';
    for (;;) {
      const r = await this.db.query<Row>(
        `SELECT ${ALL} FROM vault_credentials WHERE key_id <> $1 AND id > $2 ORDER BY id LIMIT 200`,
        [current, after],
      );
      for (const row of r.rows) {
        after = row.id;
        if (!this.keyring.has(row.key_id)) {
          report.undecryptable.push(row.id);
          continue;
        }
        const plain = this.keyring.open(sealedOf(row), aad(row.id, row.kind));
        const s = this.keyring.seal(plain, aad(row.id, row.kind));
        // Same secret, same version: only the encryption changes. A concurrent write wins (and is
        // already under the current key).
        const u = await this.db.query(
          'UPDATE vault_credentials SET key_id = $2, nonce = $3, ciphertext = $4 WHERE id = $1 AND key_id = $5 AND version = $6',
          [row.id, s.keyId, s.nonce, s.ciphertext, row.key_id, row.version],
        );
        if (u.rowCount > 0) report.reencrypted++;
      }
      if (r.rows.length < 200) break;
    }
    return report;
  }

  async close(): Promise<void> {
    if (this.options.ownsDb) await this.db.close();
  }

  private decrypt(row: Row): Credential {
    const secret = JSON.parse(this.keyring.open(sealedOf(row), aad(row.id, row.kind))) as CredentialSecret;
    return { ...toInfo(row), secret };
  }
}

function sealedOf(row: Row) {
  return { keyId: row.key_id, nonce: Buffer.from(row.nonce), ciphertext: Buffer.from(row.ciphertext) };
}

function toInfo(row: Row): CredentialInfo {
  const info: CredentialInfo = {
    id: row.id,
    kind: row.kind,
    keyId: row.key_id,
    version: row.version,
    updatedAt: row.updated_at.getTime(),
    updatedBy: row.updated_by,
  };
  if (row.server !== null) info.server = row.server;
  if (row.owner !== null) info.owner = row.owner;
  if (row.expires_at !== null) info.expiresAt = row.expires_at.getTime();
  return info;
}
