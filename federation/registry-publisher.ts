/**
 * Publishes this gateway's part of its region's registry: a heartbeat under `gw.<gateway>` every
 * `heartbeatMs`, and one entry per backend server under `srv.<gateway>.<server>`, written when it changes.
 * After a reconnect it reconciles (republishes everything, deletes its keys that no longer name a
 * server), so whatever changed while the bus was away converges without anyone asking.
 */
import { createHash } from 'node:crypto';
import type { Logger } from '../shared/log.js';
import type { FederationBus, KvBucket } from '../shared/ports/federation-bus.js';
import { encodeEnvelope, type CapabilityRef, type ServerBody } from './codec.js';
import { gatewayKey, registryBucket, serverKey, serverPrefix } from './subjects.js';

const REPUBLISH_MS = 5 * 60_000;

/** One backend server as the gateway knows it now (the publisher computes the hash). */
export type LocalServer = Omit<ServerBody, 'hash'>;

/** Reads this gateway's servers; called on every heartbeat, so it should be cheap (cached catalogs). */
export type RegistrySource = () => Promise<LocalServer[]> | LocalServer[];

export interface RegistryPublisherOptions {
  bus: FederationBus;
  region: string;
  gatewayId: string;
  /** Where other gateways reach this one. */
  url: string;
  source: RegistrySource;
  heartbeatMs: number;
  /** What this gateway runs, and (role core) the audience of internal tokens for it. */
  role?: 'single' | 'edge' | 'core';
  audience?: string;
  /** role core: the domain namespace this core joins under (docs/federation.md, "Domain teams"). */
  domain?: string;
  log: Logger;
  now?: () => number;
}

export class RegistryPublisher {
  private bucket: KvBucket | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** What was last written per server: hash of the whole body, health included. */
  private readonly published = new Map<string, string>();
  private servers: string[] = [];
  private chain: Promise<void> = Promise.resolve();
  private readonly startedAt: number;
  private readonly now: () => number;
  private stopConnection: (() => void) | undefined;
  private stopped = false;
  private republishedAt: number;

  constructor(private readonly opts: RegistryPublisherOptions) {
    this.now = opts.now ?? Date.now;
    this.startedAt = this.now();
    this.republishedAt = this.startedAt;
  }

  async start(): Promise<void> {
    this.bucket = await this.opts.bus.bucket(registryBucket(this.opts.region));
    await this.serial(() => this.reconcile());
    this.stopConnection = this.opts.bus.onConnection((state) => {
      if (state === 'up') void this.serial(() => this.reconcile()).catch(() => {});
    });
    this.timer = setInterval(() => {
      // While the bus is away nothing can be written: the reconnect reconciles instead.
      if (this.opts.bus.connected) void this.serial(() => this.tick()).catch(() => {});
    }, this.opts.heartbeatMs);
    this.timer.unref();
  }

  /** Publishes what changed in the source now, instead of at the next heartbeat. */
  refresh(): Promise<void> {
    return this.serial(async () => void (await this.publishChanges()));
  }

  /** Leaves the registry: the gateway's entries are deleted, so every index drops them at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    this.stopConnection?.();
    await this.serial(async () => {
      if (!this.bucket || !this.opts.bus.connected) return;
      for (const s of this.published.keys()) await this.bucket.delete(serverKey(this.opts.gatewayId, s));
      await this.bucket.delete(gatewayKey(this.opts.gatewayId));
    }).catch((err: unknown) => this.opts.log.warn({ err }, 'federation: could not leave the registry'));
  }

  private serial(fn: () => Promise<void>): Promise<void> {
    const run = this.chain.then(fn);
    this.chain = run.catch(() => {});
    return run;
  }

  private async tick(): Promise<void> {
    if (this.stopped) return;
    // Every entry is rewritten now and then, so that it stays inside the window other regions'
    // mirrors keep (shared/adapters/nats/federation-bus.ts).
    if (this.now() - this.republishedAt >= REPUBLISH_MS) {
      this.republishedAt = this.now();
      this.published.clear();
    }
    try {
      await this.publishChanges();
      await this.heartbeat();
    } catch (err) {
      this.opts.log.debug({ err }, 'federation: heartbeat failed');
    }
  }

  /** Everything again, and this gateway's keys that no longer name one of its servers deleted. */
  private async reconcile(): Promise<void> {
    if (this.stopped) return;
    const bucket = this.bucket!;
    this.published.clear();
    const current = await this.publishChanges();
    for (const e of await bucket.entries(serverPrefix(this.opts.gatewayId))) {
      const server = e.key.slice(serverPrefix(this.opts.gatewayId).length);
      if (!current.has(server)) await bucket.delete(e.key);
    }
    await this.heartbeat();
    this.opts.log.debug({ servers: [...current] }, 'federation: registry reconciled');
  }

  private async publishChanges(): Promise<Set<string>> {
    const bucket = this.bucket!;
    const local = await this.opts.source();
    const names = new Set<string>();
    for (const s of local) {
      names.add(s.name);
      const body: ServerBody = { ...s, hash: catalogHash(s) };
      const whole = hashOf(body);
      if (this.published.get(s.name) === whole) continue;
      const env = encodeEnvelope('server', this.from(), body, this.now());
      await bucket.put(serverKey(this.opts.gatewayId, s.name), env);
      this.published.set(s.name, whole);
    }
    for (const s of [...this.published.keys()])
      if (!names.has(s)) {
        await bucket.delete(serverKey(this.opts.gatewayId, s));
        this.published.delete(s);
      }
    const list = [...names].sort();
    if (list.join(',') !== this.servers.join(',')) {
      this.servers = list;
      // The server list is part of the heartbeat: write it now rather than at the next beat.
      await this.heartbeat();
    }
    return names;
  }

  private async heartbeat(): Promise<void> {
    const env = encodeEnvelope(
      'gateway',
      this.from(),
      {
        url: this.opts.url,
        startedAt: this.startedAt,
        heartbeatMs: this.opts.heartbeatMs,
        servers: this.servers,
        ...(this.opts.role && { role: this.opts.role }),
        ...(this.opts.audience && { audience: this.opts.audience }),
        ...(this.opts.domain && { domain: this.opts.domain }),
      },
      this.now(),
    );
    await this.bucket!.put(gatewayKey(this.opts.gatewayId), env);
  }

  private from() {
    return { region: this.opts.region, gateway: this.opts.gatewayId };
  }
}

/** A stable hash of one capability's definition, for CapabilityRef.hash. */
export function definitionHash(definition: unknown): string {
  return hashOf(definition).slice(0, 16);
}

function catalogHash(s: LocalServer): string {
  const { health: _health, ...catalog } = s;
  return hashOf(catalog).slice(0, 16);
}

function hashOf(value: unknown): string {
  return createHash('sha256').update(stableJson(value)).digest('hex');
}

/** JSON with object keys sorted, so that equal values hash equally whatever their key order. */
function stableJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(stableJson).join(',')}]`;
  if (value && typeof value === 'object')
    return `{${Object.keys(value)
      .sort()
      .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${stableJson((value as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  return JSON.stringify(value) ?? 'null';
}

export type { CapabilityRef };
