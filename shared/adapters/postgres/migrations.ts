/**
 * The schema of every Postgres-backed store, as numbered migrations. Applied by `migrate` in one
 * transaction under an advisory lock keyed by the schema name, so gateways starting together migrate
 * once and never see a half-built schema. A migration, once released, never changes: add a new one.
 */
import type { SqlDatabase } from './sql.js';

export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'registry',
    sql: `
      -- The current state of each server; a delete leaves a tombstone so versions never go back.
      CREATE TABLE registry_servers (
        name text PRIMARY KEY,
        version bigint NOT NULL CHECK (version > 0),
        config jsonb,
        deleted boolean NOT NULL DEFAULT false,
        updated_at timestamptz NOT NULL,
        updated_by text NOT NULL,
        CHECK (deleted OR config IS NOT NULL)
      );
      -- Every change ever made, with who and when.
      CREATE TABLE registry_history (
        name text NOT NULL,
        version bigint NOT NULL,
        op text NOT NULL CHECK (op IN ('upsert', 'delete')),
        config jsonb,
        changed_at timestamptz NOT NULL,
        changed_by text NOT NULL,
        PRIMARY KEY (name, version)
      );`,
  },
  {
    version: 2,
    name: 'vault',
    sql: `
      -- Only what the refresher and operators need is in clear; the secret is AES-256-GCM ciphertext.
      CREATE TABLE vault_credentials (
        id text PRIMARY KEY,
        kind text NOT NULL CHECK (kind IN ('api-key', 'oauth-client', 'oauth-token')),
        server text,
        owner text,
        key_id text NOT NULL,
        nonce bytea NOT NULL,
        ciphertext bytea NOT NULL,
        expires_at timestamptz,
        version bigint NOT NULL CHECK (version > 0),
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL,
        updated_by text NOT NULL
      );
      CREATE INDEX vault_credentials_expiry ON vault_credentials (expires_at) WHERE expires_at IS NOT NULL;
      CREATE INDEX vault_credentials_key ON vault_credentials (key_id);`,
  },
  {
    version: 3,
    name: 'audit',
    sql: `
      CREATE TABLE audit_records (
        region text NOT NULL,
        seq bigint NOT NULL,
        at timestamptz NOT NULL,
        subject text NOT NULL,
        tenant text NOT NULL,
        method text NOT NULL,
        target text,
        server text,
        decision text NOT NULL,
        outcome text NOT NULL,
        error_code text,
        latency_ms double precision NOT NULL,
        args_hash text,
        classification text NOT NULL,
        request_id text,
        trace_id text,
        prev_hash text NOT NULL,
        hash text NOT NULL,
        PRIMARY KEY (region, seq)
      );
      CREATE INDEX audit_records_at ON audit_records (region, at);
      -- The last record of each region's chain, updated in the transaction that appends: the row lock
      -- serialises writers of a region across processes, and a truncated tail is visible against it.
      CREATE TABLE audit_chain_heads (
        region text PRIMARY KEY,
        seq bigint NOT NULL,
        hash text NOT NULL
      );
      -- What retention pruned: the last pruned record's sequence number and hash anchor the rest.
      CREATE TABLE audit_checkpoints (
        region text NOT NULL,
        seq bigint NOT NULL,
        hash text NOT NULL,
        pruned_at timestamptz NOT NULL,
        PRIMARY KEY (region, seq)
      );
      -- Append-only for the application: rows are never updated, and deleted only by retention, which
      -- announces itself with SET LOCAL mcpgw.audit_prune = 'on'. A guard, not the proof: verify is.
      CREATE FUNCTION audit_records_guard() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF TG_OP = 'DELETE' AND current_setting('mcpgw.audit_prune', true) = 'on' THEN
          RETURN OLD;
        END IF;
        RAISE EXCEPTION 'audit records are append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
      END $$;
      CREATE TRIGGER audit_records_append_only BEFORE UPDATE OR DELETE ON audit_records
        FOR EACH ROW EXECUTE FUNCTION audit_records_guard();`,
  },
  {
    version: 10,
    name: 'admin',
    sql: `
      -- Every change made through the admin API: who, when, what (no secrets: key hashes stay out).
      CREATE TABLE admin_changes (
        id bigserial PRIMARY KEY,
        at timestamptz NOT NULL,
        actor text NOT NULL,
        tenant text,
        kind text NOT NULL,
        target text NOT NULL,
        op text NOT NULL,
        version bigint,
        detail jsonb
      );
      CREATE INDEX admin_changes_tenant ON admin_changes (tenant, id);
      -- The access policy, one per scope ('*': the gateway's; else a tenant's), versioned like servers.
      CREATE TABLE admin_policies (
        scope text PRIMARY KEY,
        version bigint NOT NULL CHECK (version > 0),
        policy jsonb NOT NULL,
        updated_at timestamptz NOT NULL,
        updated_by text NOT NULL
      );
      CREATE TABLE admin_policy_history (
        scope text NOT NULL,
        version bigint NOT NULL,
        policy jsonb NOT NULL,
        changed_at timestamptz NOT NULL,
        changed_by text NOT NULL,
        PRIMARY KEY (scope, version)
      );`,
  },
  // 20-29: governance (approvals and pinning, docs/governance.md).
  {
    version: 20,
    name: 'tool-approvals',
    sql: `
      -- Every approval of a tool definition; the newest per (server, tool) is the one pinned.
      CREATE TABLE tool_approvals (
        id bigserial PRIMARY KEY,
        server text NOT NULL,
        tool text NOT NULL,
        hash text NOT NULL CHECK (hash ~ '^[0-9a-f]{64}$'),
        definition jsonb NOT NULL,
        approved_at timestamptz NOT NULL,
        approved_by text NOT NULL
      );
      CREATE INDEX tool_approvals_tool ON tool_approvals (server, tool, id DESC);`,
  },
  // 40-49: server versions and virtual servers (docs/registry.md).
  {
    version: 40,
    name: 'server-versions',
    sql: `
      -- A row's name is the server's id: its name, or {name}-{version}. The family (the plain name) and
      -- the version are read from the entry, so that a family's versions are one indexed query.
      ALTER TABLE registry_servers
        ADD COLUMN family text GENERATED ALWAYS AS (config->>'name') STORED,
        ADD COLUMN release text GENERATED ALWAYS AS (config->>'version') STORED,
        ADD CONSTRAINT registry_servers_id_matches
          CHECK (deleted OR name = (config->>'name') || COALESCE('-' || (config->>'version'), ''));
      CREATE INDEX registry_servers_family ON registry_servers (family) WHERE NOT deleted;`,
  },
  {
    version: 41,
    name: 'virtual-servers',
    sql: `
      -- Virtual servers (/v/{name}/mcp), versioned like servers: a delete leaves a tombstone.
      CREATE TABLE virtual_servers (
        name text PRIMARY KEY,
        version bigint NOT NULL CHECK (version > 0),
        definition jsonb NOT NULL,
        deleted boolean NOT NULL DEFAULT false,
        updated_at timestamptz NOT NULL,
        updated_by text NOT NULL
      );
      CREATE TABLE virtual_server_history (
        name text NOT NULL,
        version bigint NOT NULL,
        op text NOT NULL CHECK (op IN ('upsert', 'delete')),
        definition jsonb,
        changed_at timestamptz NOT NULL,
        changed_by text NOT NULL,
        PRIMARY KEY (name, version)
      );`,
  },
];

export interface MigrationReport {
  applied: number[];
  current: number;
}

/**
 * Brings the schema up to the newest migration. Idempotent; safe to run from several processes at
 * once (the second waits on the lock, then finds nothing to do).
 */
export async function migrate(
  db: SqlDatabase,
  migrations: readonly Migration[] = MIGRATIONS,
): Promise<MigrationReport> {
  return db.transaction(async (tx) => {
    // Taken before anything else: CREATE SCHEMA IF NOT EXISTS itself races between two sessions.
    await tx.query(`SELECT pg_advisory_xact_lock(hashtext('mcpgw.migrations'), hashtext($1))`, [db.schema]);
    await tx.query(`CREATE SCHEMA IF NOT EXISTS ${db.schema}`);
    await tx.query(`SET LOCAL search_path TO ${db.schema}`);
    await tx.query(
      `CREATE TABLE IF NOT EXISTS schema_migrations (
         version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
    );
    const done = new Set(
      (await tx.query<{ version: number }>('SELECT version FROM schema_migrations')).rows.map(
        (r) => r.version,
      ),
    );
    const applied: number[] = [];
    for (const m of [...migrations].sort((a, b) => a.version - b.version)) {
      if (done.has(m.version)) continue;
      await tx.exec(m.sql);
      await tx.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [m.version, m.name]);
      applied.push(m.version);
    }
    const current = Math.max(0, ...done, ...applied);
    return { applied, current };
  });
}
