/**
 * Security at the edge by source address, checked first in onRequest (before any body is read):
 * - IP allow and deny lists (addresses or CIDR ranges, IPv4 and IPv6): a denied source, or one outside a
 *   non-empty allow list, gets 403 GW_SOURCE_DENIED.
 * - Repeated authentication failures: the auth stage reports each failure (`recordAuthFailure`); a source
 *   that reaches `threshold` failures within `windowMs` raises an alert (a warn log line and
 *   `mcpgw_security_alerts_total{kind="auth_failures"}`) and, when `blockMs` > 0, is refused with 429
 *   GW_SOURCE_BLOCKED for that long. A success clears the source's count.
 * Memory is bounded: at most `maxTrackedSources` sources are tracked (the oldest entry goes first).
 */
import { BlockList, isIP } from 'node:net';
import type { Logger } from '../../shared/log.js';
import type { GatewayMetrics } from '../../shared/telemetry/metrics.js';

export interface SourceGuardOptions {
  allowIps: readonly string[];
  denyIps: readonly string[];
  authFailures: { threshold: number; windowMs: number; blockMs: number };
  maxTrackedSources?: number;
  log: Logger;
  metrics?: GatewayMetrics;
  now?: () => number;
}

export type SourceVerdict =
  | { ok: true }
  | { ok: false; code: 'GW_SOURCE_DENIED' }
  | { ok: false; code: 'GW_SOURCE_BLOCKED'; retryAfterS: number };

interface Failures {
  times: number[];
  blockedUntil: number;
}

/** Parses list entries (`10.0.0.1`, `10.0.0.0/8`, `::1`, `fd00::/8`); throws naming a bad entry. */
export function toBlockList(entries: readonly string[]): BlockList {
  const list = new BlockList();
  for (const e of entries) {
    const [addr, prefix, extra] = e.trim().split('/');
    const type = isIP(addr ?? '');
    if (!type || extra !== undefined) throw new Error(`not an IP address or CIDR range: "${e}"`);
    const family = type === 4 ? 'ipv4' : 'ipv6';
    if (prefix === undefined) list.addAddress(addr!, family);
    else {
      const bits = Number(prefix);
      if (!/^\d+$/.test(prefix) || bits > (type === 4 ? 32 : 128))
        throw new Error(`bad prefix length in "${e}"`);
      list.addSubnet(addr!, bits, family);
    }
  }
  return list;
}

/** The address as BlockList checks it: IPv4-mapped IPv6 (`::ffff:1.2.3.4`) as the IPv4 address. */
function normalize(ip: string): { addr: string; family: 'ipv4' | 'ipv6' } | undefined {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (mapped) return { addr: mapped[1]!, family: 'ipv4' };
  const t = isIP(ip);
  return t === 0 ? undefined : { addr: ip, family: t === 4 ? 'ipv4' : 'ipv6' };
}

export class SourceGuard {
  private readonly allow: BlockList | undefined;
  private readonly deny: BlockList | undefined;
  private readonly failures = new Map<string, Failures>();
  private readonly now: () => number;
  private readonly maxTracked: number;

  constructor(private readonly o: SourceGuardOptions) {
    this.allow = o.allowIps.length > 0 ? toBlockList(o.allowIps) : undefined;
    this.deny = o.denyIps.length > 0 ? toBlockList(o.denyIps) : undefined;
    this.now = o.now ?? Date.now;
    this.maxTracked = o.maxTrackedSources ?? 10_000;
  }

  /** Whether a request from `ip` may go on; the deny list wins over the allow list. */
  check(ip: string): SourceVerdict {
    if (this.allow || this.deny) {
      const n = normalize(ip);
      if (
        !n ||
        this.deny?.check(n.addr, n.family) ||
        (this.allow !== undefined && !this.allow.check(n.addr, n.family))
      ) {
        this.o.metrics?.sourceRefusals.inc({ reason: 'denied' });
        return { ok: false, code: 'GW_SOURCE_DENIED' };
      }
    }
    if (this.failures.size === 0) return { ok: true };
    const until = this.blockedUntil(ip);
    if (until === 0) return { ok: true };
    this.o.metrics?.sourceRefusals.inc({ reason: 'blocked' });
    return { ok: false, code: 'GW_SOURCE_BLOCKED', retryAfterS: Math.ceil((until - this.now()) / 1000) };
  }

  isBlocked(ip: string): boolean {
    return this.blockedUntil(ip) > 0;
  }

  /** The auth stage calls this for every failed authentication from `ip`. */
  recordAuthFailure(ip: string): void {
    this.o.metrics?.authFailures.inc();
    const { threshold, windowMs, blockMs } = this.o.authFailures;
    const now = this.now();
    let f = this.failures.get(ip);
    if (!f) {
      if (this.failures.size >= this.maxTracked) this.failures.delete(this.failures.keys().next().value!);
      this.failures.set(ip, (f = { times: [], blockedUntil: 0 }));
    }
    f.times.push(now);
    while (f.times.length > 0 && f.times[0]! <= now - windowMs) f.times.shift();
    if (f.times.length < threshold) return;
    f.times = [];
    this.o.metrics?.securityAlerts.inc({ kind: 'auth_failures' });
    if (blockMs > 0) f.blockedUntil = now + blockMs;
    this.o.log.warn(
      { alert: 'auth_failures', source: ip, threshold, windowMs, blockedForMs: blockMs },
      'repeated authentication failures from one source',
    );
  }

  /** The auth stage calls this after a successful authentication: the source's failure count restarts. */
  recordAuthSuccess(ip: string): void {
    const f = this.failures.get(ip);
    if (f && f.blockedUntil <= this.now()) this.failures.delete(ip);
  }

  private blockedUntil(ip: string): number {
    const f = this.failures.get(ip);
    if (!f || f.blockedUntil === 0) return 0;
    if (f.blockedUntil > this.now()) return f.blockedUntil;
    f.blockedUntil = 0;
    if (f.times.length === 0) this.failures.delete(ip);
    return 0;
  }
}
