/**
 * The audit chain hashes a record's canonical JSON. The writer uses a hand-written form for the flat
 * record shape (canonicalRecord); it must give exactly the text of the generic canonicalJson, or every
 * chain written before would stop verifying.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import { canonicalRecord, chainEvents, GENESIS_HASH, recordHash } from '../../shared/audit/chain.js';
import { canonicalJson } from '../../shared/canonical-json.js';
import type { AuditEvent } from '../../shared/ports/audit-sink.js';

type Body = Parameters<typeof canonicalRecord>[0];

const generic = (r: Body): string =>
  canonicalJson({
    v: 1,
    region: r.region,
    seq: r.seq,
    at: r.at,
    subject: r.subject,
    tenant: r.tenant,
    method: r.method,
    target: r.target,
    server: r.server,
    decision: r.decision,
    outcome: r.outcome,
    errorCode: r.errorCode,
    latencyMs: r.latencyMs,
    argsHash: r.argsHash,
    classification: r.classification,
    requestId: r.requestId,
    traceId: r.traceId,
  });

const base: Body = {
  region: 'eu-1',
  seq: 1,
  at: '2026-12-02T01:00:00.123Z',
  subject: 'alice',
  tenant: 'acme',
  method: 'tools/call',
  target: 'fs_read',
  server: 'fs',
  decision: 'allow',
  outcome: 'ok',
  errorCode: null,
  latencyMs: 1.234,
  argsHash: 'ab'.repeat(32),
  classification: 'Internal',
  requestId: 's1:7',
  traceId: null,
};

test('canonicalRecord gives the text canonicalJson gives, for every shape a record takes', () => {
  const variants: Body[] = [
    base,
    { ...base, target: null, server: null, argsHash: null, requestId: null },
    { ...base, decision: 'deny', outcome: 'error', errorCode: 'GW_FORBIDDEN', latencyMs: 0 },
    { ...base, subject: 'ü "quoted" \\ back\nslash\u0001', target: 'file:///ä b.txt', seq: 9_007_199 },
    { ...base, traceId: '0af7651916cd43dd8448eb211c80319c', latencyMs: 12345.678, tenant: '' },
    { ...base, latencyMs: 1e-7, seq: 0 },
  ];
  for (const v of variants) assert.equal(canonicalRecord(v), generic(v));
  // Members left undefined are left out, as canonicalJson does.
  const partial = { ...base, traceId: undefined } as unknown as Body;
  assert.equal(canonicalRecord(partial), generic(partial));
  assert.throws(() => canonicalRecord({ ...base, latencyMs: Number.NaN }), /no JSON form/);
});

test('a chained record hashes sha256(prevHash || canonical JSON), as docs/audit.md states', () => {
  const event: AuditEvent = {
    at: Date.parse(base.at),
    region: 'eu-1',
    subject: 'alice',
    tenant: 'acme',
    method: 'tools/call',
    target: 'fs_read',
    server: 'fs',
    decision: 'allow',
    outcome: 'ok',
    latencyMs: 1.2344,
    classification: 'Internal',
    requestId: 's1:7',
    args: { b: [1, 'x'], a: { z: null, y: true } },
  };
  const { records, head } = chainEvents({ seq: 0, hash: GENESIS_HASH }, 'eu-1', [event, event]);
  const argsHash = createHash('sha256').update('{"a":{"y":true,"z":null},"b":[1,"x"]}').digest('hex');
  assert.equal(records[0]!.argsHash, argsHash);
  assert.equal(records[0]!.latencyMs, 1.234);
  for (const r of records) {
    const expected = createHash('sha256')
      .update(r.prevHash + generic(r))
      .digest('hex');
    assert.equal(r.hash, expected);
    assert.equal(recordHash(r.prevHash, r), expected);
  }
  assert.equal(records[1]!.prevHash, records[0]!.hash);
  assert.deepEqual(head, { seq: 2, hash: records[1]!.hash });
});
