/**
 * The edge's forward stage: CoreService spoken over HTTP to the core tier (docs/adr/0005). Each core is
 * one undici Pool of keep-alive connections (TLS, with a client certificate when configured, handshakes
 * only when a connection opens); every call carries the internal token for the caller's principal, minted
 * once per ~30 s. A session is pinned to a core by rendezvous hashing of its id over the cores of this
 * edge's region, so every edge picks the same core for it; a core that cannot be reached is skipped, and
 * the next one continues the session from the shared SessionStore. A core that says it is draining (a
 * line on its events stream, a header on its answers, its info) gets no new calls while another core can
 * take them; a call it refused as draining (503 with the header: nothing ran) goes to the next core.
 */
import { createHash } from 'node:crypto';
import { Pool } from 'undici';
import { GatewayError, ERRORS, type ErrorCode } from '../../shared/errors.js';
import { DRAINING_HEADER } from '../../shared/lifecycle/drain.js';
import { VIRTUAL_SCOPE_PREFIX } from '../../shared/mcp/scopes.js';
import { ANONYMOUS, type Principal } from '../../shared/identity/principal.js';
import type { Logger } from '../../shared/log.js';
import type { Context } from '@opentelemetry/api';
import {
  messageTrace,
  messageTraceId,
  traceHeadersOfContext,
  unsampledTraceparent,
} from '../../shared/telemetry/tracing.js';
import type {
  JsonRpcMessage,
  JsonRpcNotification,
  JsonRpcRequest,
  JsonRpcResponse,
} from '../../shared/mcp/jsonrpc.js';
import type {
  CoreService,
  CoreSessionHandle,
  MessageSink,
  OpenSessionOptions,
  ReadinessReport,
} from '../../shared/ports/core-service.js';
import type { FederatedScope } from './federated-aggregate.js';
import { dispatchCall, type CoreAnswer } from './core-answer.js';
import { jsonTextOf, keepJsonText } from '../../shared/mcp/json-text.js';

const INFO_EVERY_MS = 5_000;
/**
 * How long a discovered core the federation stops listing is kept: a region whose heartbeats pause
 * (a loaded bus, a mirror catching up) must not cut the sessions its cores still serve. A core that is
 * really gone fails its connections at once and is skipped meanwhile (downUntil, info).
 */
const GONE_LINGER_MS = 30_000;
const DOWN_FOR_MS = 2_000;
/** Sessions whose rendezvous score a core keeps (CoreLink.score). */
const SCORE_CACHE_SIZE = 10_000;
// Failures before anything was sent: the next core may take the call. (A reset may come after the core
// got the request, so it is never retried.)
const CONNECT_ERRORS = new Set(['ECONNREFUSED', 'UND_ERR_CONNECT_TIMEOUT', 'ENOTFOUND', 'EHOSTUNREACH']);
// The connection was lost after the request was (maybe) sent: only a call safe to repeat goes elsewhere.
const LOST_ERRORS = new Set(['UND_ERR_SOCKET', 'ECONNRESET', 'EPIPE', 'UND_ERR_CLOSED']);
/** Methods that change nothing: repeated on another core when theirs is lost mid-call. */
const SAFE_METHODS = new Set([
  'ping',
  'tools/list',
  'prompts/list',
  'prompts/get',
  'resources/list',
  'resources/templates/list',
  'resources/read',
  'completion/complete',
]);
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export interface CoreTarget {
  /** The `aud` of tokens for this core. */
  id: string;
  region: string;
  url: string;
  /**
   * A domain team's core (`federation.domain`): it serves the one scope named after its domain (its
   * own aggregate), never this region's servers or aggregate.
   */
  domain?: string;
  /** undici connect options (ca, cert, key, servername...); called again when `watch` fires. */
  connect?: () => Record<string, unknown>;
  /** Calls back when the TLS files change, so that new connections use them. Returns an unwatch. */
  watch?: (onChange: () => void) => () => void;
}

export interface TokenSource {
  /** A cached token: it names no trace (the `traceparent` header of the request does). */
  tokenFor(principal: Principal, audience: string): Promise<string>;
  /** The token `tokenFor` would give at once, when it has one (no promise on the hot path). */
  cachedToken?(principal: Principal, audience: string): string | undefined;
  forget(): void;
}

export interface RemoteCoreOptions {
  cores: readonly CoreTarget[];
  /** This edge's region: its cores come first. */
  region: string;
  /** This edge process, unique among edges (unrelated messages are routed to it by this name). */
  instance: string;
  /** Undefined only when calling a core in its loopback test mode (no internal token). */
  tokens: TokenSource | undefined;
  log: Logger;
  /** Cores come (also) from the federation bus (setDiscovered): none need be configured. */
  discovery?: boolean;
  /** Residency and home region of a caller (federation); absent: any region, no home. */
  placement?: (principal: Principal, scope: string) => Placement;
  /**
   * DR pairs, active -> passive region (`federation.drPartners`): a session whose first region has a
   * partner goes to that region's cores, then to the partner's (asked to stand in, `x-mcpgw-dr-for`),
   * never to a third region.
   */
  drPartners?: Readonly<Record<string, string>>;
  /**
   * How long a call every core refused with GW_DR_FENCED (nothing ran) is tried again: a DR lease
   * changing hands (takeover, failback). Default 0: not retried.
   */
  drWaitMs?: number;
  /** Told of every session request once it is answered or failed (the edge's audit trail). */
  onForwarded?: (call: ForwardedCall) => void;
}

/** A session request as the edge forwarded it: to which core, how it ended, how long it took. */
export interface ForwardedCall {
  /** The session id on the wire (the core's records name the same one). */
  sessionId: string;
  principal: Principal;
  scope: string;
  request: JsonRpcRequest;
  /** Undefined when cancelled, or when `error` is set. */
  response: JsonRpcResponse | undefined;
  /** Why no response came: the core could not be reached, refused the call... */
  error?: unknown;
  /** The core that answered; undefined when none did. */
  core: CoreTarget | undefined;
  latencyMs: number;
}

/** A core to try, and the region it is asked to stand in for (DR), if any. */
interface Choice {
  link: CoreLink;
  drFor?: string;
}

const DR_RETRY_MS = 100;

interface CallExtra {
  method?: 'GET' | 'POST';
  route?: Route;
  retrySafe?: boolean;
  /** Told which core answered. */
  served?: (core: CoreTarget) => void;
  /**
   * The forward stage the call belongs to: its span is the parent of the core's (W3C headers). Not
   * sampled: the request's trace id, sent with the "not sampled" flag.
   */
  trace?: Context | string;
}

/** Where a caller's session may and should go. */
export interface Placement {
  /** Regions the caller's data may go to (tenant config, token claim, the server's residency). */
  allowed?: readonly string[];
  /** The tenant's home region: served there wherever the caller connects. */
  home?: string;
  /** Policy lets the edge's own region serve the tenant when it serves the scope. */
  nearerAllowed?: boolean;
}

interface CoreInfo {
  coreId: string;
  servers: string[];
  readiness: ReadinessReport;
  draining?: boolean;
}

/** One core: its connection pool, what it serves, whether it answered lately. */
class CoreLink {
  pool: Pool;
  info: CoreInfo | undefined;
  downUntil = 0;
  /** The core said it is shutting down: new calls go to another core while one can take them. */
  draining = false;
  /** When the federation stopped listing this (discovered) core; undefined while it is listed. */
  goneSince: number | undefined;
  private readonly unwatch: (() => void) | undefined;

  constructor(
    readonly target: CoreTarget,
    private readonly log: Logger,
  ) {
    this.pool = this.newPool();
    this.unwatch = target.watch?.(() => this.renewPool());
  }

  get up(): boolean {
    return this.downUntil <= Date.now();
  }

  /** Recent sessions' rendezvous scores: a session's calls rank the cores without hashing again. */
  private readonly scores = new Map<string, number>();

  /** The rendezvous score of session `id` on this core (the highest wins). */
  score(id: string): number {
    let s = this.scores.get(id);
    if (s === undefined) {
      s = createHash('sha1').update(`${this.target.id}\u0000${id}`).digest().readUInt32BE(0);
      if (this.scores.size >= SCORE_CACHE_SIZE) this.scores.clear();
      this.scores.set(id, s);
    }
    return s;
  }

  private newPool(): Pool {
    return new Pool(this.target.url, {
      connections: null,
      pipelining: 1,
      keepAliveTimeout: 60_000,
      keepAliveMaxTimeout: 600_000,
      connect: { ...(this.target.connect?.() ?? {}) },
    });
  }

  /** New TLS material: new connections use it; requests on the old pool finish there. */
  private renewPool(): void {
    try {
      const old = this.pool;
      this.pool = this.newPool();
      void old.close().catch(() => {});
      this.log.info({ core: this.target.id }, 'TLS material toward the core reloaded');
    } catch (err) {
      this.log.error({ core: this.target.id, err: (err as Error).message }, 'TLS material not reloaded');
    }
  }

  async close(): Promise<void> {
    this.unwatch?.();
    await this.pool.destroy().catch(() => {});
  }
}

export class RemoteCore implements CoreService {
  private links: CoreLink[];
  private readonly sessions = new Map<string, RemoteSession>();
  private readonly aborts = new AbortController();
  private readonly infoTimer: NodeJS.Timeout;
  private closed = false;
  private readonly staticIds: Set<string>;
  /** The edge itself, for calls that act for no caller (info, the events stream). */
  private readonly self: Principal;
  /** Requests go to the core as JSON text: the client's own, when the endpoint kept it. */
  readonly forwardsText = true;
  /** RemoteCoreOptions.onForwarded, for the sessions. */
  readonly onForwarded: ((call: ForwardedCall) => void) | undefined;

  constructor(private readonly o: RemoteCoreOptions) {
    this.onForwarded = o.onForwarded;
    if (o.cores.length === 0 && !o.discovery) throw new Error('an edge needs at least one core');
    this.links = o.cores.map((c) => new CoreLink(c, o.log));
    this.staticIds = new Set(o.cores.map((c) => c.id));
    this.self = Object.freeze({
      subject: `edge:${o.instance}`,
      tenant: 'mcpgw-system',
      roles: Object.freeze(['edge']),
      scopes: Object.freeze([]),
      authMethod: 'internal',
    });
    this.infoTimer = setInterval(() => {
      this.dropGone();
      void this.refreshInfo();
    }, INFO_EVERY_MS).unref();
  }

  /**
   * The cores the federation bus knows now (up ones): new ones are added (their info read at once),
   * vanished ones closed. Configured cores are never removed.
   */
  async setDiscovered(targets: readonly CoreTarget[]): Promise<void> {
    if (this.closed) return;
    const want = new Map(targets.filter((t) => !this.staticIds.has(t.id)).map((t) => [t.id, t]));
    const keep: CoreLink[] = [];
    const added: CoreLink[] = [];
    const now = Date.now();
    for (const l of this.links) {
      const t = want.get(l.target.id);
      if (this.staticIds.has(l.target.id) || (t && t.url === l.target.url)) {
        l.goneSince = undefined;
        keep.push(l);
        want.delete(l.target.id);
      } else if (!t && now - (l.goneSince ??= now) < GONE_LINGER_MS) keep.push(l);
      else void l.close();
    }
    for (const t of want.values()) {
      const l = new CoreLink(t, this.o.log);
      keep.push(l);
      added.push(l);
    }
    if (added.length === 0 && keep.length === this.links.length) return;
    this.links = keep;
    this.o.log.info(
      { cores: keep.map((l) => `${l.target.id}@${l.target.region}`) },
      'cores learned from the federation',
    );
    for (const l of added) void this.followEvents(l);
    await this.refreshInfo(added);
  }

  /** Closes the discovered cores the federation has not listed for GONE_LINGER_MS. */
  private dropGone(): void {
    const now = Date.now();
    const gone = this.links.filter((l) => l.goneSince !== undefined && now - l.goneSince >= GONE_LINGER_MS);
    if (gone.length === 0) return;
    this.links = this.links.filter((l) => !gone.includes(l));
    for (const l of gone) void l.close();
    this.o.log.info({ cores: gone.map((l) => l.target.id) }, 'cores no longer in the federation dropped');
  }

  /** Learns what the cores serve and opens their events streams; resolves once one core answered. */
  async start(waitMs = 15_000): Promise<void> {
    for (const l of this.links) void this.followEvents(l);
    const deadline = Date.now() + waitMs;
    for (;;) {
      await this.refreshInfo();
      if (this.links.some((l) => l.info) || this.closed) return;
      if (this.links.length === 0 && this.o.discovery) return; // they arrive through setDiscovered
      if (Date.now() > deadline) {
        this.o.log.warn(
          { cores: this.links.map((l) => l.target.url) },
          'no core answered yet; starting anyway',
        );
        return;
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  hasScope(scope: string): boolean {
    // A virtual server is the deployment's (its store), changed live: the core decides at every request
    // (GW_UNKNOWN_VIRTUAL_SERVER), not a listing here that would lag behind.
    if (scope === 'aggregate' || scope.startsWith(VIRTUAL_SCOPE_PREFIX)) return true;
    if (this.isDomain(scope)) return true;
    return this.links.some((l) => l.target.domain === undefined && l.info?.servers.includes(scope));
  }

  /** A domain some discovered core joined under, and no core serves a server of that name. */
  private isDomain(scope: string): boolean {
    return (
      this.links.some((l) => l.target.domain === scope) &&
      !this.links.some((l) => l.target.domain === undefined && l.info?.servers.includes(scope))
    );
  }

  /** The scope as the serving core knows it: a domain is its core's own aggregate. */
  wireScope(scope: string): string {
    return scope !== 'aggregate' && this.isDomain(scope) ? 'aggregate' : scope;
  }

  /**
   * What other regions' cores and domain cores serve that this region's cores do not, and whether
   * `principal`'s residency lets it reach them (the federated aggregate, federated-aggregate.ts). A
   * domain named like a server is ambiguous: it is left out (and logged once).
   */
  federatedScopes(principal: Principal): FederatedScope[] {
    const local = new Set<string>();
    const remote = new Set<string>();
    const domains = new Set<string>();
    for (const l of this.links) {
      if (l.target.domain !== undefined) domains.add(l.target.domain);
      else if (l.info)
        for (const s of l.info.servers) (l.target.region === this.o.region ? local : remote).add(s);
    }
    const out: FederatedScope[] = [];
    const reachable = (scope: string) => {
      try {
        return this.placed({ scope, principal }, true).length > 0;
      } catch {
        return false;
      }
    };
    for (const s of remote) if (!local.has(s)) out.push({ scope: s, domain: false, allowed: reachable(s) });
    for (const d of domains) {
      if (local.has(d) || remote.has(d)) {
        if (!this.ambiguous.has(d)) {
          this.ambiguous.add(d);
          this.o.log.error(
            { domain: d },
            `federation: domain "${d}" is also the name of a server; the domain is not served here until one is renamed`,
          );
        }
        continue;
      }
      out.push({ scope: d, domain: true, allowed: reachable(d) });
    }
    return out;
  }

  private readonly ambiguous = new Set<string>();

  /** Reads every core's info now (what it serves), e.g. when the federation's registry changed. */
  refresh(): Promise<void> {
    return this.refreshInfo();
  }

  /**
   * A server's tools, prompts and resources as a core that runs it lists them (the admin API's
   * capabilities); undefined when no core this edge knows runs it.
   */
  async capabilities(server: string): Promise<Record<string, unknown> | undefined> {
    const link = this.links.find((l) => l.up && l.info?.servers.includes(server));
    if (!link) return undefined;
    const res = await link.pool.request({
      path: `/internal/v1/capabilities/${encodeURIComponent(server)}`,
      method: 'GET',
      headers: await this.headers(link, this.self, false),
      headersTimeout: 10_000,
      bodyTimeout: 10_000,
    });
    const text = await res.body.text();
    if (res.statusCode === 404) return undefined;
    if (res.statusCode !== 200)
      throw new Error(`the core ${link.target.id} answered ${res.statusCode}: ${text.slice(0, 200)}`);
    return JSON.parse(text) as Record<string, unknown>;
  }

  /**
   * Asks every core this edge knows to re-read a change of the shared store now (a virtual server, the
   * stored policies) and waits until each applied it or `timeoutMs` passed: the admin API answers a write
   * once it is in force on the cores, as a single node does. A core that does not answer follows the
   * store's own notice anyway; it is logged, not an error.
   */
  async sync(change: { virtualServer: string } | { policies: true }, timeoutMs = 5_000): Promise<void> {
    const body = JSON.stringify(change);
    await Promise.all(
      this.links
        .filter((l) => l.up && l.info !== undefined)
        .map(async (l) => {
          try {
            const res = await l.pool.request({
              path: '/internal/v1/sync',
              method: 'POST',
              headers: await this.headers(l, this.self, true),
              body,
              headersTimeout: timeoutMs,
              bodyTimeout: timeoutMs,
            });
            const text = await res.body.text();
            if (res.statusCode !== 204)
              throw new Error(`sync answered ${res.statusCode}: ${text.slice(0, 200)}`);
          } catch (err) {
            this.o.log.warn(
              { core: l.target.id, change, err: (err as Error).message },
              'core not synced with a store change (it follows the store notice)',
            );
          }
        }),
    );
  }

  openSession(o: OpenSessionOptions): CoreSessionHandle {
    // Ids the edge cannot promise unique across edges (2026 per-caller contexts) are qualified with
    // this edge; session ids (random UUIDs, shared through the SessionStore) go as they are.
    const wireId = UUID.test(o.id) || o.restore ? o.id : `${this.o.instance}.${o.id}`;
    const s = new RemoteSession(
      this,
      wireId,
      o.scope,
      this.wireScope(o.scope),
      o.identity ?? principalFromKey(o.principal),
      o.unrelated,
      () => this.sessions.delete(wireId),
    );
    this.sessions.set(wireId, s);
    return s;
  }

  readiness(): ReadinessReport {
    const servers: ReadinessReport['servers'] = {};
    let ready = false;
    for (const l of this.candidates()) {
      if (!l.info || !l.up) continue;
      ready ||= l.info.readiness.ready;
      for (const [name, st] of Object.entries(l.info.readiness.servers)) servers[name] ??= st;
    }
    return { ready, servers };
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.infoTimer);
    this.aborts.abort();
    await Promise.all(this.links.map((l) => l.close()));
  }

  // ------------------------------------------------------------------------------------------------

  /**
   * One call to the core that holds session `wireId` (or any core, for edge-level paths). A core that
   * cannot be connected to is skipped for a while; a refused token is minted afresh and tried once more.
   */
  async call(
    wireId: string | undefined,
    path: string,
    body: string | undefined,
    principal: Principal,
    extra: CallExtra = {},
  ): Promise<CoreAnswer> {
    // A DR lease changing hands: every core may refuse (nothing ran) for a moment; tried again a while.
    const fencedUntil = Date.now() + (this.o.drWaitMs ?? 0);
    for (;;) {
      try {
        return await this.callOnce(wireId, path, body, principal, extra);
      } catch (err) {
        const fenced = err instanceof GatewayError && err.code === 'GW_DR_FENCED';
        if (!fenced || Date.now() >= fencedUntil || this.closed) throw err;
      }
      await new Promise((r) => setTimeout(r, DR_RETRY_MS));
    }
  }

  /** One pass over the cores, best first; GW_DR_FENCED when the last core reached refused as fenced. */
  private async callOnce(
    wireId: string | undefined,
    path: string,
    body: string | undefined,
    principal: Principal,
    extra: CallExtra,
  ): Promise<CoreAnswer> {
    let fenced: GatewayError | undefined;
    let lastErr: unknown;
    let retriedToken = false;
    next: for (const { link, drFor } of this.order(wireId, extra.route)) {
      for (;;) {
        let res: CoreAnswer;
        try {
          const headers = this.headers(link, principal, body !== undefined, drFor, extra.trace);
          const opts = {
            path,
            method: extra.method ?? 'POST',
            headers: headers instanceof Promise ? await headers : headers,
            body,
            headersTimeout: 0,
            bodyTimeout: 0,
          } as const;
          res = await dispatchCall(link.pool, opts);
        } catch (err) {
          lastErr = err;
          const code = (err as { code?: string }).code ?? '';
          if (!CONNECT_ERRORS.has(code)) {
            if (!LOST_ERRORS.has(code)) throw unavailable(link, err);
            link.downUntil = Date.now() + DOWN_FOR_MS;
            if (!extra.retrySafe)
              throw new GatewayError(
                'GW_CORE_UNAVAILABLE',
                `The core ${link.target.id} was lost during a call that is not idempotent; it may or may not have run, so it is not repeated elsewhere`,
                undefined,
                { cause: err },
              );
            this.o.log.warn(
              { core: link.target.id, err: (err as Error).message },
              'core lost mid-call; repeating the idempotent call on the next core',
            );
            continue next;
          }
          link.downUntil = Date.now() + DOWN_FOR_MS;
          this.o.log.warn(
            { core: link.target.id, err: (err as Error).message },
            'core unreachable; trying the next',
          );
          break;
        }
        const draining = res.headers[DRAINING_HEADER] === '1';
        link.draining = draining;
        if (draining && res.statusCode === 503) {
          // Refused before anything ran: the next core may take it.
          lastErr = new Error(`the core ${link.target.id} is shutting down`);
          await res.body.dump();
          this.o.log.debug({ core: link.target.id }, 'core draining; trying the next');
          continue next;
        }
        if (res.statusCode === 401 && !retriedToken && this.o.tokens) {
          // A key rotated under a cached token: a fresh one, signed with the current key, once.
          retriedToken = true;
          await res.body.dump();
          this.o.tokens.forget();
          continue;
        }
        link.downUntil = 0;
        if (res.statusCode === 503 && res.headers['x-mcpgw-refused'] === 'dr-fenced') {
          // Nothing ran: the other region may hold the lease.
          fenced = await refusalOf(res);
          continue next;
        }
        extra.served?.(link.target);
        return res;
      }
    }
    if (fenced) throw fenced;
    throw unavailable(undefined, lastErr);
  }

  /** A call's headers: at once when the caller's token is cached (no promise per call), else once minted. */
  private headers(
    link: CoreLink,
    principal: Principal,
    json: boolean,
    drFor?: string,
    traced?: Context | string,
  ): Record<string, string> | Promise<Record<string, string>> {
    const tokens = this.o.tokens;
    if (!tokens) return this.headersWith(undefined, principal, json, drFor, traced);
    const cached = tokens.cachedToken?.(principal, link.target.id);
    if (cached !== undefined) return this.headersWith(cached, principal, json, drFor, traced);
    return tokens
      .tokenFor(principal, link.target.id)
      .then((token) => this.headersWith(token, principal, json, drFor, traced));
  }

  /** `token`: the internal token; undefined in the core's loopback test mode (no tokens at all). */
  private headersWith(
    token: string | undefined,
    principal: Principal,
    json: boolean,
    drFor?: string,
    traced?: Context | string,
  ): Record<string, string> {
    const h: Record<string, string> = { 'x-mcpgw-edge-instance': this.o.instance };
    if (json) h['content-type'] = 'application/json';
    if (drFor) h['x-mcpgw-dr-for'] = drFor;
    // The forward stage's span is the parent of the core's spans (W3C trace context across the hop, on
    // the request the token authenticates; the token itself stays cached across traces).
    const trace = typeof traced === 'object' ? traceHeadersOfContext(traced) : undefined;
    if (trace) Object.assign(h, trace);
    else if (json) {
      // Not sampled here: the core is told so (with the request's trace id, for its log lines) rather than
      // left to sample the request again by itself.
      const tp = unsampledTraceparent(traced as string | undefined);
      if (tp) h.traceparent = tp;
    }
    if (token !== undefined) h.authorization = `Bearer ${token}`;
    else
      h['x-mcpgw-test-principal'] =
        principal === ANONYMOUS || principal.authMethod === 'none'
          ? 'anonymous'
          : `${principal.tenant}:${principal.subject}`;
    return h;
  }

  /**
   * The cores a call may go to, best first: by placement (residency, home region) and what each serves
   * when a session's scope is given, else this region's cores (every core when it has none); within a
   * region by rendezvous hash of the session id; up first.
   */
  private order(wireId: string | undefined, route?: Route): Choice[] {
    const c: Choice[] = route ? this.placed(route, route.quiet) : this.candidates().map((link) => ({ link }));
    // One core (the common case of an edge in front of its region's core): nothing to rank.
    if (c.length === 1) return c;
    const tier = new Map<string, number>();
    for (const { link: l } of c) if (!tier.has(l.target.region)) tier.set(l.target.region, tier.size);
    const ranked =
      wireId === undefined
        ? c
        : (() => {
            // One hash per core, not one per comparison.
            const sc = new Map(c.map(({ link }) => [link, link.score(wireId)]));
            return [...c].sort(
              ({ link: a }, { link: b }) =>
                tier.get(a.target.region)! - tier.get(b.target.region)! || sc.get(b)! - sc.get(a)!,
            );
          })();
    return [
      ...ranked.filter((x) => x.link.up && !x.link.draining),
      ...ranked.filter((x) => x.link.up && x.link.draining),
      ...ranked.filter((x) => !x.link.up),
    ];
  }

  /**
   * Cores for a session of `scope` acting for `principal`: only regions its placement allows (never
   * another, on any path: direct, cross-region or failover); the home region first unless policy lets
   * this region serve; then this region; then the others (cross-region, and DR when a region is down).
   * With a DR pair for the first region: its cores, then its partner's, nothing else.
   */
  private placed(route: Route, quiet = false): Choice[] {
    const domain =
      route.scope !== 'aggregate' &&
      !route.scope.startsWith(VIRTUAL_SCOPE_PREFIX) &&
      this.isDomain(route.scope);
    const serving = this.links.filter((l) =>
      domain
        ? l.target.domain === route.scope
        : l.target.domain === undefined &&
          (route.scope === 'aggregate' ||
            route.scope.startsWith(VIRTUAL_SCOPE_PREFIX) ||
            l.info === undefined ||
            l.info.servers.includes(route.scope)),
    );
    // A core whose info is unknown may serve it; those that are known to serve it come first.
    const known = serving.filter((l) => l.info !== undefined);
    const pool = known.length > 0 ? [...known, ...serving.filter((l) => l.info === undefined)] : serving;
    const p = this.o.placement?.(route.principal, route.scope) ?? {};
    const allowed = p.allowed;
    const ok = allowed ? pool.filter((l) => allowed.includes(l.target.region)) : pool;
    if (ok.length === 0 && pool.length > 0) {
      const regions = [...new Set(pool.map((l) => l.target.region))].sort();
      const reason = `"${route.scope}" is served in ${regions.join(', ')}; tenant "${route.principal.tenant}" may use ${allowed!.length > 0 ? allowed!.join(', ') : 'no region'}`;
      if (quiet) throw new GatewayError('GW_RESIDENCY_DENIED', `Data residency: ${reason}`);
      this.o.log.warn(
        {
          audit: 'residency_denied',
          tenant: route.principal.tenant,
          subject: route.principal.subject,
          scope: route.scope,
          servedIn: regions,
          allowed,
        },
        'federation: call refused by data residency',
      );
      throw new GatewayError('GW_RESIDENCY_DENIED', `Data residency: ${reason}`);
    }
    const own = this.o.region;
    const first = p.home && !(p.nearerAllowed && ok.some((l) => l.target.region === own)) ? p.home : own;
    const rank = (l: CoreLink) => (l.target.region === first ? 0 : l.target.region === own ? 1 : 2);
    const ranked = [...ok].sort((a, b) => rank(a) - rank(b));
    const primary = ranked[0]?.target.region;
    // A domain's cores stand in for no region (DR pairs are between regions' own cores).
    const partner = primary === undefined || domain ? undefined : this.o.drPartners?.[primary];
    if (!partner) return ranked.map((link) => ({ link }));
    // Active-passive: the partner runs the primary's sessions only under its DR lease (it refuses
    // otherwise); a third region would run them under none.
    return [
      ...ranked.filter((l) => l.target.region === primary).map((link) => ({ link })),
      ...ranked.filter((l) => l.target.region === partner).map((link) => ({ link, drFor: primary! })),
    ];
  }

  private candidates(): CoreLink[] {
    const regional = this.links.filter((l) => l.target.domain === undefined);
    const own = regional.filter((l) => l.target.region === this.o.region);
    return own.length > 0 ? own : regional;
  }

  private async refreshInfo(links: readonly CoreLink[] = this.links): Promise<void> {
    await Promise.all(
      links.map(async (l) => {
        try {
          const res = await l.pool.request({
            path: '/internal/v1/info',
            method: 'GET',
            headers: await this.headers(l, this.self, false),
            headersTimeout: 5_000,
            bodyTimeout: 5_000,
          });
          const text = await res.body.text();
          if (res.statusCode !== 200)
            throw new Error(`info answered ${res.statusCode}: ${text.slice(0, 200)}`);
          l.info = JSON.parse(text) as CoreInfo;
          l.draining = l.info.draining === true;
        } catch (err) {
          if (this.closed) return;
          if (l.info)
            this.o.log.warn({ core: l.target.id, err: (err as Error).message }, 'core info not refreshed');
          else this.o.log.debug({ core: l.target.id, err: (err as Error).message }, 'core info not read yet');
          l.info = undefined;
        }
      }),
    );
  }

  /** The core's stream of messages unrelated to any request, for the sessions of this edge; reconnects. */
  private async followEvents(link: CoreLink): Promise<void> {
    let delay = 200;
    while (!this.closed && this.links.includes(link)) {
      try {
        const res = await link.pool.request({
          path: '/internal/v1/events',
          method: 'GET',
          headers: await this.headers(link, this.self, false),
          headersTimeout: 10_000,
          bodyTimeout: 0,
          signal: this.aborts.signal,
        });
        if (res.statusCode !== 200) {
          const text = await res.body.text();
          throw new Error(`events answered ${res.statusCode}: ${text.slice(0, 200)}`);
        }
        delay = 200;
        // A fresh stream from a core that is not draining (a restarted one): it takes calls again, and
        // what it serves is known now rather than at the next info poll.
        link.draining = res.headers[DRAINING_HEADER] === '1';
        if (!link.info) void this.refreshInfo([link]);
        for await (const line of ndjsonLines(res.body)) {
          const frame = line as { s?: string; m?: JsonRpcMessage; d?: 1 };
          if (frame.d === 1) {
            link.draining = true;
            this.o.log.info({ core: link.target.id }, 'core draining; new calls go to the other cores');
            continue;
          }
          if (frame.s === undefined || frame.m === undefined) continue; // heartbeat
          const s = this.sessions.get(frame.s);
          if (s) s.unrelated.send(frame.m);
          else
            this.o.log.debug(
              { sessionId: frame.s },
              'unrelated message for a session this edge no longer holds',
            );
        }
      } catch (err) {
        if (this.closed) return;
        this.o.log.debug(
          { core: link.target.id, err: (err as Error).message },
          'core events stream lost; reconnecting',
        );
      }
      await new Promise((r) => setTimeout(r, delay).unref());
      // A draining core is being restarted: its successor is noticed within a second.
      delay = Math.min(delay * 2, link.draining ? 1_000 : 5_000);
    }
  }
}

/** One client session as the edge forwards it. */
class RemoteSession implements CoreSessionHandle {
  private readonly base: string;
  private gone = false;

  constructor(
    private readonly remote: RemoteCore,
    readonly id: string,
    private readonly scope: string,
    /** The scope the core serves it under (a domain is its core's aggregate). */
    private readonly wire: string,
    private readonly principal: Principal,
    readonly unrelated: MessageSink,
    private readonly forget: () => void,
  ) {
    this.base = `/internal/v1/sessions/${encodeURIComponent(id)}/`;
    this.route = { scope, principal };
  }

  private readonly route: Route;

  async request(request: JsonRpcRequest, related: MessageSink): Promise<JsonRpcResponse | undefined> {
    const report = this.remote.onForwarded;
    if (!report) return this.forward(request, related);
    const started = performance.now();
    let core: CoreTarget | undefined;
    const call = { sessionId: this.id, principal: this.principal, scope: this.scope, request };
    try {
      const response = await this.forward(request, related, (t) => (core = t));
      report({ ...call, response, core, latencyMs: performance.now() - started });
      return response;
    } catch (error) {
      report({ ...call, response: undefined, error, core, latencyMs: performance.now() - started });
      throw error;
    }
  }

  private async forward(
    request: JsonRpcRequest,
    related: MessageSink,
    served?: (core: CoreTarget) => void,
  ): Promise<JsonRpcResponse | undefined> {
    const res = await this.remote.call(
      this.id,
      `${this.base}request`,
      // The client's request as it sent it, when nothing changed it since (json-text.ts).
      `{"scope":${JSON.stringify(this.wire)},"message":${jsonTextOf(request)}}`,
      this.principal,
      {
        route: this.route,
        retrySafe: this.safe(request),
        ...(served && { served }),
        trace: messageTrace(request) ?? messageTraceId(request),
      },
    );
    if (res.statusCode !== 200) throw await refusalOf(res);
    // The common case: the response alone, in one body of known length.
    if (res.headers['content-length'] !== undefined) {
      const bytes = await res.body.bytes();
      const frame = JSON.parse(bytes.toString('utf8')) as Frame;
      const response = this.learn(request, finalOf(frame, request));
      // The core wrote `{"r":<response>}\n`: the client gets the response's bytes as they came.
      if (response && isAnswerFrame(bytes) && onlyResponse(frame))
        keepJsonText(response, bytes.subarray(ANSWER_HEAD.length, bytes.length - 2));
      return response;
    }
    for await (const line of ndjsonLines(res.body)) {
      const f = line as Frame;
      if (f.m !== undefined) related.send(f.m);
      else return this.learn(request, finalOf(f, request));
    }
    throw new GatewayError('GW_CORE_UNAVAILABLE', 'The core ended the answer without a response');
  }

  /** Tools whose annotations say a repeat is harmless (readOnlyHint, idempotentHint), from tools/list. */
  private readonly idempotent = new Set<string>();

  private safe(request: JsonRpcRequest): boolean {
    if (SAFE_METHODS.has(request.method)) return true;
    const name = (request.params as { name?: unknown } | undefined)?.name;
    return request.method === 'tools/call' && typeof name === 'string' && this.idempotent.has(name);
  }

  private learn(request: JsonRpcRequest, res: JsonRpcResponse | undefined): JsonRpcResponse | undefined {
    if (request.method !== 'tools/list' || !res || !('result' in res)) return res;
    const tools = (res.result as { tools?: unknown }).tools;
    if (Array.isArray(tools))
      for (const t of tools as Array<{ name?: unknown; annotations?: Record<string, unknown> }>) {
        if (typeof t?.name !== 'string') continue;
        const a = t.annotations ?? {};
        if (a.readOnlyHint === true || a.idempotentHint === true) this.idempotent.add(t.name);
        else this.idempotent.delete(t.name);
      }
    return res;
  }

  notify(notification: JsonRpcNotification): void {
    this.fireAndForget('notify', { scope: this.wire, message: notification });
  }

  respond(response: JsonRpcResponse): boolean {
    // The core holds the pending request whichever edge the answer arrived at: never another edge's.
    this.fireAndForget('respond', { message: response });
    return true;
  }

  async close(): Promise<void> {
    await this.end('close');
  }

  async detach(): Promise<void> {
    await this.end('detach');
  }

  private async end(op: 'close' | 'detach'): Promise<void> {
    if (this.gone) return;
    this.gone = true;
    this.forget();
    let res: CoreAnswer;
    try {
      res = await this.remote.call(
        this.id,
        `${this.base}${op}`,
        JSON.stringify({ scope: this.wire }),
        this.principal,
        { route: { ...this.route, quiet: true } },
      );
    } catch (err) {
      // Residency never let the session reach a core, or no core is left to hold it: nothing to end.
      if (
        err instanceof GatewayError &&
        (err.code === 'GW_RESIDENCY_DENIED' || err.code === 'GW_CORE_UNAVAILABLE')
      )
        return;
      throw err;
    }
    await res.body.dump();
  }

  private fireAndForget(op: string, body: object): void {
    this.remote
      .call(this.id, `${this.base}${op}`, JSON.stringify(body), this.principal, { route: this.route })
      .then(
        (res) => res.body.dump(),
        () => {},
      );
  }
}

/** What a session call is for: placement of its scope and caller. */
interface Route {
  scope: string;
  principal: Principal;
  /** A refusal by residency is not logged (ending a session residency never let reach a core). */
  quiet?: boolean;
}

type Frame = { m?: JsonRpcMessage; r?: JsonRpcResponse; c?: 1 };
/** How the core's frame of a final response begins (internal-api.ts, NdjsonAnswer.finish). */
const ANSWER_HEAD = Buffer.from('{"r":');

/** `{"r":` ... `}\n` */
function isAnswerFrame(b: Buffer): boolean {
  const n = b.length;
  return (
    n > ANSWER_HEAD.length + 2 &&
    b[n - 2] === 0x7d &&
    b[n - 1] === 0x0a &&
    b.compare(ANSWER_HEAD, 0, ANSWER_HEAD.length, 0, ANSWER_HEAD.length) === 0
  );
}

/** The frame holds the response and nothing else (so that its text is the frame's but for the head). */
function onlyResponse(f: Frame): boolean {
  for (const k in f) if (k !== 'r') return false;
  return true;
}

function finalOf(f: Frame, request: JsonRpcRequest): JsonRpcResponse | undefined {
  if (f.c) return undefined;
  if (f.r && typeof f.r === 'object') return f.r;
  throw new GatewayError('GW_CORE_UNAVAILABLE', `The core sent no response to ${request.method}`);
}

/** The core's refusal as the same gateway error (its code travels in data.code). */
async function refusalOf(res: CoreAnswer): Promise<GatewayError> {
  const text = await res.body.text();
  let code: string | undefined;
  let message: string | undefined;
  let detail: Record<string, unknown> | undefined;
  try {
    const e = (JSON.parse(text) as { error?: { message?: string; data?: { code?: string } } }).error;
    ({ code, ...detail } = e?.data ?? {});
    message = e?.message;
  } catch {
    // not the core's JSON: described below
  }
  if (code && code in ERRORS)
    return new GatewayError(
      code as ErrorCode,
      message,
      detail && Object.keys(detail).length > 0 ? detail : undefined,
    );
  return new GatewayError('GW_CORE_UNAVAILABLE', `The core answered ${res.statusCode}`);
}

function unavailable(link: CoreLink | undefined, err: unknown): GatewayError {
  return new GatewayError(
    'GW_CORE_UNAVAILABLE',
    `No core could be reached${link ? ` (${link.target.id})` : ''}: ${(err as Error)?.message ?? 'no core configured'}`,
    undefined,
    { cause: err },
  );
}

async function* ndjsonLines(body: AsyncIterable<Buffer | string>): AsyncGenerator<unknown> {
  let buf = '';
  for await (const chunk of body) {
    buf += typeof chunk === 'string' ? chunk : chunk.toString('utf8');
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (line.length > 0) yield JSON.parse(line);
    }
  }
  if (buf.trim().length > 0) yield JSON.parse(buf);
}

/** The session's principal key back as a Principal, for endpoints that pass only the key. */
function principalFromKey(key: string): Principal {
  if (key === 'anonymous') return ANONYMOUS;
  const i = key.indexOf(':');
  return Object.freeze({
    subject: i >= 0 ? key.slice(i + 1) : key,
    tenant: i >= 0 ? key.slice(0, i) : 'default',
    roles: Object.freeze([]) as readonly string[],
    scopes: Object.freeze([]) as readonly string[],
    authMethod: 'internal',
  });
}
