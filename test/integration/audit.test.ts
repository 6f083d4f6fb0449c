/**
 * The audit trail end to end on the real Postgres: one record per tools/call, prompts/get and
 * resources/read made through the gateway (arguments only as their hash), the chain verified by
 * `mcpgw audit verify` as a child process, and every kind of tampering done with plain SQL named by
 * sequence number. Export as JSONL and as an evidence package; retention keeps the chain verifiable;
 * concurrent writers of one region; a failing sink refuses Restricted calls and recovers.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import type { RunningNode } from '../../cli/single.js';
import { canonicalJson } from '../../shared/canonical-json.js';
import { PostgresAuditLog } from '../../shared/adapters/postgres/audit-log.js';
import { EmbeddedDatabase } from '../../shared/adapters/postgres/embedded-database.js';
import { migrate } from '../../shared/adapters/postgres/migrations.js';
import { PgDatabase } from '../../shared/adapters/postgres/pg-database.js';
import { recordHash } from '../../shared/audit/chain.js';
import type { AuditEvent, AuditRecord, EvidencePackage } from '../../shared/ports/audit-sink.js';
import { configFile, mcpgw } from '../helpers/cli.js';
import { startGateway } from '../helpers/gateway.js';
import { ROOT } from '../helpers/net.js';
import { dropSchema, migratedDatabase, PG_URL, uniqueSchema, withClient } from '../helpers/postgres.js';
import { connectSdk, type SdkClient } from '../helpers/sdk-clients.js';

const SCRIPTED = `${ROOT}dist/test/fixtures/scripted-server.js`;
const schema = uniqueSchema('audit');
const storeDoc = { kind: 'postgres', url: PG_URL, schema };
const cfg = configFile({ region: 'eu-1', store: storeDoc, audit: { enabled: true } });

function scripted(name: string, classification: string) {
  return {
    name,
    transport: 'stdio',
    command: process.execPath,
    args: [SCRIPTED],
    classification,
    env: {
      FIXTURE_CATALOG: JSON.stringify({ tools: ['echo'], prompts: ['greet'], resources: ['file:///r.txt'] }),
    },
  };
}

function event(i: number, region: string, extra: Partial<AuditEvent> = {}): AuditEvent {
  return {
    at: Date.UTC(2026, 0, 1, 0, 0, i),
    region,
    subject: `user-${i}`,
    tenant: 'acme',
    method: 'tools/call',
    target: 'alpha__echo',
    server: 'alpha',
    decision: 'allow',
    outcome: 'ok',
    latencyMs: 1.5 + i,
    args: { i },
    classification: 'Internal',
    requestId: `s:${i}`,
    ...extra,
  };
}

/** SQL as a DBA would type it, with the append-only trigger out of the way (replica mode skips it). */
function tamper(sql: string, params: unknown[] = []) {
  return withClient(async (c) => {
    await c.query(`SET session_replication_role = replica`);
    await c.query(`SET search_path TO ${schema}`);
    await c.query(sql, params);
  });
}

let db: PgDatabase;
let log: PostgresAuditLog;
before(async () => {
  db = await migratedDatabase(schema);
  log = new PostgresAuditLog(db);
});
after(async () => {
  await db.close();
  await dropSchema(schema);
});

describe('calls through the gateway are audited', () => {
  let node: RunningNode;
  let client: SdkClient;
  before(async () => {
    node = await startGateway({
      region: 'eu-1',
      store: storeDoc,
      audit: { enabled: true, flushMs: 10 },
      servers: [scripted('alpha', 'Internal')],
    });
    client = await connectSdk('v2', `${node.url}/mcp`);
  });
  after(async () => {
    await client?.close();
    await node?.close();
  });

  test('one record per call, with who, what, where, outcome and the hash of the arguments only', async () => {
    const args = { text: 'never-store-this-argument', n: 2 };
    await client.callTool({ name: 'alpha__echo', arguments: args });
    await client.getPrompt({ name: 'alpha__greet', arguments: { who: 'bob' } });
    await client.readResource({ uri: 'file:///r.txt' });
    await assert.rejects(client.callTool({ name: 'alpha__missing_tool', arguments: {} }));
    await client.listTools(); // not audited
    await node.stores.audit!.flush();

    const records: AuditRecord[] = [];
    for await (const r of log.read('eu-1')) records.push(r);
    assert.deepEqual(
      records.map((r) => [r.seq, r.method, r.target, r.server, r.decision, r.outcome]),
      [
        [1, 'tools/call', 'alpha__echo', 'alpha', 'allow', 'ok'],
        [2, 'prompts/get', 'alpha__greet', 'alpha', 'allow', 'ok'],
        [3, 'resources/read', 'file:///r.txt', 'alpha', 'allow', 'ok'],
        // An unknown tool is answered by the gateway itself: no backend saw the call.
        [4, 'tools/call', 'alpha__missing_tool', null, 'allow', 'error'],
      ],
    );
    const first = records[0]!;
    assert.equal(first.subject, 'anonymous');
    assert.equal(first.tenant, 'default');
    assert.equal(first.region, 'eu-1');
    assert.equal(first.classification, 'Internal');
    assert.equal(first.argsHash, createHash('sha256').update(canonicalJson(args)).digest('hex'));
    assert.ok(first.latencyMs >= 0 && first.latencyMs < 10_000);
    assert.ok(first.requestId);
    assert.equal(records[2]!.argsHash, null, 'resources/read has no arguments');
    const dump = await withClient((c) => c.query(`SELECT r::text AS t FROM ${schema}.audit_records r`));
    assert.ok(!dump.rows.some((r) => (r.t as string).includes('never-store-this-argument')));

    const v = await mcpgw(['audit', 'verify', '--config', cfg]);
    assert.equal(v.code, 0, v.stderr + v.stdout);
    assert.match(v.stdout, /region eu-1: 4 checked \(records 1-4.*chain intact/);
  });

  test('the append-only guard refuses UPDATE and DELETE from the application', async () => {
    await assert.rejects(
      db.query(`UPDATE audit_records SET outcome = 'error' WHERE region = 'eu-1'`),
      /append-only/,
    );
    await assert.rejects(db.query(`DELETE FROM audit_records WHERE region = 'eu-1'`), /append-only/);
  });
});

describe('mcpgw audit verify names each tampered record', () => {
  async function chain(region: string, n = 10): Promise<void> {
    await log.append(Array.from({ length: n }, (_, i) => event(i, region)));
  }
  async function verify(region: string) {
    return mcpgw(['audit', 'verify', '--config', cfg, '--region', region]);
  }

  test('an intact chain verifies', async () => {
    await chain('intact');
    const r = await verify('intact');
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /10 checked \(records 1-10, anchored at genesis 0, head 10\): chain intact/);
  });

  test('a NUL or an unpaired surrogate in what a client named is stored as U+FFFD, and the chain verifies', async () => {
    await log.append([
      event(1, 'odd-text', { target: 'to\0ol', requestId: 's:\ud800' }),
      event(2, 'odd-text', { subject: '\udc00user', target: 'ok \ud83d\ude00' }),
    ]);
    const records: AuditRecord[] = [];
    for await (const r of log.read('odd-text')) records.push(r);
    assert.deepEqual(
      records.map((r) => [r.target, r.requestId, r.subject]),
      [
        ['to\uFFFDol', 's:\uFFFD', 'user-1'],
        ['ok \ud83d\ude00', 's:2', '\uFFFDuser'],
      ],
    );
    const r = await verify('odd-text');
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /2 checked .*chain intact/);
  });

  test('a record altered in place', async () => {
    await chain('altered');
    await tamper(`UPDATE audit_records SET outcome = 'error' WHERE region = 'altered' AND seq = 4`);
    const r = await verify('altered');
    assert.equal(r.code, 1);
    assert.match(r.stdout, /^region altered: record 4 altered: its contents do not match its hash$/m);
    assert.match(r.stdout, /1 break\(s\)/);
  });

  test('a record altered with its hash recomputed', async () => {
    await chain('rehashed');
    const [row] = (
      await withClient((c) =>
        c.query(`SELECT * FROM ${schema}.audit_records WHERE region = 'rehashed' AND seq = 6`),
      )
    ).rows;
    const forged: AuditRecord = {
      region: 'rehashed',
      seq: 6,
      at: (row.at as Date).toISOString(),
      subject: 'someone-else',
      tenant: row.tenant,
      method: row.method,
      target: row.target,
      server: row.server,
      decision: row.decision,
      outcome: row.outcome,
      errorCode: row.error_code,
      latencyMs: row.latency_ms,
      argsHash: row.args_hash,
      classification: row.classification,
      requestId: row.request_id,
      traceId: row.trace_id,
      prevHash: row.prev_hash,
      hash: '',
    };
    await tamper(`UPDATE audit_records SET subject = $1, hash = $2 WHERE region = 'rehashed' AND seq = 6`, [
      forged.subject,
      recordHash(forged.prevHash, forged),
    ]);
    const r = await verify('rehashed');
    assert.equal(r.code, 1);
    assert.match(r.stdout, /^region rehashed: record 6 altered: rewritten with a recomputed hash/m);
  });

  test('records deleted in the middle and at the end', async () => {
    await chain('deleted');
    await tamper(`DELETE FROM audit_records WHERE region = 'deleted' AND seq IN (5, 9, 10)`);
    const r = await verify('deleted');
    assert.equal(r.code, 1);
    assert.match(r.stdout, /^region deleted: record 5 deleted$/m);
    assert.match(r.stdout, /^region deleted: records 9-10 deleted$/m);
    assert.match(r.stdout, /2 break\(s\)/);
  });

  test('a record inserted after the chain head, even with a correct hash', async () => {
    await chain('inserted');
    const last = (
      await withClient((c) =>
        c.query(`SELECT hash FROM ${schema}.audit_records WHERE region = 'inserted' AND seq = 10`),
      )
    ).rows[0];
    const fake = {
      region: 'inserted',
      seq: 11,
      at: new Date().toISOString(),
      subject: 'ghost',
      tenant: 'acme',
      method: 'tools/call',
      target: 'x',
      server: 'alpha',
      decision: 'allow' as const,
      outcome: 'ok' as const,
      errorCode: null,
      latencyMs: 1,
      argsHash: null,
      classification: 'Internal' as const,
      requestId: null,
      traceId: null,
    };
    await tamper(
      `INSERT INTO audit_records (region, seq, at, subject, tenant, method, target, server, decision, outcome,
         latency_ms, classification, prev_hash, hash)
       VALUES ('inserted', 11, $1, 'ghost', 'acme', 'tools/call', 'x', 'alpha', 'allow', 'ok', 1, 'Internal', $2, $3)`,
      [fake.at, last.hash, recordHash(last.hash, fake)],
    );
    const r = await verify('inserted');
    assert.equal(r.code, 1);
    assert.match(r.stdout, /^region inserted: record 11 inserted: past the chain head \(record 10\)$/m);
  });

  test('without --region every region is verified and any break fails the run', async () => {
    const r = await mcpgw(['audit', 'verify', '--config', cfg]);
    assert.equal(r.code, 1);
    for (const region of ['intact', 'altered', 'deleted', 'inserted', 'eu-1'])
      assert.match(r.stdout, new RegExp(`region ${region}: `));
  });

  test('bad flags are named', async () => {
    const r = await mcpgw(['audit', 'verify', '--config', cfg, '--from', 'yesterday-ish']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--from "yesterday-ish" is not an ISO 8601 date/);
  });
});

describe('export, evidence and retention', () => {
  before(async () => {
    await log.append(Array.from({ length: 30 }, (_, i) => event(i, 'exp')));
  });

  test('JSONL export of a time range, one record a line, with its hashes', async () => {
    const r = await mcpgw([
      'audit',
      'export',
      '--config',
      cfg,
      '--region',
      'exp',
      '--from',
      new Date(Date.UTC(2026, 0, 1, 0, 0, 10)).toISOString(),
      '--to',
      new Date(Date.UTC(2026, 0, 1, 0, 0, 19)).toISOString(),
    ]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as AuditRecord);
    assert.deepEqual(
      lines.map((l) => l.seq),
      [11, 12, 13, 14, 15, 16, 17, 18, 19, 20],
    );
    for (const l of lines) assert.equal(l.hash, recordHash(l.prevHash, l));
    assert.equal(lines[0]!.subject, 'user-10');
  });

  test('an evidence package verifies on its own, and names a record changed in it', async () => {
    const out = `${configFile({})}.evidence.json`;
    const r = await mcpgw([
      'audit',
      'export',
      '--config',
      cfg,
      '--region',
      'exp',
      '--evidence',
      '--out',
      out,
      '--from',
      new Date(Date.UTC(2026, 0, 1, 0, 0, 5)).toISOString(),
      '--to',
      new Date(Date.UTC(2026, 0, 1, 0, 0, 9)).toISOString(),
    ]);
    assert.equal(r.code, 0, r.stderr);
    const pkg = JSON.parse(readFileSync(out, 'utf8')) as EvidencePackage;
    assert.equal(pkg.format, 'mcpgw-audit-evidence/1');
    assert.deepEqual(
      pkg.records.map((x) => x.seq),
      [6, 7, 8, 9, 10],
    );
    assert.deepEqual(pkg.anchor.seq, 5);
    assert.equal(pkg.anchor.source, 'record');
    assert.equal(pkg.records[0]!.prevHash, pkg.anchor.hash, 'the range chains to the head hash before it');
    assert.equal(pkg.head?.seq, 30);
    const ok = await mcpgw(['audit', 'verify-evidence', out]);
    assert.equal(ok.code, 0, ok.stdout);
    pkg.records[2]!.outcome = 'error';
    writeFileSync(out, JSON.stringify(pkg));
    const bad = await mcpgw(['audit', 'verify-evidence', out]);
    assert.equal(bad.code, 1);
    assert.match(bad.stdout, /record 8 altered/);
  });

  test('pruning old records leaves a checkpoint, and the rest still verifies', async () => {
    const pruned = await log.prune(new Date(Date.UTC(2026, 0, 1, 0, 0, 12)));
    assert.equal(pruned.exp, 12);
    const [v] = await log.verify({ region: 'exp' });
    assert.deepEqual(v!.breaks, []);
    assert.deepEqual([v!.anchor.source, v!.anchor.seq, v!.firstSeq, v!.lastSeq], ['checkpoint', 12, 13, 30]);
    const r = await mcpgw(['audit', 'verify', '--config', cfg, '--region', 'exp']);
    assert.equal(r.code, 0, r.stdout);
    assert.match(r.stdout, /18 checked \(records 13-30, anchored at checkpoint 12, head 30\): chain intact/);
    // A record deleted right after the checkpoint is still caught.
    await tamper(`DELETE FROM audit_records WHERE region = 'exp' AND seq = 13`);
    const r2 = await mcpgw(['audit', 'verify', '--config', cfg, '--region', 'exp']);
    assert.equal(r2.code, 1);
    assert.match(r2.stdout, /record 13 deleted/);
  });
});

test('two gateways writing one region concurrently extend one intact chain', async () => {
  const other = new PgDatabase({ url: PG_URL, schema, poolSize: 3 });
  const log2 = new PostgresAuditLog(other);
  try {
    await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        (i % 2 ? log2 : log).append(Array.from({ length: 5 }, (_, j) => event(i * 5 + j, 'shared'))),
      ),
    );
    const [v] = await log.verify({ region: 'shared' });
    assert.deepEqual(v!.breaks, []);
    assert.equal(v!.checked, 100);
    assert.deepEqual([v!.firstSeq, v!.lastSeq, v!.head?.seq], [1, 100, 100]);
  } finally {
    await other.close();
  }
});

test('a failing sink raises the alarm, refuses Restricted calls, keeps the others, and recovers', async () => {
  const node = await startGateway({
    region: 'fail-1',
    store: storeDoc,
    audit: { enabled: true, flushMs: 10, refuseOnFailure: ['Restricted'] },
    servers: [scripted('open', 'Internal'), scripted('vault', 'Restricted')],
  });
  const client = await connectSdk('v2', `${node.url}/mcp`);
  const sink = node.stores.audit!;
  try {
    await client.callTool({ name: 'vault__echo', arguments: {} });
    await sink.flush();
    await tamper('ALTER TABLE audit_records RENAME TO audit_records_away');
    await client.callTool({ name: 'open__echo', arguments: {} });
    await assert.rejects(sink.flush(), /audit sink failing/);
    assert.equal(sink.health().healthy, false);
    assert.ok(sink.mustRefuse('Restricted'));
    assert.ok(!sink.mustRefuse('Internal'));

    await assert.rejects(client.callTool({ name: 'vault__echo', arguments: {} }), /audit trail is failing/);
    const ok = await client.callTool({ name: 'open__echo', arguments: {} });
    assert.ok(!ok.isError);

    await tamper('ALTER TABLE audit_records_away RENAME TO audit_records');
    await sink.flush();
    assert.equal(sink.health().healthy, true);
    const records: AuditRecord[] = [];
    for await (const r of log.read('fail-1')) records.push(r);
    assert.deepEqual(
      records.map((r) => [r.server, r.decision, r.outcome, r.errorCode, r.classification]),
      [
        ['vault', 'allow', 'ok', null, 'Restricted'],
        ['open', 'allow', 'ok', null, 'Internal'],
        ['vault', 'deny', 'error', 'GW_AUDIT_UNAVAILABLE', 'Restricted'],
        ['open', 'allow', 'ok', null, 'Internal'],
      ],
      'nothing was lost while the sink failed',
    );
    const [v] = await log.verify({ region: 'fail-1' });
    assert.deepEqual(v!.breaks, []);
  } finally {
    await client.close();
    await node.close();
  }
});

/** Records of hostile text through each store's bulk path (COPY rows: Postgres server and PGlite). */
describe('audit text through COPY', () => {
  const ODD = ['a\tb', 'line1\nline2\r\n', 'back\\slash', '\\N', '\\.', 'x\\ty', '\t\t', '', 'to\0ol'];
  async function roundTrip(auditLog: PostgresAuditLog): Promise<void> {
    await auditLog.append(
      ODD.map((v, k) =>
        event(k + 1, 'copy-text', {
          target: v,
          requestId: `s:${v}`,
          subject: v,
          errorCode: v,
          latencyMs: 1e-7 * k,
        }),
      ),
    );
    const records: AuditRecord[] = [];
    for await (const r of auditLog.read('copy-text')) records.push(r);
    const stored = (v: string) => v.replace('\0', '\uFFFD'); // NUL cannot be stored (see above)
    assert.deepEqual(
      records.map((r) => [r.target, r.requestId, r.subject, r.errorCode]),
      ODD.map((v) => [stored(v), `s:${stored(v)}`, stored(v), stored(v)]),
    );
    assert.deepEqual(
      records.map((r) => r.latencyMs),
      ODD.map((_, k) => Math.round(1e-7 * k * 1000) / 1000),
    );
    const [v] = await auditLog.verify({ region: 'copy-text' });
    assert.equal(v?.checked, ODD.length);
    assert.deepEqual(v?.breaks, []);
  }

  test('on the Postgres server: stored as they came, and the chain verifies', async () => {
    const schema = uniqueSchema();
    const db = await migratedDatabase(schema);
    try {
      await roundTrip(new PostgresAuditLog(db));
    } finally {
      await db.close();
      await dropSchema(schema);
    }
  });

  test('on the embedded PGlite: the same', async () => {
    const db = await EmbeddedDatabase.open({ schema: 'audit_copy' });
    try {
      await migrate(db);
      await roundTrip(new PostgresAuditLog(db));
    } finally {
      await db.close();
    }
  });
});
