/**
 * `mcpgw audit verify | export | prune | verify-evidence`: the audit trail read back from the store the
 * config file names. verify names every break by region and sequence number and exits 1 on any.
 */
import { createWriteStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { once } from 'node:events';
import { ChainVerifier } from '../shared/audit/chain.js';
import { PostgresAuditLog } from '../shared/adapters/postgres/audit-log.js';
import { openStoreDatabase } from '../shared/adapters/postgres/open.js';
import type { GatewayConfig } from '../shared/config/schema.js';
import type { AuditRange, EvidencePackage } from '../shared/ports/audit-sink.js';

export interface AuditCommandOptions {
  region?: string;
  from?: string;
  to?: string;
  evidence?: boolean;
  out?: string;
  before?: string;
}

export class UsageError extends Error {}

/** Parses --from/--to/--before: ISO 8601 dates or times. */
function parseTime(flag: string, value: string | undefined): Date | undefined {
  if (value === undefined) return undefined;
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) throw new UsageError(`--${flag} "${value}" is not an ISO 8601 date or time`);
  return d;
}

function range(o: AuditCommandOptions): AuditRange {
  const r: AuditRange = {};
  if (o.region !== undefined) r.region = o.region;
  const from = parseTime('from', o.from);
  const to = parseTime('to', o.to);
  if (from) r.from = from;
  if (to) r.to = to;
  if (from && to && from > to) throw new UsageError('--from is after --to');
  return r;
}

async function openLog(config: GatewayConfig, baseDir: string): Promise<PostgresAuditLog> {
  if (config.store.kind === 'memory')
    throw new UsageError(
      'store.kind "memory" keeps no audit trail to read: use embedded (with dataDir) or postgres',
    );
  if (config.store.kind === 'embedded' && config.store.dataDir === undefined)
    throw new UsageError(
      "the embedded store has no dataDir: its audit trail lived in the gateway's memory only",
    );
  const db = await openStoreDatabase(config.store, { baseDir });
  return new PostgresAuditLog(db!, { ownsDb: true });
}

type Write = (s: string) => void;

export async function auditVerify(
  config: GatewayConfig,
  baseDir: string,
  o: AuditCommandOptions,
  out: Write,
): Promise<number> {
  const r = range(o);
  const log = await openLog(config, baseDir);
  try {
    const results = await log.verify(r);
    if (results.length === 0) out(o.region ? `region ${o.region}: no audit records\n` : 'no audit records\n');
    let broken = 0;
    for (const v of results) {
      for (const b of v.breaks) out(`region ${v.region}: ${b.message}\n`);
      broken += v.breaks.length;
      const span = v.firstSeq === undefined ? 'no records' : `records ${v.firstSeq}-${v.lastSeq}`;
      out(
        `region ${v.region}: ${v.checked} checked (${span}, anchored at ${v.anchor.source} ${v.anchor.seq}` +
          `${v.head ? `, head ${v.head.seq}` : ''}): ${v.breaks.length === 0 ? 'chain intact' : `${v.breaks.length} break(s)`}\n`,
      );
    }
    return broken > 0 ? 1 : 0;
  } finally {
    await log.close();
  }
}

export async function auditExport(
  config: GatewayConfig,
  baseDir: string,
  o: AuditCommandOptions,
  stdout: NodeJS.WritableStream,
): Promise<number> {
  const r = range(o);
  const log = await openLog(config, baseDir);
  const sink = o.out ? createWriteStream(o.out, { mode: 0o600 }) : stdout;
  const write = async (line: string) => {
    if (!sink.write(line)) await once(sink, 'drain');
  };
  try {
    if (o.evidence) {
      const pkg = await log.evidence(r.region ?? config.region, r);
      await write(`${JSON.stringify(pkg, null, 2)}\n`);
    } else {
      const regions = r.region ? [r.region] : await log.regions();
      for (const region of regions)
        for await (const rec of log.read(region, r)) await write(`${JSON.stringify(rec)}\n`);
    }
  } finally {
    await log.close();
    if (o.out)
      await new Promise<void>((resolve, reject) =>
        (sink as ReturnType<typeof createWriteStream>).end((err?: Error | null) =>
          err ? reject(err) : resolve(),
        ),
      );
  }
  return 0;
}

export async function auditPrune(
  config: GatewayConfig,
  baseDir: string,
  o: AuditCommandOptions,
  out: Write,
): Promise<number> {
  const before =
    parseTime('before', o.before) ??
    (config.audit.retentionDays ? new Date(Date.now() - config.audit.retentionDays * 86_400_000) : undefined);
  if (!before) throw new UsageError('audit prune needs --before DATE or audit.retentionDays in the config');
  const log = await openLog(config, baseDir);
  try {
    const pruned = await log.prune(before);
    for (const [region, n] of Object.entries(pruned))
      out(`region ${region}: ${n} record(s) before ${before.toISOString()} pruned\n`);
    return 0;
  } finally {
    await log.close();
  }
}

/** Checks an evidence package on its own: every record's hash, and the links from its anchor on. */
export async function auditVerifyEvidence(file: string, out: Write): Promise<number> {
  let pkg: EvidencePackage;
  try {
    pkg = JSON.parse(await readFile(file, 'utf8')) as EvidencePackage;
  } catch (err) {
    throw new UsageError(`${file}: ${(err as Error).message}`);
  }
  if (pkg.format !== 'mcpgw-audit-evidence/1' || !Array.isArray(pkg.records) || !pkg.anchor)
    throw new UsageError(`${file}: not an mcpgw evidence package (format mcpgw-audit-evidence/1)`);
  const v = new ChainVerifier(pkg.region, pkg.anchor);
  for (const r of pkg.records) v.add(r);
  for (const b of v.breaks) out(`region ${pkg.region}: ${b.message}\n`);
  out(
    `${file}: ${v.checked} record(s) of region ${pkg.region} chained from ${pkg.anchor.source} ${pkg.anchor.seq}: ` +
      `${v.breaks.length === 0 ? 'intact' : `${v.breaks.length} break(s)`}\n`,
  );
  return v.breaks.length > 0 ? 1 : 0;
}
