/**
 * Active-passive DR pairing (`federation.drPartners: { a: b }`): while region a has no live core, region
 * b's cores serve a's servers (those b has too), and only under a lease. The lease `lease.dr-a` lives in
 * the passive region's own bucket (`reg_b`, always writable by b), fenced by its KV revision: b's cores
 * contend for it once a is down, the holder renews it while a stays down and releases it (a fenced write)
 * as soon as a core of a heartbeats again (failback).
 *
 * Who may serve what, on each core's own clock:
 * - a core of b serves a call "for a" only while b holds `lease.dr-a` (it holds it, or the lease entry in
 *   its own bucket was renewed by a peer within the ttl); a stale holder, fenced or cut off from the bus
 *   for a ttl, stops;
 * - a core of a refuses the calls of a's servers that b also serves while it sees (in its mirror of
 *   `reg_b`) that lease held and renewed within the ttl: during failback, until b has let go.
 * So a call runs in one region at a time; an edge that meets a refusal tries the other one (nothing ran).
 *
 * With a witness (`federation.drWitness: w`), a partition between two live regions cannot make both
 * serve. The DR leases live in a bucket of w's JetStream (`dr_witness`), and every core of an active
 * region puts its presence there (`home.<region>.<gateway>`) every ttl/4:
 * - a core of a runs the servers its partner also serves only while its last presence write reached
 *   the witness within the ttl (cut off from w, it stops before b can take over);
 * - b takes `lease.dr-a` only once, besides a having no live core in its index, no presence of a has
 *   moved on the witness for a ttl (on b's clock, after it saw the last one).
 * Losing the witness while a is cut off from it too stops those servers: the price of no split brain.
 */
import { GatewayError } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';
import type { FederationBus, KvBucket, KvEntry, KvReader } from '../shared/ports/federation-bus.js';
import type { CapabilityIndex } from './capability-index.js';
import { decodeEnvelope, EnvelopeError } from './codec.js';
import { RegionLease } from './region-lease.js';
import { leaseKey, registryBucket } from './subjects.js';

export interface DrPairingOptions {
  bus: FederationBus;
  index: CapabilityIndex;
  /** This gateway's region. */
  region: string;
  gatewayId: string;
  /** active region -> its passive DR partner. */
  partners: Readonly<Record<string, string>>;
  /** Lease ttl: a holder not renewed for this long is not believed (the federation's `downAfterMs`). */
  ttlMs: number;
  /** The witness region (`federation.drWitness`): leases and presences live in its JetStream. */
  witness?: string;
  log: Logger;
  now?: () => number;
}

/** The witness's bucket (in the witness region's JetStream domain). */
export const WITNESS_BUCKET = 'dr_witness';
const presencePrefix = (region: string): string => `home.${region}.`;

/** A lease entry as a reader sees it: renewed when its revision moves. */
interface LeaseView {
  holder: string;
  revision: number;
  /** This clock when the revision last moved. */
  seenAt: number;
}

export const drLeaseName = (region: string): string => `dr-${region}`;

export class DrPairing {
  /** Regions this region stands in for, each with this gateway's contender for its lease. */
  private readonly wards = new Map<
    string,
    {
      lease: RegionLease;
      active: boolean;
      seenCore: boolean;
      /** The newest heartbeat of the ward's cores seen while they lived (their entries may be gone later). */
      lastBeatAt: number;
    }
  >();
  /** `lease.dr-<ward>` entries of this region's bucket (held by this gateway or a peer of its region). */
  private readonly own = new Map<string, LeaseView>();
  /** `lease.dr-<this region>` in the partner's bucket, through this region's mirror of it. */
  private partnerView: LeaseView | undefined;
  private readonly partner: string | undefined;
  private readonly now: () => number;
  private readonly stops: Array<() => void> = [];
  private timer: NodeJS.Timeout | undefined;
  private readTimer: NodeJS.Timeout | undefined;
  private presenceTimer: NodeJS.Timeout | undefined;
  /** This clock when this core's presence last reached the witness (0: never). */
  private presentAt = 0;
  /** Presences of the wards' cores on the witness (`home.<ward>.<gateway>`), as last seen moving. */
  private readonly presences = new Map<string, LeaseView>();
  /** Scopes the partner was seen to serve (partnerServes). */
  private readonly partnerScopes = new Set<string>();

  constructor(private readonly o: DrPairingOptions) {
    this.now = o.now ?? Date.now;
    this.partner = o.partners[o.region];
  }

  async start(): Promise<void> {
    const witness = this.o.witness;
    const bucket =
      witness === undefined
        ? await this.o.bus.bucket(registryBucket(this.o.region))
        : await this.o.bus.bucket(WITNESS_BUCKET, witness === this.o.region ? {} : { region: witness });
    for (const [active, passive] of Object.entries(this.o.partners))
      if (passive === this.o.region)
        this.wards.set(active, {
          lease: new RegionLease({
            bucket,
            region: this.o.region,
            gatewayId: this.o.gatewayId,
            name: drLeaseName(active),
            ttlMs: this.o.ttlMs,
            log: this.o.log,
            ...(this.o.now && { now: this.o.now }),
          }),
          active: false,
          seenCore: false,
          lastBeatAt: 0,
        });
    const reads: Array<() => Promise<void>> = [];
    if (this.wards.size > 0) {
      this.stops.push(await bucket.watch('lease.dr-', (key, e) => this.track(this.own, key, e)));
      reads.push(async () => {
        for (const e of await bucket.entries('lease.dr-')) this.track(this.own, e.key, e);
      });
    }
    if (witness !== undefined && this.wards.size > 0) {
      const seen = (k: string, e: KvEntry | undefined) => {
        if (!e) return void this.presences.delete(k);
        // A presence is renewed when its revision moves (its content is not needed).
        if (this.presences.get(k)?.revision !== e.revision)
          this.presences.set(k, { holder: k, revision: e.revision, seenAt: this.now() });
      };
      for (const ward of this.wards.keys()) {
        this.stops.push(await bucket.watch(presencePrefix(ward), seen));
        reads.push(async () => {
          for (const e of await bucket.entries(presencePrefix(ward))) seen(e.key, e);
        });
      }
    }
    if (this.partner) {
      // This region's lease, held by the partner: in the witness's bucket, or the partner's own (read
      // through this region's mirror of it).
      const key = leaseKey(drLeaseName(this.o.region));
      const view = new Map<string, LeaseView>();
      const leases: KvReader =
        witness !== undefined ? bucket : await this.o.bus.mirror(registryBucket(this.partner), this.partner);
      const seen = (k: string, e: KvEntry | undefined) => {
        this.track(view, k, e);
        this.partnerView = view.get(k);
      };
      this.stops.push(await leases.watch(key, seen));
      reads.push(async () => {
        const e = await leases.get(key);
        if (e) seen(key, e);
      });
      if (witness !== undefined) await this.startPresence(bucket);
    }
    // Fresh reads besides the watches: a watch on a mirror that is rebuilt goes quiet, and a missed
    // renewal must not make a lease look free (nor a missed one look held: freshness needs movement).
    let reading = false;
    this.readTimer = setInterval(
      () => {
        if (reading || !this.o.bus.connected) return;
        reading = true;
        void Promise.all(reads.map((r) => r()))
          .catch((err: unknown) => this.o.log.debug({ err }, 'federation: DR lease read failed'))
          .finally(() => (reading = false));
      },
      Math.max(50, Math.floor(this.o.ttlMs / 4)),
    );
    this.readTimer.unref();
    if (this.wards.size === 0) return;
    this.stops.push(this.o.index.onChange((e) => e.type !== 'server' && this.check()));
    this.timer = setInterval(() => this.check(), Math.max(20, Math.floor(this.o.ttlMs / 10)));
    this.timer.unref();
    this.check();
  }

  /** Puts this core's presence on the witness now and every ttl/4 (`presentAt` when one lands). */
  private async startPresence(bucket: KvBucket): Promise<void> {
    const me = `${presencePrefix(this.o.region)}${this.o.gatewayId}`;
    const present = async () => {
      const at = this.now();
      try {
        await bucket.put(me, { v: 1, region: this.o.region, gateway: this.o.gatewayId, at });
        this.presentAt = at;
      } catch (err) {
        this.o.log.debug({ err }, 'federation: DR witness unreachable');
      }
    };
    await present();
    let putting = false;
    this.presenceTimer = setInterval(
      () => {
        if (putting) return;
        putting = true;
        void present().finally(() => (putting = false));
      },
      Math.max(20, Math.floor(this.o.ttlMs / 4)),
    );
    this.presenceTimer.unref();
  }

  /** Stops contending; held leases are released (fenced writes). */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    clearInterval(this.readTimer);
    clearInterval(this.presenceTimer);
    for (const s of this.stops.splice(0)) s();
    await Promise.all([...this.wards.values()].map((w) => w.lease.stop()));
  }

  /** This region stands in for `region` now: it holds `lease.dr-<region>`, renewed within the ttl. */
  servesFor(region: string): boolean {
    const w = this.wards.get(region);
    // Seen back (failback under way): refused at once, whoever holds the lease until it is released.
    if (!w?.active) return false;
    if (w.lease.held) return true;
    // A peer of this region holds it; an entry naming this gateway is its own, judged by `held` above.
    const v = this.own.get(leaseKey(drLeaseName(region)));
    return v?.holder !== this.o.gatewayId && this.fresh(v);
  }

  /** The partner standing in for this region now (its lease seen renewed within the ttl), if any. */
  supersededBy(): string | undefined {
    return this.partner && this.fresh(this.partnerView) ? this.partner : undefined;
  }

  /**
   * Throws GW_DR_FENCED when this core may not run a request of `scope` now: asked to stand in for
   * `drFor` without its region holding that lease, or asked as itself for a server its partner serves in
   * its stead (failback not yet let go of by the partner).
   */
  gate(scope: string, drFor: string | undefined): void {
    if (drFor !== undefined && drFor !== this.o.region) {
      if (!this.servesFor(drFor))
        throw new GatewayError(
          'GW_DR_FENCED',
          `Region ${this.o.region} does not hold the DR lease of region ${drFor} now (it takes it once ${drFor} has no live core)`,
        );
      return;
    }
    if (scope === 'aggregate') return;
    // Cut off from the witness for a ttl: the partner may be taking over; its servers stop here.
    if (
      this.o.witness !== undefined &&
      this.partner &&
      this.now() - this.presentAt >= this.o.ttlMs &&
      this.partnerServes(scope)
    )
      throw new GatewayError(
        'GW_DR_FENCED',
        `Region ${this.o.region} cannot reach its DR witness ${this.o.witness}: "${scope}" is left to its DR partner ${this.partner}`,
      );
    const by = this.supersededBy();
    if (by && this.o.index.whoServes(scope).some((s) => s.kind === 'server' && s.region === by))
      throw new GatewayError(
        'GW_DR_FENCED',
        `Region ${this.o.region}'s "${scope}" is served by its DR partner ${by} until ${by} releases its lease`,
      );
  }

  /** The regions this region is the DR partner of. */
  get wardRegions(): string[] {
    return [...this.wards.keys()];
  }

  /**
   * Whether the partner serves `scope` as far as this core ever knew: its last known registry, or any
   * earlier sighting (remembered, so that a partner gone quiet is not taken to serve nothing).
   */
  private partnerServes(scope: string): boolean {
    if (this.partnerScopes.has(scope)) return true;
    if (!this.partner || !this.o.index.knownIn(scope, this.partner)) return false;
    this.partnerScopes.add(scope);
    return true;
  }

  /** Whether a core of `region` put its presence on the witness within the ttl (as this clock saw it). */
  private presentOnWitness(region: string): boolean {
    const prefix = presencePrefix(region);
    for (const [key, v] of this.presences)
      if (key.startsWith(prefix) && this.now() - v.seenAt < this.o.ttlMs) return true;
    return false;
  }

  private fresh(v: LeaseView | undefined): boolean {
    return v !== undefined && v.holder !== '' && this.now() - v.seenAt < this.o.ttlMs;
  }

  private track(into: Map<string, LeaseView>, key: string, e: KvEntry | undefined): void {
    if (!e) return void into.delete(key);
    let holder = '';
    try {
      const env = decodeEnvelope(e.value, 'lease');
      holder = env.body.released === true ? '' : env.body.holder;
    } catch (err) {
      if (!(err instanceof EnvelopeError)) throw err;
      this.o.log.warn({ key, reason: err.message }, 'federation: DR lease entry unreadable');
    }
    const old = into.get(key);
    // Any other revision is a write (a mirror's revisions are its own sequence, restarted on a rebuild).
    if (old && old.revision === e.revision) return;
    into.set(key, { holder, revision: e.revision, seenAt: this.now() });
  }

  /** Contends for a ward's lease while it has no live core; lets go once one heartbeats again. */
  private check(): void {
    const gateways = this.o.index.gateways();
    for (const [region, w] of this.wards) {
      const cores = gateways.filter(
        // A domain team's core lives in a region but does not serve that region's servers.
        (g) =>
          g.region === region &&
          g.body.domain === undefined &&
          (g.body.role === 'core' || g.body.role === 'single'),
      );
      const live = cores.some((g) => g.up);
      const status = this.o.index.regionStatus(region);
      const names = new Set(cores.map((g) => g.gateway));
      const beat = Math.max(
        0,
        ...status.gateways.filter((g) => names.has(g.gateway)).map((g) => g.lastHeartbeatAt),
      );
      if (beat > w.lastBeatAt) w.lastBeatAt = beat;
      if (live) w.seenCore = true;
      // Never seen a core of it and its region not known down: it may still be starting.
      const down =
        !live &&
        (w.seenCore || status.state === 'down') &&
        // With a witness: none of the region's cores reached it within the ttl either.
        !(this.o.witness !== undefined && this.presentOnWitness(region));
      if (down && !w.active) {
        w.active = true;
        // Remembered while they lived: a check that runs late may find their entries already gone.
        const last = w.lastBeatAt;
        const unsub = w.lease.onChange((held, revision) => {
          if (!held) return;
          unsub();
          this.o.log.warn(
            {
              peer: region,
              revision,
              ...(last > 0 && { afterLastHeartbeatMs: this.now() - last }),
            },
            `federation: DR takeover: region ${this.o.region} serves region ${region}'s servers`,
          );
        });
        w.lease.start();
      } else if (!down && w.active) {
        w.active = false;
        const held = w.lease.held;
        void w.lease.stop().then(() => {
          if (held)
            this.o.log.warn(
              { peer: region },
              `federation: DR failback: region ${region} has a live core again; lease released`,
            );
        });
      }
    }
  }
}
