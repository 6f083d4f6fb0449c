/**
 * The global capability index: which region and which gateway serves what, built from every region's
 * registry bucket (this region's own, the others' through this region's mirrors of them).
 *
 * Per region: a snapshot at start, then the watch; a periodic anti-entropy pass re-reads the whole
 * bucket; a reconnect of the bus re-snapshots (and drops what vanished meanwhile). Liveness comes from
 * heartbeats, timed on this gateway's own clock as they arrive (so clock skew between regions does not
 * matter): a gateway is up while its last heartbeat is younger than `downAfterMs`, a region is up while
 * one of its gateways is. A dead gateway of a live region vanishes from the answers; a dead region keeps
 * its last known entries, marked unreachable, for DR. While the bus itself is down nothing expires: the
 * index keeps answering from the last known registry.
 */
import type { Logger } from '../shared/log.js';
import type { FederationBus, KvEntry, KvReader } from '../shared/ports/federation-bus.js';
import { decodeEnvelope, EnvelopeError, type GatewayBody, type ServerBody } from './codec.js';
import { parseRegistryKey, registryBucket } from './subjects.js';

/** A mirror is rebuilt at most this often (a dead gateway in a live region would rebuild it each time). */
const REPAIR_INTERVAL_MS = 60_000;
/** A mirror shown to be behind its origin is rebuilt at most this often. */
const ORIGIN_REPAIR_INTERVAL_MS = 10_000;

export type CapabilityKind = 'server' | 'tool' | 'prompt' | 'resource';

export interface ServedBy {
  region: string;
  gateway: string;
  /** Where that gateway is reached. */
  url: string;
  server: string;
  kind: CapabilityKind;
  /** The server's last known health on that gateway (`ready`, `failed`...). */
  health: string;
  /** False when the gateway's region is down: the entry is its last known state. */
  reachable: boolean;
  classification?: string;
  residency?: string[];
  hash: string;
}

export interface GatewayStatus {
  gateway: string;
  url: string;
  up: boolean;
  /** This gateway's clock, ms since the epoch, when the last heartbeat arrived. */
  lastHeartbeatAt: number;
}

export interface RegionStatus {
  region: string;
  /** `unknown`: no gateway of the region has ever been seen. */
  state: 'up' | 'down' | 'unknown';
  /** When the state last changed (this gateway's clock). */
  since: number;
  lastHeartbeatAt?: number;
  gateways: GatewayStatus[];
}

export type IndexEvent =
  | { type: 'server'; region: string; gateway: string; server: string; body: ServerBody | undefined }
  | { type: 'gateway'; region: string; gateway: string; up: boolean }
  | { type: 'region'; region: string; up: boolean }
  | { type: 'snapshot'; region: string };

export interface CapabilityIndexOptions {
  bus: FederationBus;
  /** This gateway's region (read from its own bucket). */
  region: string;
  /** Every region of the federation, this one included (the others are read from mirrors). */
  regions: readonly string[];
  downAfterMs: number;
  antiEntropyMs: number;
  log: Logger;
  now?: () => number;
}

interface GatewayState {
  body: GatewayBody;
  revision: number;
  lastSeen: number;
  up: boolean;
}

interface RegionState {
  reader?: KvReader;
  stopWatch?: () => void;
  gateways: Map<string, GatewayState>;
  /** gateway -> server -> entry */
  servers: Map<string, Map<string, { body: ServerBody; revision: number }>>;
  up: boolean | undefined;
  since: number;
  /** Highest revision applied: what a snapshot may drop is what it is older than. */
  watermark: number;
  resyncing?: Promise<void>;
  /** After our own reconnect: nothing in this region expires until its registry is heard again. */
  quietUntil?: number;
  /** When a fresh read last confirmed a silence (see verified()). */
  verifiedAt?: number;
  repairedAt?: number;
  verifying?: Promise<void>;
  /** The mirror was found behind its origin (logged once until it catches up). */
  behind?: boolean;
}

export class CapabilityIndex {
  private readonly states = new Map<string, RegionState>();
  /** capability name -> "region\0gateway\0server" -> kind */
  private readonly byName = new Map<string, Map<string, CapabilityKind>>();
  private readonly listeners = new Set<(e: IndexEvent) => void>();
  private readonly now: () => number;
  private sweepTimer: NodeJS.Timeout | undefined;
  private entropyTimer: NodeJS.Timeout | undefined;
  private stopConnection: (() => void) | undefined;
  private readonly badKeys = new Set<string>();

  constructor(private readonly opts: CapabilityIndexOptions) {
    this.now = opts.now ?? Date.now;
    const regions = new Set([...opts.regions, opts.region]);
    for (const r of regions)
      this.states.set(r, {
        gateways: new Map(),
        servers: new Map(),
        up: undefined,
        since: this.now(),
        watermark: 0,
      });
  }

  /** Resolves once every reachable region's snapshot is in; a region whose read fails is retried later. */
  async start(): Promise<void> {
    this.stopConnection = this.opts.bus.onConnection((state) => {
      if (state === 'up') this.onReconnect();
    });
    await Promise.all([...this.states.keys()].map((r) => this.resync(r)));
    const sweepMs = Math.max(20, Math.min(100, Math.floor(this.opts.downAfterMs / 10)));
    this.sweepTimer = setInterval(() => this.sweep(), sweepMs);
    this.sweepTimer.unref();
    this.entropyTimer = setInterval(() => {
      if (this.opts.bus.connected) for (const r of this.states.keys()) void this.antiEntropy(r);
    }, this.opts.antiEntropyMs);
    this.entropyTimer.unref();
  }

  stop(): void {
    clearInterval(this.sweepTimer);
    clearInterval(this.entropyTimer);
    this.stopConnection?.();
    for (const st of this.states.values()) st.stopWatch?.();
    this.listeners.clear();
  }

  onChange(listener: (e: IndexEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Who serves a capability: a server name, a qualified tool or prompt name (`{server}__{name}`, the
   * backend's own name unshortened) or a resource URI. Reachable entries first, this region's first.
   */
  /**
   * Whether `region`'s last known registry has a server named `capability`, its gateways heard lately or
   * not (DR fencing must not forget what a partner serves because the partner went quiet).
   */
  knownIn(capability: string, region: string): boolean {
    for (const [id, kind] of this.byName.get(capability) ?? [])
      if (kind === 'server' && id.startsWith(`${region}\0`)) return true;
    return false;
  }

  whoServes(capability: string): ServedBy[] {
    const out: ServedBy[] = [];
    for (const [id, kind] of this.byName.get(capability) ?? []) {
      const [region, gateway, server] = id.split('\0') as [string, string, string];
      const st = this.states.get(region)!;
      const gw = st.gateways.get(gateway);
      const entry = st.servers.get(gateway)?.get(server);
      if (!entry) continue;
      if (!this.visible(st, gw)) continue;
      out.push({
        region,
        gateway,
        url: gw?.body.url ?? '',
        server,
        kind,
        health: entry.body.health.state,
        reachable: st.up === true && gw?.up === true,
        ...(entry.body.classification !== undefined && { classification: entry.body.classification }),
        ...(entry.body.residency !== undefined && { residency: entry.body.residency }),
        hash: entry.body.hash,
      });
    }
    const rank = (s: ServedBy) => (s.reachable ? 0 : 2) + (s.region === this.opts.region ? 0 : 1);
    return out.sort((a, b) => rank(a) - rank(b) || a.gateway.localeCompare(b.gateway));
  }

  /**
   * A gateway that stopped heartbeating while its region lives on is gone. A dead region keeps, as its
   * last known state, the gateways that were alive when the region fell silent.
   */
  private visible(st: RegionState, gw: GatewayState | undefined): boolean {
    if (!gw) return false;
    if (st.up !== false) return gw.up;
    const last = Math.max(...[...st.gateways.values()].map((g) => g.lastSeen));
    // Alive then: heard within its last two heartbeat periods before the region's last sign of life.
    return last - gw.lastSeen <= 2 * gw.body.heartbeatMs;
  }

  regionStatus(region: string): RegionStatus {
    const st = this.states.get(region);
    if (!st) return { region, state: 'unknown', since: 0, gateways: [] };
    const gateways = [...st.gateways].map(([gateway, g]) => ({
      gateway,
      url: g.body.url,
      up: g.up,
      lastHeartbeatAt: g.lastSeen,
    }));
    const last = Math.max(0, ...gateways.map((g) => g.lastHeartbeatAt));
    return {
      region,
      state: st.up === undefined ? 'unknown' : st.up ? 'up' : 'down',
      since: st.since,
      ...(last > 0 && { lastHeartbeatAt: last }),
      gateways,
    };
  }

  /** Every known gateway with its heartbeat body (discovery of cores by edges). */
  gateways(): Array<{ region: string; gateway: string; up: boolean; body: GatewayBody }> {
    return [...this.states].flatMap(([region, st]) =>
      [...st.gateways].map(([gateway, g]) => ({ region, gateway, up: g.up && st.up === true, body: g.body })),
    );
  }

  regions(): RegionStatus[] {
    return [...this.states.keys()].map((r) => this.regionStatus(r));
  }

  /** Every known server entry of a region (last known state for a down region), for operators. */
  servers(region: string): Array<{ gateway: string; body: ServerBody }> {
    const st = this.states.get(region);
    if (!st) return [];
    return [...st.servers]
      .filter(([gateway]) => this.visible(st, st.gateways.get(gateway)))
      .flatMap(([gateway, m]) => [...m.values()].map((e) => ({ gateway, body: e.body })));
  }

  // ------------------------------------------------------------------ reading the buckets

  private async reader(region: string): Promise<KvReader> {
    const st = this.states.get(region)!;
    st.reader ??=
      region === this.opts.region
        ? await this.opts.bus.bucket(registryBucket(region))
        : await this.opts.bus.mirror(registryBucket(region), region);
    return st.reader;
  }

  /** (Re)opens the region's watch: its snapshot replaces the region's state, dropping what vanished. */
  private resync(region: string): Promise<void> {
    const st = this.states.get(region)!;
    st.resyncing ??= (async () => {
      this.opts.log.debug({ peer: region }, 'federation: resync start');
      try {
        const reader = await this.reader(region);
        st.stopWatch?.();
        st.stopWatch = undefined;
        const staged = new Map<string, KvEntry>();
        let live = false;
        const from = st.watermark;
        const stop = await reader.watch('', (key, entry) => {
          if (live) {
            this.heard(st, this.now());
            if (st.behind && key.startsWith('gw.')) {
              st.behind = false;
              this.opts.log.info({ peer: region }, 'federation: region mirror flows again');
            }
            this.apply(region, key, entry, this.now());
          } else if (entry) staged.set(key, entry);
          else staged.delete(key);
        });
        live = true;
        st.stopWatch = stop;
        this.replace(region, staged, from);
        this.opts.log.debug({ peer: region, entries: staged.size }, 'federation: region registry resynced');
      } catch (err) {
        this.opts.log.warn({ err, region }, 'federation: could not read the region registry (retrying)');
      } finally {
        st.resyncing = undefined;
      }
    })();
    return st.resyncing;
  }

  private async antiEntropy(region: string): Promise<void> {
    const st = this.states.get(region)!;
    if (st.resyncing) return;
    if (!st.stopWatch) return void (await this.resync(region));
    try {
      const from = st.watermark;
      const entries = await (await this.reader(region)).entries('');
      this.replace(region, new Map(entries.map((e) => [e.key, e])), from);
    } catch (err) {
      this.opts.log.debug({ err, region }, 'federation: anti-entropy read failed');
    }
  }

  private onReconnect(): void {
    // Nobody could be heard while the bus was away, and a restarted server's mirrors take seconds to
    // resume: judge nobody until the region's registry is heard again (or a few downAfterMs have passed).
    const t = this.now();
    for (const st of this.states.values()) {
      st.quietUntil = t + 4 * this.opts.downAfterMs;
      for (const g of st.gateways.values()) g.lastSeen = Math.max(g.lastSeen, t);
    }
    for (const r of this.states.keys()) void this.resync(r);
  }

  /** A live change arrived from the region: its mirror flows again, so its gateways get a fresh window. */
  private heard(st: RegionState, t: number): void {
    if (st.quietUntil === undefined) return;
    st.quietUntil = undefined;
    for (const g of st.gateways.values()) g.lastSeen = Math.max(g.lastSeen, t);
  }

  /** Replaces a region's state by a snapshot taken when the watermark was `from`. */
  private replace(region: string, snapshot: Map<string, KvEntry>, from: number, read = false): void {
    const st = this.states.get(region)!;
    const t = this.now();
    // A gateway still heard within the window is not dropped for missing from a snapshot: a mirror
    // that lost its key (or a rebuilt one still filling) would flap it; a gateway that really left is
    // deleted by the watch, or expires. Its servers stay while it does.
    const live = (gateway: string) => {
      const g = st.gateways.get(gateway);
      return !!g && !snapshot.has(`gw.${gateway}`) && t - g.lastSeen <= this.opts.downAfterMs;
    };
    const kept = new Set([...st.gateways.keys()].filter(live));
    for (const [gateway, g] of [...st.gateways])
      if (!snapshot.has(`gw.${gateway}`) && g.revision <= from && !kept.has(gateway))
        this.apply(region, `gw.${gateway}`, undefined, t);
    for (const [gateway, m] of [...st.servers])
      for (const [server, e] of [...m])
        if (!snapshot.has(`srv.${gateway}.${server}`) && e.revision <= from && !kept.has(gateway))
          this.apply(region, `srv.${gateway}.${server}`, undefined, t);
    for (const [key, entry] of snapshot) this.apply(region, key, entry, t, true);
    if (read) return;
    this.emit({ type: 'snapshot', region });
    this.sweep();
  }

  private apply(
    region: string,
    key: string,
    entry: KvEntry | undefined,
    t: number,
    fromSnapshot = false,
  ): void {
    const st = this.states.get(region)!;
    const k = parseRegistryKey(key);
    if (!k || k.type === 'lease') return;
    if (entry) st.watermark = Math.max(st.watermark, entry.revision);
    if (k.type === 'gateway') {
      const old = st.gateways.get(k.gateway);
      if (!entry) {
        if (!old) return;
        st.gateways.delete(k.gateway);
        this.emit({ type: 'gateway', region, gateway: k.gateway, up: false });
        return;
      }
      if (old && old.revision >= entry.revision) return;
      const env = this.decode(key, entry, 'gateway');
      if (!env) return;
      // A heartbeat seen arriving is timed by this clock; one read from a snapshot may be old, so its
      // own timestamp (never later than now) tells how old.
      const lastSeen =
        fromSnapshot && !old
          ? Math.min(t, env.ts)
          : fromSnapshot
            ? Math.max(old!.lastSeen, Math.min(t, env.ts))
            : t;
      const up = t - lastSeen <= this.opts.downAfterMs;
      st.gateways.set(k.gateway, { body: env.body, revision: entry.revision, lastSeen, up });
      if (!old || old.up !== up) this.emit({ type: 'gateway', region, gateway: k.gateway, up });
      this.updateRegion(region, st);
      return;
    }
    let m = st.servers.get(k.gateway);
    const old = m?.get(k.server);
    if (!entry) {
      if (!old) return;
      m!.delete(k.server);
      if (m!.size === 0) st.servers.delete(k.gateway);
      this.unindex(region, k.gateway, k.server, old.body);
      this.emit({ type: 'server', region, gateway: k.gateway, server: k.server, body: undefined });
      return;
    }
    if (old && old.revision >= entry.revision) return;
    const env = this.decode(key, entry, 'server');
    if (!env) return;
    if (!m) st.servers.set(k.gateway, (m = new Map()));
    if (old) this.unindex(region, k.gateway, k.server, old.body);
    m.set(k.server, { body: env.body, revision: entry.revision });
    this.index(region, k.gateway, k.server, env.body);
    this.emit({ type: 'server', region, gateway: k.gateway, server: k.server, body: env.body });
  }

  private decode<K extends 'gateway' | 'server'>(key: string, entry: KvEntry, kind: K) {
    try {
      return decodeEnvelope(entry.value, kind);
    } catch (err) {
      if (!(err instanceof EnvelopeError)) throw err;
      // Logged once per key: a newer region would otherwise fill the log on every heartbeat.
      if (!this.badKeys.has(key)) {
        this.badKeys.add(key);
        this.opts.log.warn({ key, reason: err.message }, 'federation: registry entry skipped');
      }
      return undefined;
    }
  }

  private index(region: string, gateway: string, server: string, body: ServerBody): void {
    const id = `${region}\0${gateway}\0${server}`;
    for (const [name, kind] of capabilityNames(body)) {
      let m = this.byName.get(name);
      if (!m) this.byName.set(name, (m = new Map()));
      m.set(id, kind);
    }
  }

  private unindex(region: string, gateway: string, server: string, body: ServerBody): void {
    const id = `${region}\0${gateway}\0${server}`;
    for (const [name] of capabilityNames(body)) {
      const m = this.byName.get(name);
      m?.delete(id);
      if (m?.size === 0) this.byName.delete(name);
    }
  }

  // ------------------------------------------------------------------ liveness

  private sweep(): void {
    // Our own link is down: we cannot tell a dead region from our own outage, so nothing expires.
    if (!this.opts.bus.connected) return;
    const t = this.now();
    for (const [region, st] of this.states) {
      if (st.quietUntil !== undefined) {
        if (t < st.quietUntil) continue;
        st.quietUntil = undefined;
      }
      const expiring = [...st.gateways.values()].some((g) => g.up && t - g.lastSeen > this.opts.downAfterMs);
      // A region with no gateway heard live (none at all, or only old heartbeats read from its mirror)
      // expires nobody, yet a mirror stuck since its creation (seen with server 2.9) would keep it
      // silent for good: check it, and rebuild its mirror from the origin, now and then all the same.
      if (!expiring && region !== this.opts.region && ![...st.gateways.values()].some((g) => g.up))
        void this.verified(region, st, t);
      // Before anyone is declared down, a fresh read checks that the watch did not just go quiet.
      if (expiring && !this.verified(region, st, t)) continue;

      for (const [gateway, g] of st.gateways) {
        const up = t - g.lastSeen <= this.opts.downAfterMs;
        if (up !== g.up) {
          g.up = up;
          this.emit({ type: 'gateway', region, gateway, up });
        }
      }
      this.updateRegion(region, st);
    }
  }

  /**
   * True once a fresh read since the gateways went silent confirmed there is nothing newer; starts that
   * read otherwise. A newer heartbeat found there means the watch went stale: it is opened again.
   */
  private verified(region: string, st: RegionState, t: number): boolean {
    if (st.verifiedAt !== undefined && t - st.verifiedAt < this.opts.downAfterMs) return true;
    if (st.verifying) return false;
    st.verifying = (async () => {
      // Set only when the reads confirmed the silence: a read that found newer heartbeats confirms
      // nothing, and the next expiry must be checked afresh.
      let confirmed = true;
      try {
        const reader = await this.reader(region);
        const stale = this.applyNewer(region, st, await reader.entries('gw.'));
        // Only a silence of the whole region can be a stuck mirror: others' heartbeats still arrive.
        const wholeSilence = () =>
          ![...st.gateways.values()].some((g) => this.now() - g.lastSeen <= this.opts.downAfterMs);
        if (stale) {
          confirmed = false;
          this.opts.log.warn({ peer: region }, 'federation: registry watch went stale; reopening it');
          void this.resync(region);
        } else if (reader.originEntries && wholeSilence()) {
          // The mirror says the region is silent; its origin, when it answers, knows better. Server
          // 2.9 was seen with a mirror that never received a gateway's heartbeat key while it kept the
          // rest: liveness is then read from the origin until the mirror is rebuilt and flows.
          const origin = await reader.originEntries('gw.').catch((err: unknown) => {
            this.opts.log.debug({ err, peer: region }, 'federation: origin unreachable');
            return undefined;
          });
          if (origin && this.applyNewer(region, st, origin, true)) {
            // The origin's heartbeats are as old as the mirror's when its gateways are really gone.
            confirmed = wholeSilence();
            // While the mirror lags, the origin's registry is the region's state (servers removed
            // meanwhile included): it is read whole.
            const from = st.watermark;
            const all = await reader.originEntries('');
            this.replace(region, new Map(all.map((e) => [e.key, e])), from, true);
            if (!st.behind) {
              st.behind = true;
              this.opts.log.warn({ peer: region }, 'federation: region mirror is behind its origin');
            }
            if (reader.repair && this.now() - (st.repairedAt ?? 0) > ORIGIN_REPAIR_INTERVAL_MS) {
              st.repairedAt = this.now();
              if (await reader.repair(ORIGIN_REPAIR_INTERVAL_MS)) {
                this.opts.log.warn({ peer: region }, 'federation: region mirror rebuilt from its origin');
                await this.resync(region);
              }
            }
          } else if (
            origin &&
            reader.repair &&
            wholeSilence() &&
            this.now() - (st.repairedAt ?? 0) > REPAIR_INTERVAL_MS &&
            (await reader.repair(REPAIR_INTERVAL_MS))
          ) {
            // The origin answers while its heartbeats do not reach us: rebuild the mirror now and then
            // all the same (it may hold old server entries too).
            st.repairedAt = this.now();
            this.opts.log.warn({ peer: region }, 'federation: region mirror rebuilt from its origin');
            await this.resync(region);
          }
        }
      } catch (err) {
        // Unreadable: the silence stands.
        this.opts.log.debug({ err, peer: region }, 'federation: verification read failed');
      } finally {
        st.verifiedAt = confirmed ? this.now() : undefined;
        st.verifying = undefined;
      }
    })();
    return false;
  }

  /** Applies the entries newer than what the region's state holds; true when there was one. */
  private applyNewer(region: string, st: RegionState, entries: KvEntry[], fromSnapshot = false): boolean {
    let newer = false;
    for (const e of entries) {
      const k = parseRegistryKey(e.key);
      if (!k || k.type === 'lease') continue;
      const known =
        k.type === 'gateway' ? st.gateways.get(k.gateway) : st.servers.get(k.gateway)?.get(k.server);
      if (known && e.revision <= known.revision) continue;
      newer = true;
      // Read, not seen arriving: a heartbeat's own timestamp says how old it is.
      this.apply(region, e.key, e, this.now(), fromSnapshot);
    }
    return newer;
  }

  private updateRegion(region: string, st: RegionState): void {
    if (st.gateways.size === 0 && st.up === undefined) return;
    const up = [...st.gateways.values()].some((g) => g.up);
    if (up === st.up) return;
    st.up = up;
    st.since = this.now();
    this.emit({ type: 'region', region, up });
  }

  private emit(e: IndexEvent): void {
    for (const l of this.listeners) l(e);
  }
}

function capabilityNames(body: ServerBody): Array<[string, CapabilityKind]> {
  return [
    [body.name, 'server'],
    ...body.tools.map((t): [string, CapabilityKind] => [`${body.name}__${t.name}`, 'tool']),
    ...body.prompts.map((p): [string, CapabilityKind] => [`${body.name}__${p.name}`, 'prompt']),
    ...body.resources.map((r): [string, CapabilityKind] => [r.name, 'resource']),
  ];
}
