/**
 * The credential vault on the real Postgres (and the embedded PGlite): secrets encrypted at rest (no
 * plaintext in any column of any table), never in list answers or logs, key rotation with
 * `mcpgw vault rotate-key`, and OAuth tokens refreshed against a token endpoint written here, once per
 * credential however many callers (and gateways) ask at the same time.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { EmbeddedDatabase } from '../../shared/adapters/postgres/embedded-database.js';
import { PostgresCredentialVault } from '../../shared/adapters/postgres/credential-vault.js';
import { migrate } from '../../shared/adapters/postgres/migrations.js';
import { PgDatabase } from '../../shared/adapters/postgres/pg-database.js';
import { createLogger } from '../../shared/log.js';
import { Keyring, keyId } from '../../shared/vault/keyring.js';
import { TokenRefresher } from '../../shared/vault/token-refresher.js';
import { configFile, mcpgw } from '../helpers/cli.js';
import { dropSchema, migratedDatabase, PG_URL, uniqueSchema, withClient } from '../helpers/postgres.js';

const schema = uniqueSchema('vault');
const KEY_A = randomBytes(32);
const KEY_B = randomBytes(32);
const secret = (label: string) => `${label}-${randomBytes(12).toString('hex')}`;

let db: PgDatabase;
before(async () => {
  db = await migratedDatabase(schema);
});
after(async () => {
  await db.close();
  await dropSchema(schema);
});

/** Every row of every table of the schema as text (bytea as hex), searched for the secret's bytes. */
async function findInDatabase(value: string): Promise<string[]> {
  const needles = [value, Buffer.from(value).toString('hex'), Buffer.from(value).toString('base64')];
  return withClient(async (c) => {
    const tables = await c.query<{ table_name: string }>(
      `SELECT table_name FROM information_schema.tables WHERE table_schema = $1`,
      [schema],
    );
    const hits: string[] = [];
    for (const { table_name } of tables.rows) {
      const rows = await c.query<{ t: string }>(`SELECT t::text AS t FROM ${schema}.${table_name} t`);
      for (const r of rows.rows) if (needles.some((n) => r.t.includes(n))) hits.push(table_name);
    }
    return hits;
  });
}

describe('secrets at rest', () => {
  const apiKey = secret('sk-live');
  const clientSecret = secret('cs');
  const refreshToken = secret('rt');
  const accessToken = secret('at');
  let vault: PostgresCredentialVault;
  before(async () => {
    vault = new PostgresCredentialVault(db, new Keyring(KEY_A));
    await vault.put('github', { kind: 'api-key', server: 'github', secret: { apiKey } }, 'ops');
    await vault.put(
      'crm-client',
      {
        kind: 'oauth-client',
        server: 'crm',
        secret: { clientId: 'crm-app', clientSecret, tokenUrl: 'https://idp.example.com/token' },
      },
      'ops',
    );
    await vault.put(
      'crm:alice',
      {
        kind: 'oauth-token',
        server: 'crm',
        owner: 'alice',
        expiresAt: Date.now() + 3_600_000,
        secret: { accessToken, refreshToken, clientId: 'crm-app', tokenUrl: 'https://idp.example.com/token' },
      },
      'alice',
    );
  });

  test('no plaintext secret anywhere in the database', async () => {
    for (const s of [apiKey, clientSecret, refreshToken, accessToken])
      assert.deepEqual(await findInDatabase(s), [], s);
    const rows = await withClient((c) => c.query(`SELECT key_id FROM ${schema}.vault_credentials`));
    assert.ok(
      rows.rows.every((r) => r.key_id === keyId(KEY_A)),
      'each ciphertext names its key',
    );
  });

  test('get decrypts; list answers and logs never carry a secret', async () => {
    assert.deepEqual((await vault.get('github'))?.secret, { apiKey });
    assert.equal(
      ((await vault.get('crm:alice'))?.secret as { refreshToken: string }).refreshToken,
      refreshToken,
    );
    const list = await vault.list();
    assert.deepEqual(
      list.map((c) => c.id),
      ['crm-client', 'crm:alice', 'github'],
    );
    const text = JSON.stringify(list);
    for (const s of [apiKey, clientSecret, refreshToken, accessToken]) assert.ok(!text.includes(s));
    assert.deepEqual(
      (await vault.list({ owner: 'alice' })).map((c) => c.id),
      ['crm:alice'],
    );

    const lines: string[] = [];
    const sink = new Writable({ write: (c, _e, cb) => (lines.push(String(c)), cb()) });
    const log = createLogger('info', sink);
    const cred = await vault.get('crm:alice');
    log.info({ credential: cred }, 'credential loaded');
    log.info({ secret: cred!.secret }, 'secret');
    log.info({ answer: { access_token: accessToken, refresh_token: refreshToken } }, 'token answer');
    const logged = lines.join('');
    for (const s of [refreshToken, accessToken]) assert.ok(!logged.includes(s), logged);
  });

  test('mcpgw vault list prints no secret', async () => {
    const cfg = configFile({ store: { kind: 'postgres', url: PG_URL, schema } });
    const r = await mcpgw(['vault', 'list', '--config', cfg], {
      env: { MCPGW_VAULT_KEY: KEY_A.toString('base64') },
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim().split('\n').length, 3);
    for (const s of [apiKey, clientSecret, refreshToken, accessToken]) assert.ok(!r.stdout.includes(s));
  });

  test('a ciphertext moved to another row does not decrypt', async () => {
    await withClient((c) =>
      c.query(
        `UPDATE ${schema}.vault_credentials AS t SET nonce = s.nonce, ciphertext = s.ciphertext
         FROM ${schema}.vault_credentials s WHERE s.id = 'github' AND t.id = 'crm-client'`,
      ),
    );
    await assert.rejects(vault.get('crm-client'), /does not authenticate/);
    await vault.put(
      'crm-client',
      {
        kind: 'oauth-client',
        server: 'crm',
        secret: { clientId: 'crm-app', clientSecret, tokenUrl: 'https://idp.example.com/token' },
      },
      'ops',
    );
  });

  test('bad input is refused, naming the field and never the secret', async () => {
    await assert.rejects(
      vault.put(
        'x',
        {
          kind: 'oauth-token',
          secret: { accessToken: 'abc', clientId: 'c', tokenUrl: 'http://idp.example.com/t' },
        },
        'ops',
      ),
      /secret\.tokenUrl: must be https/,
    );
    await assert.rejects(
      vault.put('bad id!', { kind: 'api-key', secret: { apiKey: 'k' } }, 'ops'),
      /id "bad id!"/,
    );
    await assert.rejects(
      vault.put('y', { kind: 'api-key', secret: { apiKey: 'k', extra: 'sneaky' } as never }, 'ops'),
      (err: Error) => /secret/.test(err.message) && !err.message.includes('sneaky'),
    );
  });

  test('key rotation: mcpgw vault rotate-key re-encrypts every row under the new key', async () => {
    const cfg = configFile({ store: { kind: 'postgres', url: PG_URL, schema } });
    const env = {
      MCPGW_VAULT_KEY: KEY_B.toString('base64'),
      MCPGW_VAULT_PREVIOUS_KEYS: KEY_A.toString('base64'),
    };
    const r = await mcpgw(['vault', 'rotate-key', '--config', cfg], { env });
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.match(r.stdout, /3 of 3 credential\(s\) re-encrypted/);
    const ids = await withClient((c) => c.query(`SELECT DISTINCT key_id FROM ${schema}.vault_credentials`));
    assert.deepEqual(
      ids.rows.map((x) => x.key_id),
      [keyId(KEY_B)],
    );
    // The old key alone opens nothing any more; the new one alone opens everything.
    await assert.rejects(new PostgresCredentialVault(db, new Keyring(KEY_A)).get('github'), /no key/);
    const onlyB = new PostgresCredentialVault(db, new Keyring(KEY_B));
    assert.deepEqual((await onlyB.get('github'))?.secret, { apiKey });
    for (const s of [apiKey, clientSecret, refreshToken, accessToken])
      assert.deepEqual(await findInDatabase(s), []);
    const again = await mcpgw(['vault', 'rotate-key', '--config', cfg], { env });
    assert.match(again.stdout, /0 of 3 credential\(s\) re-encrypted/);
  });

  test('a key that is not 32 bytes of base64 is refused at once', async () => {
    const cfg = configFile({ store: { kind: 'postgres', url: PG_URL, schema } });
    const r = await mcpgw(['vault', 'list', '--config', cfg], { env: { MCPGW_VAULT_KEY: 'c2hvcnQ=' } });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /MCPGW_VAULT_KEY: a vault key is the base64 of exactly 32 bytes/);
  });
});

/** An OAuth token endpoint: counts requests, answers each grant with fresh tokens after `delayMs`. */
class TokenEndpoint {
  readonly requests: { form: URLSearchParams; authorization?: string }[] = [];
  server!: Server;
  delayMs = 50;
  issued = 0;
  failWith: number | undefined;

  async start(): Promise<string> {
    this.server = createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    const addr = this.server.address() as { port: number };
    return `http://127.0.0.1:${addr.port}/oauth/token`;
  }

  private async handle(req: IncomingMessage, res: import('node:http').ServerResponse): Promise<void> {
    let body = '';
    for await (const c of req) body += String(c);
    this.requests.push({ form: new URLSearchParams(body), authorization: req.headers.authorization });
    await new Promise((r) => setTimeout(r, this.delayMs));
    if (this.failWith) {
      res.writeHead(this.failWith, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          error: 'invalid_grant',
          error_description: `refresh token ${new URLSearchParams(body).get('refresh_token')} revoked`,
        }),
      );
      return;
    }
    const n = ++this.issued;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({
        access_token: `access-${n}`,
        refresh_token: `refresh-${n}`,
        expires_in: 3600,
        token_type: 'Bearer',
      }),
    );
  }

  close(): Promise<void> {
    return new Promise((r) => this.server.close(() => r()));
  }
}

describe('OAuth refresh', () => {
  const idp = new TokenEndpoint();
  let tokenUrl: string;
  let vault: PostgresCredentialVault;
  before(async () => {
    tokenUrl = await idp.start();
    vault = new PostgresCredentialVault(db, new Keyring(KEY_B));
  });
  after(() => idp.close());

  test('an expiring user token is refreshed once for many concurrent callers; the refresh token rotates', async () => {
    await vault.put(
      'crm:bob',
      {
        kind: 'oauth-token',
        owner: 'bob',
        expiresAt: Date.now() + 5_000, // inside the 60 s refresh window
        secret: {
          accessToken: 'old-access',
          refreshToken: 'old-refresh',
          clientId: 'crm-app',
          clientSecret: 'app-secret',
          tokenUrl,
        },
      },
      'bob',
    );
    const refresher = new TokenRefresher(vault, { refreshBeforeMs: 60_000 });
    const before = idp.requests.length;
    const tokens = await Promise.all(Array.from({ length: 10 }, () => refresher.accessToken('crm:bob')));
    assert.equal(idp.requests.length - before, 1, 'one token request');
    assert.ok(tokens.every((t) => t === tokens[0] && t.startsWith('access-')));
    const req = idp.requests.at(-1)!;
    assert.equal(req.form.get('grant_type'), 'refresh_token');
    assert.equal(req.form.get('refresh_token'), 'old-refresh');
    assert.equal(req.authorization, `Basic ${Buffer.from('crm-app:app-secret').toString('base64')}`);
    const stored = await vault.get('crm:bob');
    assert.equal(
      (stored!.secret as { refreshToken: string }).refreshToken,
      tokens[0]!.replace('access', 'refresh'),
    );
    assert.ok(stored!.expiresAt! > Date.now() + 3_000_000);
    // Fresh now: no request.
    assert.equal(await refresher.accessToken('crm:bob'), tokens[0]);
    assert.equal(idp.requests.length - before, 1);
  });

  test('two gateways refreshing one credential at the same moment make one token request', async () => {
    await vault.put(
      'crm:carol',
      {
        kind: 'oauth-token',
        owner: 'carol',
        expiresAt: Date.now() - 1,
        secret: { accessToken: 'stale', refreshToken: 'r0', clientId: 'pub', tokenUrl },
      },
      'carol',
    );
    const otherDb = new PgDatabase({ url: PG_URL, schema, poolSize: 2 });
    try {
      const a = new TokenRefresher(vault, { refreshBeforeMs: 60_000 });
      const b = new TokenRefresher(new PostgresCredentialVault(otherDb, new Keyring(KEY_B)), {
        refreshBeforeMs: 60_000,
      });
      const before = idp.requests.length;
      const [ta, tb] = await Promise.all([a.accessToken('crm:carol'), b.accessToken('crm:carol')]);
      assert.equal(ta, tb);
      assert.equal(idp.requests.length - before, 1);
      const req = idp.requests.at(-1)!;
      assert.equal(req.form.get('client_id'), 'pub', 'a public client names itself');
      assert.equal(req.authorization, undefined);
    } finally {
      await otherDb.close();
    }
  });

  test('client credentials: the token is got with the client_credentials grant and cached', async () => {
    await vault.put(
      'svc',
      {
        kind: 'oauth-client',
        server: 'svc',
        secret: { clientId: 'svc-app', clientSecret: 'svc-secret', tokenUrl, scope: 'read write' },
      },
      'ops',
    );
    const refresher = new TokenRefresher(vault, { refreshBeforeMs: 60_000 });
    const before = idp.requests.length;
    const t1 = await refresher.accessToken('svc');
    const t2 = await refresher.accessToken('svc');
    assert.equal(t1, t2);
    assert.equal(idp.requests.length - before, 1);
    const req = idp.requests.at(-1)!;
    assert.equal(req.form.get('grant_type'), 'client_credentials');
    assert.equal(req.form.get('scope'), 'read write');
    assert.deepEqual(await findInDatabase(t1), [], 'the cached access token is encrypted too');
  });

  test('the background refresher renews tokens before they expire', async () => {
    await vault.put(
      'crm:dave',
      {
        kind: 'oauth-token',
        owner: 'dave',
        expiresAt: Date.now() + 30_000,
        secret: { accessToken: 'soon', refreshToken: 'rd', clientId: 'pub', tokenUrl },
      },
      'dave',
    );
    const refresher = new TokenRefresher(vault, { refreshBeforeMs: 60_000 });
    const renewed = new Promise<void>((resolve) => {
      const check = async () => {
        const c = await vault.get('crm:dave');
        if ((c?.secret as { accessToken: string }).accessToken !== 'soon') return resolve();
        setTimeout(() => void check(), 20);
      };
      void check();
    });
    refresher.start(10_000);
    await renewed;
    refresher.stop();
    assert.ok((await vault.get('crm:dave'))!.expiresAt! > Date.now() + 3_000_000);
  });

  test('a refused refresh is GW_CREDENTIAL_UNAVAILABLE naming the OAuth error, not the tokens', async () => {
    await vault.put(
      'crm:erin',
      {
        kind: 'oauth-token',
        owner: 'erin',
        expiresAt: Date.now() - 1,
        secret: { accessToken: 'x', refreshToken: 'secret-refresh-erin', clientId: 'pub', tokenUrl },
      },
      'erin',
    );
    idp.failWith = 400;
    try {
      const refresher = new TokenRefresher(vault, { refreshBeforeMs: 60_000 });
      await assert.rejects(refresher.accessToken('crm:erin'), (err: Error & { code?: string }) => {
        assert.equal(err.code, 'GW_CREDENTIAL_UNAVAILABLE');
        assert.match(err.message, /answered 400 \(invalid_grant\)/);
        assert.ok(!err.message.includes('secret-refresh-erin'));
        return true;
      });
    } finally {
      idp.failWith = undefined;
    }
  });
});

test('the embedded store runs the same vault', async () => {
  const edb = await EmbeddedDatabase.open({ schema: 'mcpgw' });
  try {
    await migrate(edb);
    const v = new PostgresCredentialVault(edb, new Keyring(KEY_A));
    const key = secret('emb');
    await v.put('k', { kind: 'api-key', secret: { apiKey: key } }, 'ops');
    const r = await edb.query<{ t: string }>('SELECT t::text AS t FROM vault_credentials t');
    assert.ok(!r.rows[0]!.t.includes(key));
    const rotated = new PostgresCredentialVault(edb, new Keyring(KEY_B, [KEY_A]));
    assert.deepEqual(await rotated.rotateKey(), { total: 1, reencrypted: 1, undecryptable: [] });
    assert.deepEqual((await new PostgresCredentialVault(edb, new Keyring(KEY_B)).get('k'))?.secret, {
      apiKey: key,
    });
  } finally {
    await edb.close();
  }
});
