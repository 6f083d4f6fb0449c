/**
 * FederationBus: publish/subscribe and a watched key-value space between gateways. A single node uses the
 * in-process adapter; a cluster uses NATS JetStream KV (federation issue).
 */
export interface BusMessage {
  subject: string;
  data: unknown;
}

export interface KvEntry {
  key: string;
  value: unknown;
  revision: number;
}

export interface FederationBus {
  publish(subject: string, data: unknown): Promise<void>;
  /** Subjects are dot-separated; `*` matches one token and `>` the rest. Returns an unsubscribe function. */
  subscribe(pattern: string, listener: (message: BusMessage) => void): () => void;
  kvPut(key: string, value: unknown): Promise<number>;
  kvGet(key: string): Promise<KvEntry | undefined>;
  kvDelete(key: string): Promise<void>;
  /** Current entries under a prefix, then every change (value undefined on delete). */
  kvWatch(prefix: string, listener: (key: string, entry: KvEntry | undefined) => void): Promise<() => void>;
  close(): Promise<void>;
}

/** Matches a NATS-style subject against a pattern with `*` and `>` wildcards. */
export function subjectMatches(pattern: string, subject: string): boolean {
  const p = pattern.split('.');
  const s = subject.split('.');
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '>') return s.length > i;
    if (i >= s.length || (p[i] !== '*' && p[i] !== s[i])) return false;
  }
  return p.length === s.length;
}
