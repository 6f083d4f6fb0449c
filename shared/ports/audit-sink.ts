/**
 * The audit trail. `AuditSink` is what the request path sees: `record` only enqueues (never waits,
 * never throws), and `mustRefuse` tells the caller to refuse a call rather than run it unaudited while
 * the sink fails. `AuditLog` is the store behind it: it appends batches to per-region hash chains and
 * reads them back for verification, export and retention.
 */

export type Classification = 'Public' | 'Internal' | 'Confidential' | 'Restricted';

/** One audited call, as the core reports it. */
export interface AuditEvent {
  /** When the call completed (ms since the epoch). */
  at: number;
  region: string;
  /** Who: the principal's subject (`anonymous` without authentication). */
  subject: string;
  tenant: string;
  /** tools/call, prompts/get or resources/read. */
  method: string;
  /** The tool or prompt name, or the resource URI, as the client named it. */
  target?: string;
  /** The backend server the call went to, when routing got that far. */
  server?: string;
  /** `deny`: the gateway refused the call (policy, audit unavailable); `allow`: it was forwarded or tried. */
  decision: 'allow' | 'deny';
  outcome: 'ok' | 'error' | 'tool-error' | 'cancelled';
  /** The gateway's GW_* code or the backend's JSON-RPC error code, for a failed call. */
  errorCode?: string;
  latencyMs: number;
  /** The call's arguments: the sink stores only their SHA-256 (of canonical JSON), never them. */
  args?: unknown;
  classification: Classification;
  requestId?: string;
  traceId?: string;
}

/** A stored record: the event without its arguments, placed in its region's chain. */
export interface AuditRecord {
  region: string;
  seq: number;
  /** ISO 8601 with milliseconds, UTC. */
  at: string;
  subject: string;
  tenant: string;
  method: string;
  target: string | null;
  server: string | null;
  decision: 'allow' | 'deny';
  outcome: AuditEvent['outcome'];
  errorCode: string | null;
  latencyMs: number;
  argsHash: string | null;
  classification: Classification;
  requestId: string | null;
  traceId: string | null;
  /** Hash of the previous record of the region (or of the pruned checkpoint, or 64 zeros). */
  prevHash: string;
  /** sha256(prevHash || canonical JSON of the record without prevHash and hash), hex. */
  hash: string;
}

export interface ChainPoint {
  seq: number;
  hash: string;
}

export interface AuditSinkHealth {
  healthy: boolean;
  /** Since when writes have been failing (ms since the epoch). */
  failingSince?: number;
  lastError?: string;
  pending: number;
  written: number;
  /** Records lost because the buffer was full while the sink failed. */
  dropped: number;
}

export interface AuditSink {
  /** Enqueues one record; the write happens later, off the request path. */
  record(event: AuditEvent): void;
  /** True while the sink fails and the configuration says calls of this class must not run unaudited. */
  mustRefuse(classification: Classification): boolean;
  health(): AuditSinkHealth;
  /** Resolves when everything enqueued so far is written (or rejects with the write's error). */
  flush(): Promise<void>;
  /** Flushes what it can, then stops. */
  close(): Promise<void>;
}

/** A time range, either end open. */
export interface AuditRange {
  region?: string;
  from?: Date;
  to?: Date;
}

export interface ChainBreak {
  region: string;
  kind: 'altered' | 'deleted' | 'inserted';
  /** The first sequence number concerned, and the last one for a run of deleted records. */
  seq: number;
  toSeq?: number;
  message: string;
}

export interface RegionVerification {
  region: string;
  checked: number;
  firstSeq?: number;
  lastSeq?: number;
  anchor: ChainPoint & { source: 'genesis' | 'checkpoint' | 'record' };
  head?: ChainPoint;
  breaks: ChainBreak[];
}

/** What an evidence package holds: the records of a range and what proves they are a piece of the chain. */
export interface EvidencePackage {
  format: 'mcpgw-audit-evidence/1';
  region: string;
  exportedAt: string;
  range: { from: string | null; to: string | null; fromSeq: number | null; toSeq: number | null };
  hashAlgorithm: string;
  /** The hash the first record chains to: the record before the range, a checkpoint, or the genesis. */
  anchor: ChainPoint & { source: 'genesis' | 'checkpoint' | 'record' };
  /** The region's chain head when exported. */
  head: ChainPoint | null;
  records: AuditRecord[];
}

export interface AuditLog {
  /** Appends events to their regions' chains, in order, in one transaction per region. */
  append(events: readonly AuditEvent[]): Promise<void>;
  regions(): Promise<string[]>;
  /** Records of a region in sequence order (a time range becomes the sequence range it spans). */
  read(region: string, range?: AuditRange): AsyncIterable<AuditRecord>;
  verify(range?: AuditRange): Promise<RegionVerification[]>;
  evidence(region: string, range?: AuditRange): Promise<EvidencePackage>;
  /** Deletes records older than `before`, keeping a checkpoint; returns how many went per region. */
  prune(before: Date): Promise<Record<string, number>>;
  close(): Promise<void>;
}
