/**
 * A configured server as a pool of replicas: HTTP replicas (`replicas:`; `url:` is a pool of one) or
 * stdio processes (`processes: N`). Each replica is an ordinary backend (core/backends) plus its health,
 * its circuit breaker and its load. The pool decides where each call goes and what happens when it fails:
 *
 * - Session-bound backends (Streamable HTTP, legacy SSE): a client session's backend session lives on one
 *   replica, chosen when it opens and recorded with it (SessionStore) so other gateway replicas continue
 *   there. When that replica dies or is ejected, the session moves: a new backend session is opened on a
 *   healthy replica with the client's capabilities, and the call is retried there if that is safe.
 * - Shared backends (stdio processes, stateless backends): every call picks a replica.
 * - A call is retried only when it is safe (read-only or idempotent tool, or provably never sent), within
 *   the caller's deadline and the retry budget, on another replica, after a jittered backoff. A call that
 *   may have run and is not safe to repeat fails with GW_BACKEND_OUTCOME_UNKNOWN.
 * - Read-only tools may be answered from the response cache, also while every replica fails.
 */
import type { Context } from '@opentelemetry/api';
import { GatewayError, toRpcError } from '../../shared/errors.js';
import type { ServerConfig, ToolPolicy } from '../../shared/config/schema.js';
import type { JsonObject, JsonRpcRequest, JsonRpcResponse } from '../../shared/mcp/jsonrpc.js';
import type { Logger } from '../../shared/log.js';
import type { BreakerStateStore, ReplicaVerdict } from '../../shared/ports/breaker-state.js';
import type { BackendSessionRecord } from '../../shared/ports/session-store.js';
import { LATEST_PROTOCOL_VERSION } from '../../shared/mcp/versions.js';
import {
  CallAbortedError,
  type BackendClient,
  type CallContext,
  type CallHandle,
  type CallOptions,
} from '../backends/backend-client.js';
import {
  createBackend,
  GATEWAY_CLIENT_INFO,
  type BackendEvents,
  type BackendState,
  type ServerBackend,
  type SessionOwner,
} from '../backends/server-backend.js';
import { createBalancer, type Balanced, type Balancer } from './balancer.js';
import { outcomeOf, type CallOutcome } from './call-outcome.js';
import { isBreakerOpen, ReplicaBreaker, ReplicaFailure } from './replica-breaker.js';
import { ReplicaHealth } from './replica-health.js';
import { backoffMs, RetryBudget } from './retry-budget.js';
import {
  filterResult,
  META_CACHE,
  META_CACHED,
  META_DEADLINE,
  requestedFields,
  resultHints,
  withoutGatewayMeta,
  type ToolResponseCache,
} from './tool-cache.js';
import { serverId } from '../../shared/mcp/server-versions.js';

/** What the pools of one core share. */
export interface PoolDeps {
  log: Logger;
  breakerState: BreakerStateStore;
  cache: ToolResponseCache;
  /** Names this core instance in the verdicts it publishes. */
  instanceId: string;
  /** The tools a backend client lists (the core's catalog cache), for their annotations. */
  listTools(client: BackendClient): Promise<JsonObject[]>;
  /**
   * The quota budgets of an attempt (quotas' per-replica `server` limit, and the caller's per-tool limit
   * while `tool` is given): asked before each attempt on a replica, all or nothing; undefined admits (and
   * counts) it. A refusal with `reroute` (the replica's budget is spent) sends the pool to another
   * replica, and is answered only when none can serve; any other refusal is answered at once. Absent: no
   * quotas.
   */
  replicaQuota?(
    server: string,
    replica: string,
    ask: {
      principal: string;
      tool?: string;
      trace?: Context | undefined;
      /** The client's request: what the HTTP layer left to decide with it rides on it (quotas). */
      request?: object;
    },
  ): Promise<{ error: GatewayError; reroute: boolean } | undefined>;
  random?: () => number;
}

/** The caller of a pooled call: the client session (its principal scopes cached results). */
export interface PoolOwner extends SessionOwner {
  readonly principal: string;
}

export interface PoolCall {
  owner: PoolOwner;
  method: string;
  params: JsonObject | undefined;
  /** Handed to the backend client, so that what the backend sends about the call finds its caller. */
  context: CallContext;
  /** The call's route stage, the parent of the quota stage; undefined when the call is not traced. */
  trace?: Context | undefined;
  /** The client's request the call serves (handed to `replicaQuota`). */
  request?: object;
  /** Filled with the cancellation of whatever attempt is current. */
  handle: CallHandle;
  /** Rewrites params for the client an attempt uses (progress tokens); release when the attempt ends. */
  prepare(
    client: BackendClient,
    params: JsonObject | undefined,
  ): { params: JsonObject | undefined; release(): void };
  /**
   * Runs one attempt on the client the pool chose (default: `client.call`). The session adds what a call
   * needs beyond the pool here: trace context, and the input rounds of a 2026 backend.
   */
  attempt?(
    client: BackendClient,
    params: JsonObject | undefined,
    options: CallOptions,
  ): Promise<JsonRpcResponse>;
}

/** Owner ids of the pool's own probe sessions (never recorded in the SessionStore). */
const PROBE_PREFIX = 'mcpgw-health:';
/** How long learned tool annotations are trusted before being read again. */
const ANNOTATIONS_TTL_MS = 60_000;
/** No retry is started with less time than this left before the deadline. */
const MIN_ATTEMPT_MS = 5;

class Replica implements Balanced {
  inflight = 0;
  calls = 0;
  failures = 0;
  lastUsedAt = Date.now();
  /** Process exits within the restart window (stdio). */
  exits: number[] = [];
  givenUp = false;
  reaped = false;
  hadClient = false;
  /** An active check is out: the next round skips this replica rather than pile up probes. */
  checking = false;
  /** Calls in flight by context, with the client session each belongs to (stdio routing). */
  readonly active = new Map<CallContext, string>();

  constructor(
    readonly id: string,
    readonly index: number,
    readonly weight: number,
    public inner: ServerBackend,
    readonly health: ReplicaHealth,
    readonly breaker: ReplicaBreaker,
  ) {}

  get ewmaMs(): number {
    return this.health.ewmaMs;
  }

  effectiveWeight(now: number): number {
    return this.weight * this.health.ramp(now);
  }

  /** Up as far as its own backend knows (process running, last connection worked). */
  get innerUp(): boolean {
    if (this.givenUp || this.reaped) return false;
    return this.inner.shared
      ? this.inner.existingClientFor(PROBE_OWNER) !== undefined
      : this.inner.status().state !== 'stopped';
  }
}

const PROBE_OWNER: SessionOwner = {
  id: `${PROBE_PREFIX}shared`,
  protocolVersion: LATEST_PROTOCOL_VERSION,
  clientCapabilities: {},
  clientInfo: GATEWAY_CLIENT_INFO,
};

export class ServerPool implements ServerBackend {
  readonly replicas: Replica[] = [];
  private readonly balancer: Balancer;
  private readonly budget: RetryBudget;
  /** Session-bound backends: the replica each client session's backend session lives on. */
  private readonly assigned = new Map<string, Replica>();
  private readonly annotations = new Map<string, { at: number; value: JsonObject | undefined }>();
  private annotationsAt = 0;
  private annotationsLoading: Promise<JsonObject[]> | undefined;
  private available = false;
  private healthTimer: NodeJS.Timeout | undefined;
  private reapTimer: NodeJS.Timeout | undefined;
  private unwatch: (() => void) | undefined;
  private closed = false;
  private readonly random: () => number;
  readonly counters = {
    calls: 0,
    retries: 0,
    migrations: 0,
    outcomeUnknown: 0,
    staleServed: 0,
    fastFails: 0,
    /** Attempts sent elsewhere (or refused) because a replica's `server` budget was spent. */
    quotaReroutes: 0,
  };

  constructor(
    readonly config: ServerConfig,
    private readonly events: BackendEvents,
    private readonly deps: PoolDeps,
  ) {
    this.random = deps.random ?? Math.random;
    this.balancer = createBalancer(config.balancer, this.random);
    this.budget = new RetryBudget(config.retry.budgetPercent, config.retry.budgetBurst);
    const slots =
      config.transport === 'stdio'
        ? Array.from({ length: config.processes }, (_, i) => ({ id: `#${i}`, weight: 1, config }))
        : config.replicas.map((r) => ({ id: r.url, weight: r.weight, config: { ...config, url: r.url } }));
    slots.forEach((s, i) => {
      const health = new ReplicaHealth({
        ...config.health,
        ejectMs: config.breaker.resetTimeoutMs,
        activeChecks: config.health.intervalMs > 0,
      });
      const breaker = new ReplicaBreaker(`${serverId(config)}/${s.id}`, config.breaker, (state, remote) =>
        this.breakerChanged(replica, state, remote),
      );
      const replica: Replica = new Replica(s.id, i, s.weight, undefined as never, health, breaker);
      replica.inner = createBackend(s.config, this.replicaEvents(replica), deps.log);
      this.replicas.push(replica);
    });
  }

  get name(): string {
    return serverId(this.config);
  }

  get shared(): boolean {
    return this.replicas[0]!.inner.shared;
  }

  private get log(): Logger {
    return this.deps.log;
  }

  // ---------------------------------------------------------------- ServerBackend

  status(): { state: BackendState; error?: string; pool: JsonObject } {
    const now = Date.now();
    const states = this.replicas.map((r) => r.inner.status());
    let state: BackendState;
    if (this.closed) state = 'stopped';
    else if (this.canServeAny(now)) state = 'ready';
    else if (states.some((s) => s.state === 'starting')) state = 'starting';
    else state = states.some((s) => s.state === 'restarting') ? 'restarting' : 'failed';
    const error = state === 'ready' ? undefined : states.find((s) => s.error)?.error;
    return { state, ...(error !== undefined && { error }), pool: this.details(now) };
  }

  /** What operators and metrics see of the pool. */
  details(now = Date.now()): JsonObject {
    return {
      balancer: this.config.balancer,
      replicas: this.replicas.map((r) => ({
        id: r.id,
        weight: r.weight,
        effectiveWeight: Math.round(r.effectiveWeight(now) * 100) / 100,
        state: r.inner.status().state,
        healthy: r.health.healthy && !r.givenUp,
        score: r.givenUp ? 0 : r.health.score(now),
        slowStart: r.health.inSlowStart(now),
        breaker: r.breaker.state,
        inflight: r.inflight,
        calls: r.calls,
        failures: r.failures,
        ewmaMs: Math.round(r.health.ewmaMs * 100) / 100,
        ejections: r.health.ejections,
        recoveries: r.health.recoveries,
        breakerOpens: r.breaker.opens,
        ...(r.health.lastError !== undefined && { lastError: r.health.lastError }),
        ...(r.givenUp && { givenUp: true }),
        ...(r.reaped && { reaped: true }),
      })),
      sessions: this.assigned.size,
      retryBudget: {
        available: this.budget.available,
        granted: this.budget.granted,
        refused: this.budget.refused,
      },
      ...this.counters,
    };
  }

  async start(): Promise<void> {
    try {
      for (const v of await this.deps.breakerState.current()) this.onVerdict(v);
      this.unwatch = await this.deps.breakerState.watch((v) => this.onVerdict(v));
    } catch (err) {
      this.log.warn({ server: this.name, err: (err as Error).message }, 'shared breaker state unreachable');
    }
    await Promise.all(this.replicas.map((r) => r.inner.start()));
    const now = Date.now();
    for (const r of this.replicas) {
      r.hadClient = r.inner.shared && r.innerUp;
      // An HTTP replica whose first probe failed starts out; a health check (or the lapse) brings it in.
      if (!r.inner.shared && r.inner.status().state === 'failed') {
        r.health.lastError = r.inner.status().error;
        r.health.eject(now);
      }
    }
    this.available = this.canServeAny(Date.now());
    const hc = this.config.health;
    if (hc.intervalMs > 0) {
      this.healthTimer = setInterval(() => void this.checkAll(), hc.intervalMs);
      this.healthTimer.unref();
    }
    if (this.config.transport === 'stdio' && this.config.pool.idleTimeoutMs > 0) {
      const every = Math.max(50, Math.min(this.config.pool.idleTimeoutMs / 2, 10_000));
      this.reapTimer = setInterval(() => void this.reapIdle(), every);
      this.reapTimer.unref();
    }
  }

  /**
   * The client for uses other than a pooled call (catalogs, initialize, subscriptions): the session's own
   * replica (HTTP), or the first usable process of a shared pool, so that per-client state the gateway
   * keeps for a shared backend (subscriptions, log level) lives on one process.
   */
  async clientFor(owner: SessionOwner): Promise<BackendClient> {
    const tried = new Set<Replica>();
    for (;;) {
      const r = this.shared
        ? this.replicas.find((x) => !tried.has(x) && this.usable(x, Date.now()))
        : this.choose(owner, tried);
      if (!r) throw this.noReplica();
      tried.add(r);
      try {
        return await r.inner.clientFor(owner);
      } catch (err) {
        this.failed(r, (err as Error).message, 'not-sent');
        if (!this.shared) this.unassign(owner, r);
        if (tried.size >= this.replicas.length) throw err;
      }
    }
  }

  existingClientFor(owner: SessionOwner): BackendClient | undefined {
    if (this.shared) {
      for (const r of this.replicas) {
        const c = r.innerUp ? r.inner.existingClientFor(owner) : undefined;
        if (c) return c;
      }
      return undefined;
    }
    const r = this.assigned.get(owner.id);
    return r && this.usable(r, Date.now()) ? r.inner.existingClientFor(owner) : undefined;
  }

  async adopt(owner: SessionOwner, record: BackendSessionRecord): Promise<boolean> {
    if (this.shared) return false;
    const r =
      this.replicas.find((x) => x.id === record.replica) ?? (record.replica ? undefined : this.replicas[0]);
    if (!r || !(await r.inner.adopt(owner, record))) return false;
    this.assigned.set(owner.id, r);
    return true;
  }

  async release(owner: SessionOwner, options?: { keepSession?: boolean }): Promise<void> {
    const r = this.assigned.get(owner.id);
    this.assigned.delete(owner.id);
    if (r) await r.inner.release(owner, options);
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.healthTimer);
    clearInterval(this.reapTimer);
    this.unwatch?.();
    for (const r of this.replicas) r.breaker.shutdown();
    await Promise.all(this.replicas.map((r) => r.inner.close()));
  }

  // ---------------------------------------------------------------- calls

  /**
   * Sends one request through the pool and resolves to the backend's answer or a gateway error (the
   * caller restores its id). Rejects with CallAbortedError when the client cancelled.
   */
  async call(call: PoolCall): Promise<JsonRpcResponse> {
    const start = Date.now();
    this.counters.calls++;
    this.budget.deposit();
    const tool = call.method === 'tools/call' ? String(call.params?.name ?? '') : undefined;
    const policy: ToolPolicy | undefined = tool !== undefined ? this.config.tools[tool] : undefined;
    const timeoutMs = policy?.timeoutMs ?? this.config.timeouts.requestMs;
    const callerDeadline = (call.params?._meta as JsonObject | undefined)?.[META_DEADLINE];
    const deadline = Math.min(
      start + timeoutMs,
      typeof callerDeadline === 'number' && callerDeadline > 0 ? callerDeadline : Infinity,
    );
    const params = withoutGatewayMeta(call.params);
    const cache = tool !== undefined ? this.cachePlan(call, tool, policy) : undefined;
    if (cache?.key && cache.read) {
      const hit = await this.deps.cache.lookup(cache.key);
      if (hit && hit.freshUntil > Date.now()) {
        this.deps.cache.counters.hits++;
        if (hit.negative) this.deps.cache.counters.negativeHits++;
        return this.fromCache(hit.result, call.params, false);
      }
      this.deps.cache.counters.misses++;
    }

    const tried = new Set<Replica>();
    let attempts = 0;
    let last: JsonRpcResponse | undefined;
    /** Replicas whose budget was spent: answered only when no other replica could serve. */
    let spent: GatewayError | undefined;
    /** The caller's per-tool budget is charged once per call, with its first admitted attempt. */
    let toolCharged = tool === undefined;
    for (;;) {
      const now = Date.now();
      if (deadline - now < MIN_ATTEMPT_MS) {
        last = this.timeoutError(tool ?? call.method, timeoutMs);
        break;
      }
      const r = this.choose(call.owner, tried, true);
      if (!r) {
        if (!last && spent) last = toRpcError(0, spent);
        if (!last) {
          this.counters.fastFails++;
          last = toRpcError(0, this.noReplica());
        }
        break;
      }
      tried.add(r);
      if (this.deps.replicaQuota) {
        const refusal = await this.deps.replicaQuota(this.name, r.id, {
          principal: call.owner.principal,
          ...(!toolCharged && { tool }),
          trace: call.trace,
          request: call.request,
        });
        if (refusal && !refusal.reroute) {
          if (!this.shared) this.unassign(call.owner, r);
          return toRpcError(0, refusal.error);
        }
        if (refusal) {
          // This replica's budget is spent: another one may serve (a session moves as for a failure).
          this.counters.quotaReroutes++;
          const wait = (e: GatewayError) => Number(e.detail?.retryAfterMs ?? Infinity);
          if (!spent || wait(refusal.error) < wait(spent)) spent = refusal.error;
          continue;
        }
        toolCharged = true;
      }
      let client: BackendClient;
      r.inflight++;
      try {
        client = await r.inner.clientFor(call.owner);
      } catch (err) {
        r.inflight--;
        this.failed(r, (err as Error).message, 'not-sent');
        if (!this.shared) this.unassign(call.owner, r);
        last = toRpcError(0, err);
        continue; // nothing was sent: another replica may take it at no risk
      }
      if (tool !== undefined) {
        // The cache needs to know before the call; retries only after a failure, so the tool list is
        // read in the background and the answer is there (or known from earlier) when a failure asks.
        if (cache && !cache.key) {
          if ((await this.safeToRepeat(tool, policy, client)) === 'read-only')
            cache.key = this.cacheKey(call, tool);
        } else void this.safeToRepeat(tool, policy, client).catch(() => {});
      }
      const attemptStart = Date.now();
      const prepared = call.prepare(client, params);
      r.calls++;
      r.lastUsedAt = attemptStart;
      if (this.shared) r.active.set(call.context, call.owner.id);
      let res: JsonRpcResponse;
      let outcome: CallOutcome;
      let refused = false;
      try {
        attempts++;
        res = await r.breaker.fire(async () => {
          const options: CallOptions = {
            context: call.context,
            handle: call.handle,
            timeoutMs: Math.max(1, deadline - Date.now()),
          };
          const got = call.attempt
            ? await call.attempt(client, prepared.params, options)
            : await client.call(call.method, prepared.params, options);
          if (outcomeOf(got) !== 'answered') throw new ReplicaFailure(got);
          return got;
        });
        outcome = 'answered';
      } catch (err) {
        if (err instanceof CallAbortedError) throw err;
        if (err instanceof ReplicaFailure) {
          res = err.response;
          outcome = outcomeOf(res);
        } else if (isBreakerOpen(err)) {
          attempts--; // refused before sending: not an attempt
          refused = true;
          res = toRpcError(0, this.noReplica(`the breaker of replica ${r.id} is open`));
          outcome = 'not-sent';
        } else throw err;
      } finally {
        r.inflight--;
        r.active.delete(call.context);
        prepared.release();
      }
      const latency = Date.now() - attemptStart;
      if (outcome === 'answered') {
        r.health.callSucceeded(latency);
        if (cache?.key && !('error' in res)) void this.storeCached(cache.key, res.result, cache, tool!);
        return res;
      }
      if (!refused) this.failed(r, errorMessage(res), outcome, latency);
      if (!this.shared && outcome !== 'timeout') this.unassign(call.owner, r);
      last = res;
      if (outcome === 'timeout') break; // the deadline is spent: the backend was told to stop
      const safe = tool === undefined ? true : await this.safeToRepeat(tool, policy, client);
      // A protocol error is an answer, if a broken one: it is not repeated unless safe, but keeps its code.
      if (outcome === 'maybe-sent' && !safe && errorCode(res) === 'GW_BACKEND_PROTOCOL_ERROR') break;
      if (outcome === 'maybe-sent' && !safe) {
        this.counters.outcomeUnknown++;
        last = toRpcError(
          0,
          new GatewayError(
            'GW_BACKEND_OUTCOME_UNKNOWN',
            `backend "${this.name}" failed after ${tool ? `tool "${tool}"` : call.method} was sent (${errorMessage(res)}); it may or may not have run, and it is not repeated because it is not marked read-only or idempotent`,
            { server: this.name, replica: r.id, ...(tool !== undefined && { tool }) },
          ),
        );
        break;
      }
      if (refused) continue; // the breaker refused: another replica, without spending a retry
      if (attempts >= this.config.retry.maxAttempts) break;
      if (!this.budget.withdraw()) {
        this.log.debug({ server: this.name }, 'retry budget exhausted');
        break;
      }
      this.counters.retries++;
      const wait = backoffMs(
        attempts,
        this.config.retry.initialBackoffMs,
        this.config.retry.maxBackoffMs,
        this.random,
      );
      if (wait > 0 && Date.now() + wait + MIN_ATTEMPT_MS < deadline) await this.pause(wait, call.handle);
    }
    if (cache?.key) {
      const stale = await this.deps.cache.lookup(cache.key);
      if (stale && !stale.negative && stale.freshUntil + cache.staleIfErrorMs > Date.now()) {
        this.deps.cache.counters.staleServed++;
        this.counters.staleServed++;
        return this.fromCache(stale.result, call.params, true);
      }
    }
    return last!;
  }

  /** Waits between attempts; a client cancellation during the wait ends the call. */
  private pause(ms: number, handle: CallHandle): Promise<void> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(resolve, ms);
      handle.cancel = () => {
        clearTimeout(t);
        reject(new CallAbortedError());
      };
    });
  }

  private timeoutError(what: string, ms: number): JsonRpcResponse {
    return toRpcError(
      0,
      new GatewayError(
        'GW_BACKEND_TIMEOUT',
        `backend "${this.name}" did not answer ${what} within ${ms} ms`,
        {
          server: this.name,
        },
      ),
    );
  }

  private noReplica(why?: string): GatewayError {
    if (!this.replicas.some((r) => r.innerUp)) {
      // Nothing is running at all: the backend's own account of why (failed to start, restarting).
      const st = this.replicas.map((r) => r.inner.status());
      const error = st.find((s) => s.error)?.error;
      return new GatewayError(
        'GW_BACKEND_UNAVAILABLE',
        `backend "${this.name}" is ${st[0]?.state ?? 'failed'}${error ? `: ${error}` : ''}`,
        { server: this.name, state: st[0]?.state },
      );
    }
    return new GatewayError(
      'GW_BACKEND_CIRCUIT_OPEN',
      `no replica of backend "${this.name}" can take calls now${why ? ` (${why})` : ''}`,
      {
        server: this.name,
        replicas: this.replicas.map((r) => ({
          id: r.id,
          breaker: r.breaker.state,
          healthy: r.health.healthy,
        })),
      },
    );
  }

  // ---------------------------------------------------------------- choosing a replica

  /** May take calls now: up, healthy (or its ejection lapsed), breaker admitting. */
  private usable(r: Replica, now: number): boolean {
    return r.innerUp && r.health.usable(now) && r.breaker.admits;
  }

  private canServeAny(now: number): boolean {
    return this.replicas.some((r) => r.innerUp && r.health.usable(now));
  }

  /**
   * The replica for the next attempt: a session-bound owner's own replica while it is usable (else the
   * session moves), otherwise one the balancer picks among the usable ones not tried yet.
   */
  private choose(owner: SessionOwner, tried: Set<Replica>, panic = false): Replica | undefined {
    const now = Date.now();
    if (!this.shared) {
      const mine = this.assigned.get(owner.id);
      if (mine && !tried.has(mine) && this.usable(mine, now)) return mine;
      if (mine) this.unassign(owner, mine);
    }
    let candidates = this.replicas.filter((r) => !tried.has(r) && this.usable(r, now));
    // Panic routing (as Envoy does): when health checks have every replica out, they are more likely
    // wrong than every replica is dead, so a call's first attempt goes to any replica whose breaker admits.
    if (candidates.length === 0 && panic && tried.size === 0)
      candidates = this.replicas.filter((r) => r.innerUp && r.breaker.admits);
    if (candidates.length === 0) return undefined;
    if (this.config.transport === 'stdio') this.reviveIfBusy(candidates);
    const r = this.balancer.pick(candidates, now);
    if (r && !this.shared) {
      this.assigned.set(owner.id, r);
      if (tried.size > 0) this.counters.migrations++;
    }
    return r;
  }

  /** Lets go of `owner`'s backend session on `r` (the replica failed it): the next use opens elsewhere. */
  private unassign(owner: SessionOwner, r: Replica): void {
    if (this.assigned.get(owner.id) !== r) return;
    this.assigned.delete(owner.id);
    void r.inner.release(owner).catch(() => {});
  }

  // ---------------------------------------------------------------- safety and cache

  /** 'read-only', 'idempotent' or false: whether a call of `tool` may be sent twice. */
  private async safeToRepeat(
    tool: string,
    policy: ToolPolicy | undefined,
    client: BackendClient,
  ): Promise<'read-only' | 'idempotent' | false> {
    if (policy?.readOnly === true) return 'read-only';
    if (policy?.idempotent === true) return 'idempotent';
    if (policy?.readOnly === false && policy?.idempotent === false) return false;
    if (!this.config.trustAnnotations) return false;
    const a = await this.annotationsOf(tool, client);
    if (policy?.readOnly !== false && a?.readOnlyHint === true) return 'read-only';
    if (policy?.idempotent !== false && a?.idempotentHint === true) return 'idempotent';
    return false;
  }

  private async annotationsOf(tool: string, client: BackendClient): Promise<JsonObject | undefined> {
    const now = Date.now();
    const known = this.annotations.get(tool);
    if (known && now - known.at < ANNOTATIONS_TTL_MS) return known.value;
    if (this.annotationsLoading) {
      await this.annotationsLoading.catch(() => {});
      return this.annotations.get(tool)?.value;
    }
    if (now - this.annotationsAt >= ANNOTATIONS_TTL_MS || !known) {
      try {
        const loading = this.deps.listTools(client);
        this.annotationsLoading = loading;
        const tools = await loading.finally(() => (this.annotationsLoading = undefined));
        this.annotationsAt = now;
        for (const t of tools)
          this.annotations.set(String(t.name), { at: now, value: t.annotations as JsonObject | undefined });
        if (!this.annotations.has(tool)) this.annotations.set(tool, { at: now, value: undefined });
      } catch {
        return known?.value; // unknown: not safe
      }
    }
    return this.annotations.get(tool)?.value;
  }

  /** Whether (and how) this call uses the cache; the key waits for the tool to be known read-only. */
  private cachePlan(
    call: PoolCall,
    tool: string,
    policy: ToolPolicy | undefined,
  ): { key?: string; read: boolean; ttlMs: number; staleIfErrorMs: number } | undefined {
    const ttlMs = policy?.cacheTtlMs ?? this.config.cache.ttlMs;
    if (!(ttlMs > 0)) return undefined;
    if (policy?.readOnly === false) return undefined;
    const trusted = this.config.trustAnnotations && this.annotations.get(tool)?.value?.readOnlyHint === true;
    const read = (call.params?._meta as JsonObject | undefined)?.[META_CACHE] !== 'no-cache';
    const plan = { read, ttlMs, staleIfErrorMs: policy?.staleIfErrorMs ?? this.config.cache.staleIfErrorMs };
    return policy?.readOnly === true || trusted ? { ...plan, key: this.cacheKey(call, tool) } : plan;
  }

  private cacheKey(call: PoolCall, tool: string): string {
    return this.deps.cache.key(
      this.name,
      tool,
      call.params?.arguments,
      this.config.cache.scope,
      call.owner.principal,
    );
  }

  private async storeCached(
    key: string,
    result: JsonObject,
    plan: { ttlMs: number; staleIfErrorMs: number },
    tool: string,
  ): Promise<void> {
    const hints = resultHints(result);
    if (hints.noStore) return;
    const negative = result.isError === true;
    let ttl = negative ? Math.min(this.config.cache.negativeTtlMs, plan.ttlMs) : plan.ttlMs;
    if (hints.ttlMs !== undefined) ttl = Math.min(ttl, hints.ttlMs);
    if (!(ttl > 0)) return;
    const now = Date.now();
    try {
      await this.deps.cache.store(
        key,
        { result, storedAt: now, freshUntil: now + ttl, ...(negative && { negative }) },
        ttl + (negative ? 0 : plan.staleIfErrorMs),
      );
    } catch (err) {
      this.log.debug({ server: this.name, tool, err: (err as Error).message }, 'could not cache a result');
    }
  }

  private fromCache(result: JsonObject, params: JsonObject | undefined, stale: boolean): JsonRpcResponse {
    const fields = requestedFields(params);
    const shaped = fields ? filterResult(result, fields) : result;
    const meta = {
      ...((shaped._meta as JsonObject | undefined) ?? {}),
      [META_CACHED]: stale ? 'stale' : 'fresh',
    };
    return { jsonrpc: '2.0', id: 0, result: { ...shaped, _meta: meta } };
  }

  // ---------------------------------------------------------------- health

  /** A failure on `r`'s account: passive health, and the breaker has counted it already. */
  private failed(r: Replica, message: string, _outcome: CallOutcome, latencyMs?: number): void {
    r.failures++;
    if (r.health.callFailed(message, Date.now(), latencyMs)) this.ejected(r, 'unhealthy');
  }

  private ejected(r: Replica, reason: string): void {
    this.log.warn({ server: this.name, replica: r.id, reason, error: r.health.lastError }, 'replica ejected');
    void this.publish(r, 'open', reason, r.health.ejectedUntil);
    this.availabilityMaybeChanged();
  }

  private recovered(r: Replica): void {
    this.log.info({ server: this.name, replica: r.id }, 'replica recovered; slow start');
    void this.publish(r, 'closed', 'recovered', Date.now());
    this.availabilityMaybeChanged();
  }

  /** One round of active checks: an MCP ping per replica, within the check timeout. */
  async checkAll(): Promise<void> {
    if (this.closed) return;
    await Promise.all(this.replicas.map((r) => this.check(r)));
  }

  private async check(r: Replica): Promise<void> {
    if (r.givenUp || r.reaped || r.checking) return;
    const now = Date.now();
    r.checking = true;
    const ok = await this.ping(r).finally(() => (r.checking = false));
    if (this.closed) return;
    const flipped = r.health.checked(ok === true, now, ok === true ? undefined : ok);
    if (flipped === 'ejected') this.ejected(r, 'failed health checks');
    else if (flipped === 'recovered') {
      // A replica that answers pings again gets a fresh breaker too: its old failures are history.
      if (r.breaker.state !== 'closed') r.breaker.applyRemote('closed');
      this.recovered(r);
    }
  }

  /** True, or the reason the ping failed. */
  private async ping(r: Replica): Promise<true | string> {
    const timeoutMs = this.config.health.timeoutMs;
    const owner: SessionOwner = { ...PROBE_OWNER, id: `${PROBE_PREFIX}${r.id}` };
    let client: BackendClient | undefined;
    try {
      client = r.inner.shared
        ? r.inner.existingClientFor(owner)
        : await withTimeout(r.inner.clientFor(owner), timeoutMs);
      if (!client) return 'not running';
      const res = await client.call('ping', undefined, { timeoutMs });
      const outcome = outcomeOf(res);
      if (outcome === 'answered') return true;
      if (!r.inner.shared) await r.inner.release(owner);
      return 'error' in res ? res.error.message : outcome;
    } catch (err) {
      if (!r.inner.shared) await r.inner.release(owner).catch(() => {});
      return (err as Error).message;
    }
  }

  private availabilityMaybeChanged(): void {
    const now = this.canServeAny(Date.now());
    if (now === this.available) return;
    this.available = now;
    this.log.info({ server: this.name, available: now }, 'server availability changed');
    this.events.availabilityChanged(this.name);
  }

  // ---------------------------------------------------------------- shared breaker state

  private breakerChanged(r: Replica, state: 'open' | 'closed', remote: boolean): void {
    this.log.info({ server: this.name, replica: r.id, breaker: state, remote }, 'replica breaker changed');
    if (!remote)
      void this.publish(
        r,
        state,
        'breaker',
        state === 'open' ? Date.now() + this.config.breaker.resetTimeoutMs : Date.now(),
      );
  }

  private async publish(
    r: Replica,
    state: 'open' | 'closed',
    reason: string,
    untilMs: number,
  ): Promise<void> {
    try {
      await this.deps.breakerState.publish({
        server: this.name,
        replica: r.id,
        state,
        reason,
        untilMs,
        origin: this.deps.instanceId,
      });
    } catch (err) {
      this.log.debug({ server: this.name, err: (err as Error).message }, 'could not share breaker state');
    }
  }

  /** Another instance's finding about one of our replicas. */
  private onVerdict(v: ReplicaVerdict): void {
    if (v.origin === this.deps.instanceId || v.server !== this.name || this.closed) return;
    const r = this.replicas.find((x) => x.id === v.replica);
    if (!r) return;
    const now = Date.now();
    if (v.state === 'open') {
      if (v.untilMs <= now) return;
      if (v.reason === 'breaker') r.breaker.applyRemote('open');
      else if (r.health.eject(now, v.untilMs)) this.availabilityMaybeChanged();
    } else {
      if (r.breaker.state !== 'closed') r.breaker.applyRemote('closed');
      if (!r.health.healthy && v.reason === 'recovered') {
        r.health.recover(now);
        this.availabilityMaybeChanged();
      }
    }
  }

  // ---------------------------------------------------------------- per-replica events

  private replicaEvents(r: Replica): BackendEvents {
    const up = this.events;
    return {
      request: (server, owner, req, related, signal) =>
        related === undefined && r.inner.shared
          ? this.relayFromProcess(r, server, req, signal)
          : up.request(server, owner, req, related, signal),
      notification: (server, owner, n, related, client) =>
        up.notification(server, owner, n, related ?? this.soleCall(r, n.method), client),
      availabilityChanged: () => this.innerAvailability(r),
      // The backend serves another catalog (an era switch): the core lists again, whatever the health.
      catalogChanged: () => (up.catalogChanged ?? up.availabilityChanged).call(up, this.name),
      // Who is calling, as the core tells each HTTP backend (identity: headers | delegation).
      ...(up.identityHeaders && {
        // The pool's own health probes are no client's: the core speaks for itself there.
        identityHeaders: (server: string, owner: SessionOwner | undefined) =>
          up.identityHeaders!.call(up, server, owner?.id.startsWith(PROBE_PREFIX) ? undefined : owner),
      }),
      ...(up.credentials && { credentials: up.credentials }),
      backendSessionChanged: (server, owner, info) => {
        if (owner.id.startsWith(PROBE_PREFIX)) return;
        up.backendSessionChanged(server, owner, info && { ...info, replica: r.id });
      },
    };
  }

  /**
   * A request from a shared process that its transport could not tie to a call: the call in flight on
   * that very process, when every call there belongs to one client session. Calls on the pool's other
   * processes never count, so a pool of N processes routes as precisely as one process does.
   */
  private relayFromProcess(
    r: Replica,
    server: string,
    req: JsonRpcRequest,
    signal: AbortSignal,
  ): Promise<JsonObject | JsonRpcResponse> {
    let ctx: CallContext | undefined;
    let owner: string | undefined;
    for (const [c, o] of r.active) {
      if (owner !== undefined && o !== owner)
        return Promise.resolve(
          toRpcError(
            req.id,
            new GatewayError(
              'GW_CLIENT_AMBIGUOUS',
              `Calls of several client sessions are in flight on "${server}" ${r.id}: ${req.method} cannot be tied to one of them`,
            ),
          ),
        );
      owner = o;
      ctx = c;
    }
    if (ctx === undefined && req.method !== 'roots/list' && this.replicas.length > 1)
      return Promise.resolve(
        toRpcError(
          req.id,
          new GatewayError(
            'GW_NO_CLIENT_FOR_REQUEST',
            `No client request in flight to relay ${req.method} to`,
          ),
        ),
      );
    return this.events.request(server, undefined, req, ctx, signal);
  }

  /** The one call in flight on `r` (for notifications that concern a call but do not say which). */
  private soleCall(r: Replica, method: string): CallContext | undefined {
    if (!r.inner.shared || this.replicas.length === 1 || r.active.size === 0) return undefined;
    if (
      method === 'notifications/message' ||
      method.endsWith('/list_changed') ||
      method === 'notifications/progress'
    )
      return undefined;
    const owners = new Set(r.active.values());
    return owners.size === 1 ? [...r.active.keys()].at(-1) : undefined;
  }

  /** A replica's own backend came up or went down (process exit, failed connection). */
  private innerAvailability(r: Replica): void {
    if (r.inner.shared) {
      const up = r.innerUp;
      if (r.hadClient && !up && !this.closed && this.config.transport === 'stdio') this.processExited(r);
      r.hadClient = up;
      // A shared process that restarted has a fresh catalog and no per-client state: the core reapplies.
      this.events.availabilityChanged(this.name);
      this.available = this.canServeAny(Date.now());
      return;
    }
    this.availabilityMaybeChanged();
  }

  // ---------------------------------------------------------------- stdio processes

  /** Counts an exit; past the restart limit the slot is given up (it stays down until a restart). */
  private processExited(r: Replica): void {
    if (this.config.transport !== 'stdio') return;
    const now = Date.now();
    const { maxRestarts, restartWindowMs } = this.config.pool;
    r.exits = r.exits.filter((t) => now - t < restartWindowMs);
    r.exits.push(now);
    if (r.exits.length > maxRestarts && !r.givenUp) {
      r.givenUp = true;
      this.log.error(
        { server: this.name, replica: r.id, exits: r.exits.length, windowMs: restartWindowMs },
        'stdio process keeps dying; given up after the restart limit',
      );
      void r.inner.close();
    }
  }

  /** Stops processes beyond `minProcesses` that served nothing for `idleTimeoutMs`. */
  private async reapIdle(): Promise<void> {
    if (this.config.transport !== 'stdio' || this.closed) return;
    const { idleTimeoutMs, minProcesses } = this.config.pool;
    const now = Date.now();
    for (const r of this.replicas) {
      // Counted afresh each time: a slow close of an earlier round must not let this one reap too many.
      if (this.replicas.filter((x) => !x.reaped && !x.givenUp).length <= minProcesses) return;
      if (r.reaped || r.givenUp || r.inflight > 0 || now - r.lastUsedAt < idleTimeoutMs) continue;
      r.reaped = true;
      this.log.info({ server: this.name, replica: r.id }, 'idle stdio process reaped');
      void r.inner.close();
    }
  }

  /** Every live process is busy and a slot was reaped: start it again (the current call goes elsewhere). */
  private reviveIfBusy(candidates: Replica[]): void {
    if (!candidates.every((r) => r.inflight > 0)) return;
    const slot = this.replicas.find((r) => r.reaped);
    if (!slot || this.config.transport !== 'stdio') return;
    slot.reaped = false;
    slot.lastUsedAt = Date.now();
    slot.inner = createBackend(this.config, this.replicaEvents(slot), this.log);
    void slot.inner.start().then(() => (slot.hadClient = slot.innerUp));
  }
}

function errorCode(res: JsonRpcResponse): unknown {
  return 'error' in res ? (res.error.data as { code?: unknown } | undefined)?.code : undefined;
}

function errorMessage(res: JsonRpcResponse): string {
  return 'error' in res ? res.error.message : 'failed';
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      t = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(t));
}
