/**
 * AuditLog in this process only (`audit.sink: memory`): the same chains, gone at exit. For tests and
 * nodes whose audit goes nowhere else.
 */
import { ChainVerifier, chainEvents, evidencePackage, GENESIS_HASH } from '../../audit/chain.js';
import type {
  AuditEvent,
  AuditLog,
  AuditRange,
  AuditRecord,
  ChainPoint,
  EvidencePackage,
  RegionVerification,
} from '../../ports/audit-sink.js';

interface Chain {
  head: ChainPoint;
  checkpoint: ChainPoint;
  records: AuditRecord[];
}

export class MemoryAuditLog implements AuditLog {
  private readonly chains = new Map<string, Chain>();

  async append(events: readonly AuditEvent[]): Promise<void> {
    for (const e of events) {
      const chain = this.chain(e.region);
      const { records, head } = chainEvents(chain.head, e.region, [e]);
      chain.records.push(...records);
      chain.head = head;
    }
  }

  async regions(): Promise<string[]> {
    return [...this.chains.keys()].sort();
  }

  async *read(region: string, range: AuditRange = {}): AsyncIterable<AuditRecord> {
    for (const r of this.span(region, range)) yield structuredClone(r);
  }

  async verify(range: AuditRange = {}): Promise<RegionVerification[]> {
    const regions = range.region ? [range.region] : await this.regions();
    return regions.map((region) => {
      const chain = this.chain(region);
      const records = this.span(region, range);
      const anchor = this.anchorBefore(region, records[0]?.seq ?? chain.checkpoint.seq + 1);
      const toEnd = !range.to || records.at(-1) === chain.records.at(-1);
      const v = new ChainVerifier(region, anchor, toEnd ? chain.head : undefined);
      for (const r of records) v.add(r);
      return {
        region,
        checked: v.checked,
        ...(v.firstSeq !== undefined ? { firstSeq: v.firstSeq, lastSeq: v.lastSeq } : {}),
        anchor,
        head: chain.head,
        breaks: toEnd ? v.finish() : v.breaks,
      };
    });
  }

  async evidence(region: string, range: AuditRange = {}): Promise<EvidencePackage> {
    const records = this.span(region, range).map((r) => structuredClone(r));
    const chain = this.chain(region);
    return evidencePackage(
      region,
      range,
      records,
      this.anchorBefore(region, records[0]?.seq ?? chain.checkpoint.seq + 1),
      chain.head,
    );
  }

  async prune(before: Date): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    for (const [region, chain] of this.chains) {
      const keep = chain.records.findIndex((r) => Date.parse(r.at) >= before.getTime());
      const cut = keep === -1 ? chain.records.length : keep;
      if (cut > 0)
        chain.checkpoint = { seq: chain.records[cut - 1]!.seq, hash: chain.records[cut - 1]!.hash };
      chain.records.splice(0, cut);
      out[region] = cut;
    }
    return out;
  }

  async close(): Promise<void> {}

  private chain(region: string): Chain {
    let c = this.chains.get(region);
    if (!c) {
      const genesis = { seq: 0, hash: GENESIS_HASH };
      this.chains.set(region, (c = { head: genesis, checkpoint: genesis, records: [] }));
    }
    return c;
  }

  private span(region: string, { from, to }: AuditRange): AuditRecord[] {
    const records = this.chain(region).records;
    const lo = from ? records.findIndex((r) => Date.parse(r.at) >= from.getTime()) : 0;
    if (lo === -1) return [];
    let hi = records.length - 1;
    if (to) while (hi >= lo && Date.parse(records[hi]!.at) > to.getTime()) hi--;
    return records.slice(lo, hi + 1);
  }

  private anchorBefore(region: string, seq: number): EvidencePackage['anchor'] {
    const chain = this.chain(region);
    const prev = [...chain.records].reverse().find((r) => r.seq < seq);
    if (prev) return { seq: prev.seq, hash: prev.hash, source: 'record' };
    if (chain.checkpoint.seq > 0) return { ...chain.checkpoint, source: 'checkpoint' };
    return { seq: 0, hash: GENESIS_HASH, source: 'genesis' };
  }
}
