/**
 * A lease per region (e.g. the region's leader for DR duties), fenced by the KV revision of its key:
 * every write names the revision it read, so of two gateways that both believe they hold the lease,
 * the stale one's next write fails and it learns it lost (no split brain). The revision is the
 * fencing token that duties done under the lease can carry.
 *
 * Expiry is judged on the contender's own clock: a lease whose revision has not moved for `ttlMs`
 * since this gateway first saw it is free to take, whatever the holder's clock says.
 */
import type { Logger } from '../shared/log.js';
import { KvRevisionConflict, type KvBucket } from '../shared/ports/federation-bus.js';
import { decodeEnvelope, encodeEnvelope, EnvelopeError } from './codec.js';
import { leaseKey } from './subjects.js';

export interface RegionLeaseOptions {
  bucket: KvBucket;
  region: string;
  /** This gateway, the would-be holder. */
  gatewayId: string;
  /** Lease name within the region: `leader` for the region's leader. */
  name?: string;
  ttlMs: number;
  log: Logger;
  now?: () => number;
}

export type LeaseListener = (held: boolean, revision: number | undefined) => void;

export class RegionLease {
  private revision: number | undefined;
  /** This clock when the last write under the lease succeeded. */
  private renewedAt = 0;
  /** The last revision seen held by someone else, and when this clock first saw it. */
  private observed: { revision: number; since: number } | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly listeners = new Set<LeaseListener>();
  private readonly key: string;
  private readonly now: () => number;
  private running: Promise<boolean> | undefined;

  constructor(private readonly opts: RegionLeaseOptions) {
    this.key = leaseKey(opts.name ?? 'leader');
    this.now = opts.now ?? Date.now;
  }

  /**
   * Held while the last renewal is younger than the ttl: a holder cut off from the bus stops believing
   * it leads before any contender (who waits a ttl after seeing that renewal) can take over.
   */
  get held(): boolean {
    return this.revision !== undefined && this.now() - this.renewedAt < this.opts.ttlMs;
  }

  /** The fencing token while held: the revision of this holder's last write. */
  get fencingToken(): number | undefined {
    return this.held ? this.revision : undefined;
  }

  onChange(listener: LeaseListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Renews or contends every ttl/3 until stop(). */
  start(): void {
    const tick = () => void this.attempt().catch(() => {});
    tick();
    this.timer = setInterval(tick, Math.max(10, Math.floor(this.opts.ttlMs / 3)));
    this.timer.unref();
  }

  /** One round: renew if held, else take the lease if it is free or expired. Resolves to `held`. */
  attempt(): Promise<boolean> {
    this.running ??= this.round().finally(() => (this.running = undefined));
    return this.running;
  }

  /** Stops contending; a held lease is released (fenced, so a stale holder releases nothing). */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running?.catch(() => {});
    if (this.revision === undefined) return;
    const rev = this.revision;
    this.set(undefined);
    await this.opts.bucket
      .update(this.key, this.envelope(true), rev)
      .catch((err: unknown) => this.opts.log.debug({ err }, 'federation: lease release failed'));
  }

  private async round(): Promise<boolean> {
    // The renewal counts from before it was sent: the conservative end of the holder's window.
    const sentAt = this.now();
    try {
      if (this.revision !== undefined && !this.held) this.set(undefined);
      if (this.revision !== undefined) {
        this.set(await this.opts.bucket.update(this.key, this.envelope(false), this.revision), sentAt);
        return true;
      }
      const current = await this.opts.bucket.get(this.key);
      if (!current) {
        this.set(await this.opts.bucket.create(this.key, this.envelope(false)), sentAt);
        return true;
      }
      let holder = '';
      let released = false;
      try {
        const env = decodeEnvelope(current.value, 'lease');
        holder = env.body.holder;
        released = env.body.released === true;
      } catch (err) {
        if (!(err instanceof EnvelopeError)) throw err;
        released = false; // unreadable: treated as held until it expires
      }
      const t = this.now();
      if (this.observed?.revision !== current.revision)
        this.observed = { revision: current.revision, since: t };
      const expired = t - this.observed.since >= this.opts.ttlMs;
      if (released || expired || holder === this.opts.gatewayId) {
        this.set(await this.opts.bucket.update(this.key, this.envelope(false), current.revision), sentAt);
        this.opts.log.info({ region: this.opts.region, previous: holder }, 'federation: lease taken');
        return true;
      }
      return false;
    } catch (err) {
      if (err instanceof KvRevisionConflict) {
        // Someone else wrote first: if we believed we held it, we are the stale holder and are fenced.
        if (this.revision !== undefined)
          this.opts.log.warn({ region: this.opts.region }, 'federation: lease lost (fenced by revision)');
        this.set(undefined);
        return false;
      }
      throw err;
    }
  }

  private envelope(released: boolean) {
    return encodeEnvelope(
      'lease',
      { region: this.opts.region, gateway: this.opts.gatewayId },
      { holder: released ? '' : this.opts.gatewayId, ttlMs: this.opts.ttlMs, ...(released && { released }) },
      this.now(),
    );
  }

  private set(revision: number | undefined, at = this.now()): void {
    const was = this.revision !== undefined;
    this.revision = revision;
    if (revision !== undefined) this.renewedAt = at;
    if (was !== (revision !== undefined)) for (const l of this.listeners) l(revision !== undefined, revision);
  }
}
