/**
 * The hash chain of a region's audit records (docs/audit.md): each record's hash is
 * sha256(prevHash || canonical JSON of the record), with the record's sequence number inside, so that
 * editing, deleting or appending a record without recomputing everything after it shows.
 */
import crypto, { createHash } from 'node:crypto';
import { canonicalJson } from '../canonical-json.js';
import type {
  AuditEvent,
  AuditRange,
  AuditRecord,
  ChainBreak,
  ChainPoint,
  EvidencePackage,
} from '../ports/audit-sink.js';

/** SHA-256 hex in one call (`crypto.hash`, Node 20.12+; a Hash object on older 20.x). */
const digest: (algorithm: string, data: string, encoding: 'hex') => string =
  (crypto as { hash?: typeof digest }).hash ?? ((a, d, e) => createHash(a).update(d).digest(e));

export const GENESIS_HASH = '0'.repeat(64);
export const HASH_ALGORITHM =
  'hash = sha256_hex(prevHash_hex || canonical_json(record minus prevHash and hash, keys sorted, v=1))';

type Hashed = Omit<AuditRecord, 'prevHash' | 'hash'>;

/**
 * The exact bytes that are hashed: every field but the two hashes, keys sorted, a format version. The
 * same text as `canonicalJson` of those fields (a test holds the two together), made by one
 * `JSON.stringify` of an object whose keys are written in sorted order (JSON.stringify keeps the
 * insertion order of non-numeric keys and leaves out undefined members, as canonicalJson does): the
 * writer hashes every record, and the generic walk, or a stringify per field, cost several times more.
 */
export function canonicalRecord(r: Hashed): string {
  if (!Number.isFinite(r.seq) || !Number.isFinite(r.latencyMs))
    throw new TypeError(`canonicalJson: ${Number.isFinite(r.seq) ? r.latencyMs : r.seq} has no JSON form`);
  return JSON.stringify({
    argsHash: r.argsHash,
    at: r.at,
    classification: r.classification,
    decision: r.decision,
    errorCode: r.errorCode,
    latencyMs: r.latencyMs,
    method: r.method,
    outcome: r.outcome,
    region: r.region,
    requestId: r.requestId,
    seq: r.seq,
    server: r.server,
    subject: r.subject,
    target: r.target,
    tenant: r.tenant,
    traceId: r.traceId,
    v: 1,
  });
}

export function recordHash(prevHash: string, r: Hashed): string {
  // One-shot digest: a Hash object per record cost more than the hashing of its few hundred bytes.
  return digest('sha256', prevHash + canonicalRecord(r), 'hex');
}

/** SHA-256 of the canonical JSON of a call's arguments; the arguments themselves are never kept. */
export function argumentsHash(args: unknown): string | null {
  if (args === undefined) return null;
  let text: string;
  try {
    text = canonicalJson(args);
  } catch {
    text = String(JSON.stringify(args)); // NaN or Infinity cannot come from JSON; kept for safety
  }
  return digest('sha256', text, 'hex');
}

/**
 * A text field as Postgres can store it and verify can hash again: NUL and unpaired surrogates (which a
 * client can put in a tool name or request id) become U+FFFD before hashing. Stored as they came, NUL
 * failed the batch for good and a lone surrogate came back as U+FFFD, so the record no longer matched its
 * hash.
 */
function storable<T extends string | null>(s: T): T {
  return (s === null || !UNSTORABLE.test(s) ? s : s.replace(UNSTORABLE_ALL, '\uFFFD')) as T;
}
const UNSTORABLE = /\0|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const UNSTORABLE_ALL = new RegExp(UNSTORABLE.source, 'g');

/** Places events after `head` in the chain: the records to store and the new head. */
export function chainEvents(
  head: ChainPoint,
  region: string,
  events: readonly AuditEvent[],
): { records: AuditRecord[]; head: ChainPoint } {
  let { seq, hash } = head;
  const records = events.map((e): AuditRecord => {
    // The record is built whole and its hash filled in after: a `{ ...body, prevHash, hash }` copy of a
    // 16-field object cost about 7 µs a record (measured), more than the hashing and the JSON together.
    const record: AuditRecord = {
      region,
      seq: ++seq,
      at: new Date(e.at).toISOString(),
      subject: storable(e.subject),
      tenant: storable(e.tenant),
      method: storable(e.method),
      target: storable(e.target ?? null),
      server: e.server ?? null,
      decision: e.decision,
      outcome: e.outcome,
      errorCode: storable(e.errorCode ?? null),
      latencyMs: Math.round(e.latencyMs * 1000) / 1000,
      argsHash: argumentsHash(e.args),
      classification: e.classification,
      requestId: storable(e.requestId ?? null),
      traceId: e.traceId ?? null,
      prevHash: hash,
      hash: '',
    };
    record.hash = recordHash(hash, record); // canonicalRecord reads every field but the two hashes
    hash = record.hash;
    return record;
  });
  return { records, head: { seq, hash } };
}

/**
 * Walks a region's records in sequence order from `anchor` and names every break by sequence number:
 * - altered: the stored hash does not match the record's contents, or the record was rewritten with a
 *   recomputed hash (the next record chains to another hash);
 * - deleted: sequence numbers are missing (in the middle, or at the end against the chain head);
 * - inserted: a record past the chain head.
 */
export class ChainVerifier {
  readonly breaks: ChainBreak[] = [];
  checked = 0;
  firstSeq: number | undefined;
  private prevSeq: number;
  private prevHash: string;
  /** The previous record failed its own hash: the next link says nothing new. */
  private prevBroken = false;

  constructor(
    private readonly region: string,
    anchor: ChainPoint,
    private readonly head?: ChainPoint,
  ) {
    this.prevSeq = anchor.seq;
    this.prevHash = anchor.hash;
  }

  get lastSeq(): number {
    return this.prevSeq;
  }

  add(r: AuditRecord): void {
    if (this.head && r.seq > this.head.seq) {
      this.break(
        'inserted',
        r.seq,
        `record ${r.seq} inserted: past the chain head (record ${this.head.seq})`,
      );
      return;
    }
    this.checked++;
    this.firstSeq ??= r.seq;
    const gap = r.seq > this.prevSeq + 1;
    if (gap) this.deleted(this.prevSeq + 1, r.seq - 1);
    const intact = recordHash(r.prevHash, r) === r.hash;
    if (!intact) {
      this.break('altered', r.seq, `record ${r.seq} altered: its contents do not match its hash`);
    } else if (!gap && !this.prevBroken && r.prevHash !== this.prevHash) {
      this.break(
        'altered',
        this.prevSeq,
        `record ${this.prevSeq} altered: rewritten with a recomputed hash (record ${r.seq} chains to another hash)`,
      );
    }
    this.prevBroken = !intact;
    this.prevSeq = r.seq;
    this.prevHash = r.hash;
  }

  /** Ends the walk at the chain head: records missing at the end, or a last record that is not the head. */
  finish(): ChainBreak[] {
    const h = this.head;
    if (h && this.prevSeq < h.seq) this.deleted(this.prevSeq + 1, h.seq);
    else if (h && this.prevSeq === h.seq && this.prevHash !== h.hash && !this.prevBroken)
      this.break('altered', h.seq, `record ${h.seq} altered: its hash is not the chain head's`);
    return this.breaks;
  }

  private deleted(from: number, to: number): void {
    this.breaks.push({
      region: this.region,
      kind: 'deleted',
      seq: from,
      ...(to > from ? { toSeq: to } : {}),
      message: to > from ? `records ${from}-${to} deleted` : `record ${from} deleted`,
    });
  }

  private break(kind: ChainBreak['kind'], seq: number, message: string): void {
    this.breaks.push({ region: this.region, kind, seq, message });
  }
}

/** An evidence package of a region's range: the same shape whichever store the records came from. */
export function evidencePackage(
  region: string,
  range: AuditRange,
  records: AuditRecord[],
  anchor: EvidencePackage['anchor'],
  head: ChainPoint | null,
): EvidencePackage {
  return {
    format: 'mcpgw-audit-evidence/1',
    region,
    exportedAt: new Date().toISOString(),
    range: {
      from: range.from?.toISOString() ?? null,
      to: range.to?.toISOString() ?? null,
      fromSeq: records[0]?.seq ?? null,
      toSeq: records.at(-1)?.seq ?? null,
    },
    hashAlgorithm: HASH_ALGORITHM,
    anchor,
    head,
    records,
  };
}
