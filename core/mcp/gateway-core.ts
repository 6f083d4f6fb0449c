/**
 * The core tier in one object: the backends of this node, the client sessions that use them, and the
 * routing of everything backends send (responses, progress, server-to-client requests, list changes,
 * resource updates, log messages) to the client session it belongs to.
 */
import type { Context } from '@opentelemetry/api';
import { GatewayError, toRpcError } from '../../shared/errors.js';
import type { GatewayConfig, ServerConfig } from '../../shared/config/schema.js';
import { canonicalJson } from '../../shared/canonical-json.js';
import type { Logger } from '../../shared/log.js';
import type { SessionStore } from '../../shared/ports/session-store.js';
import type { AuditSink, Classification } from '../../shared/ports/audit-sink.js';
import {
  rpcError,
  RpcCode,
  type JsonObject,
  type JsonRpcNotification,
  type JsonRpcRequest,
  type JsonRpcResponse,
} from '../../shared/mcp/jsonrpc.js';
import {
  compose,
  pluginStage,
  type GatewayPlugin,
  type PipelineContext,
  type Stage,
} from '../../shared/pipeline/pipeline.js';
import type {
  CoreService,
  CoreSessionHandle,
  OpenSessionOptions,
  ReadinessReport,
} from '../../shared/ports/core-service.js';
import { randomBytes } from 'node:crypto';
import { MemoryBreakerState } from '../../shared/adapters/memory/breaker-state.js';
import { MemoryResponseCache } from '../../shared/adapters/memory/response-cache.js';
import type { BreakerStateStore } from '../../shared/ports/breaker-state.js';
import type { ResponseCache } from '../../shared/ports/response-cache.js';
import type { BackendClient } from '../backends/backend-client.js';
import { modernBackend, type ModernHttpBackend } from '../backends/modern-backend.js';
import { ModernBackendClient } from '../backends/modern-client.js';
import {
  GATEWAY_CLIENT_INFO,
  type BackendCredentials,
  type BackendEvents,
  type SessionOwner,
} from '../backends/server-backend.js';
import { ANONYMOUS, type Principal } from '../../shared/identity/principal.js';
import { AccessControl } from '../policy/access-control.js';
import type { PolicyConfig } from '../../shared/config/security-schema.js';
import { PiiMasker } from '../policy/pii-mask.js';
import { ToolArgumentValidator } from '../policy/tool-arguments.js';
import type { Outcome, RequestObservation } from '../../shared/telemetry/metrics.js';
import { endStage, messageTrace, messageTraceId, STAGE, startStage } from '../../shared/telemetry/tracing.js';
import { ServerPool, type PoolDeps } from '../pool/server-pool.js';
import { ToolResponseCache } from '../pool/tool-cache.js';
import { CatalogCache, INVALIDATES } from './catalog.js';
import { MemoryApprovalStore } from '../../shared/adapters/memory/approval-store.js';
import type { ApprovalStore } from '../../shared/ports/approval-store.js';
import { ToolGovernance } from '../governance/tool-governance.js';
import { auditEvent, AUDITED_METHODS } from '../../shared/audit/audit-event.js';
import { ObjectSlot } from '../../shared/object-slot.js';
import { ClientSession, LOG_LEVELS, type CallContext } from './client-session.js';
import { familyDefaults, serverId } from '../../shared/mcp/server-versions.js';
import type { VirtualServerConfig } from '../../shared/config/virtual-schema.js';
import { unknownScope, VIRTUAL_SCOPE_PREFIX, VirtualView } from './virtual-view.js';
import { MergedListBudget } from './merged-lists.js';

/** Which client capability a server-to-client request needs. */
const REQUIRED_CAPABILITY: Record<string, string> = {
  'sampling/createMessage': 'sampling',
  'elicitation/create': 'elicitation',
  'roots/list': 'roots',
};

/** pickCall's answer when calls of several sessions are in flight on a shared backend. */
const AMBIGUOUS = Symbol('ambiguous');

/** The session's own handler, run by the last stage with the (possibly intercepted) request. */
type Dispatch = (request: JsonRpcRequest) => Promise<JsonRpcResponse | undefined>;
const DISPATCH = 'mcpgw.dispatch';

export interface GatewayCoreOptions {
  config: GatewayConfig;
  log: Logger;
  plugins?: GatewayPlugin[];
  /** Where backend sessions are recorded, so that another replica can continue a client session. */
  sessions?: SessionStore;
  /** Names this replica in the ids of requests it sends clients (ReplicaChannel.replicaId). */
  replicaId?: string;
  /** Where a record of every tools/call, prompts/get and resources/read goes (enqueued, never awaited). */
  audit?: AuditSink;
  /** Told of every finished client request (metrics, usage analytics, the access log). */
  observe?: (o: CoreObservation) => void;
  /** Who is calling, as headers for an HTTP backend with `identity: headers | delegation` (core role). */
  backendIdentity?: (
    server: string,
    sessionId: string | undefined,
  ) => Readonly<Record<string, string>> | undefined;
  /**
   * What the backend pools share beyond this core: breaker/ejection verdicts and the second tier of the
   * response cache (Redis in a cluster). Absent: in-process only.
   */
  pools?: { breakerState?: BreakerStateStore; sharedCache?: ResponseCache };
  /** Stages run before the plugins (admission), in this order. */
  stages?: Stage[];
  /** The per-replica `server` budget the pools ask before each attempt (quotas; absent: none). */
  replicaQuota?: PoolDeps['replicaQuota'];
  /** The credential vault and its refresher, for `http` (REST) servers' `auth`. */
  credentials?: BackendCredentials;
  /** Where approved tool definitions are kept (docs/governance.md); absent: in process memory. */
  approvals?: ApprovalStore;
}

/** A finished request as the core saw it: what metrics record, plus who asked (never a metric label). */
export interface CoreObservation extends RequestObservation {
  sessionId: string;
  /** The session's principal key (`tenant:subject`, or `anonymous`). */
  principal: string;
  rpcId: string | number;
  /** The trace the request was recorded in, for the access log line; undefined when not traced. */
  traceId?: string;
  /** The result of a tools/call that reached a server, as the client got it (for its token count). */
  result?: JsonObject;
}

/** What forwarding tells the observation of the request it serves. */
export interface BackendNote {
  server: string | undefined;
  backendMs: number | undefined;
  /** The route stage's context, the parent of the stages within the call; undefined when not traced. */
  trace?: Context;
}

export class GatewayCore implements CoreService {
  readonly log: Logger;
  readonly catalog: CatalogCache;
  readonly serverInfo = GATEWAY_CLIENT_INFO;
  readonly pageSize: number;
  /** The ttlMs a 2025 server contributes to a merged list for a 2026 client. */
  readonly listTtlMs: number;
  /** The items merged lists may keep, across sessions (merged-lists.ts). */
  readonly mergedLists: MergedListBudget;
  /** Rounds of input a 2026 backend may ask of a 2025 client in one call. */
  readonly maxInputRounds: number;
  readonly replicaId: string;
  /** Tenancy and policy: what each caller sees and may use. */
  readonly access: AccessControl;
  /** tools/call arguments against the tool's inputSchema (absent when validation.toolArguments is off). */
  readonly argumentValidator: ToolArgumentValidator | undefined;
  readonly pii: PiiMasker;
  /** Lifecycle, approval and pinning, classification of tools (docs/governance.md). */
  readonly governance: ToolGovernance;
  private readonly backends = new Map<string, ServerPool>();
  private readonly virtuals = new Map<string, VirtualView>();
  /** Family name -> id of the version served under the plain name (server-versions.ts). */
  private defaults = new Map<string, string>();
  readonly responseCache: ToolResponseCache;
  private readonly ownedBreakerState: BreakerStateStore | undefined;
  private readonly poolDeps: PoolDeps;
  private readonly sessions = new Set<ClientSession>();
  /** Calls in flight per server, oldest first: where a shared backend's requests are routed. */
  private readonly calls = new Map<string, Set<CallContext>>();
  private readonly progress = new Map<string, { ctx: CallContext; token: unknown; client: BackendClient }>();
  private nextProgress = 0;
  /** Shared-backend subscriptions: server -> uri -> sessions. */
  private readonly sharedSubs = new Map<string, Map<string, Set<ClientSession>>>();
  private readonly sharedLevels = new Map<string, string>();
  private readonly rootsSession = new Map<string, ClientSession>();
  private readonly pipeline: (ctx: PipelineContext) => Promise<void>;
  private readonly hasPlugins: boolean;
  private readonly audit: AuditSink | undefined;
  /** The server each audited call in flight was routed to, by session and request id. */
  private readonly routes = new Map<string, string>();
  /** The note of each request being observed, found by `forward` from the request it was handed. */
  private readonly notes = new ObjectSlot<JsonRpcRequest, BackendNote>('mcpgw.backendNote');

  constructor(private readonly opts: GatewayCoreOptions) {
    this.log = opts.log;
    this.pageSize = opts.config.aggregate.pageSize;
    this.listTtlMs = opts.config.aggregate.listTtlMs;
    this.mergedLists = new MergedListBudget(opts.config.aggregate.mergedListCacheItems);
    this.maxInputRounds = opts.config.mrtr.maxRounds;
    this.replicaId = opts.replicaId ?? 'local';
    this.catalog = new CatalogCache((s) => this.timeoutMs(s));
    this.access = new AccessControl(opts.config);
    this.argumentValidator = opts.config.validation.toolArguments
      ? new ToolArgumentValidator(opts.log)
      : undefined;
    this.pii = new PiiMasker(opts.config.pii);
    this.governance = new ToolGovernance({
      config: opts.config.governance,
      approvals: opts.approvals ?? new MemoryApprovalStore(),
      log: opts.log.child({ component: 'governance' }),
      onApprovalChange: (server) => this.announceToolsChanged(server),
    });
    const events = this.backendEvents();
    const pools = opts.config.pools;
    this.responseCache = new ToolResponseCache(
      new MemoryResponseCache(pools.cacheMaxEntries),
      opts.pools?.sharedCache,
      pools.cacheMaxEntryBytes,
      opts.log,
    );
    if (!opts.pools?.breakerState) this.ownedBreakerState = new MemoryBreakerState();
    const poolDeps: PoolDeps = {
      log: opts.log,
      breakerState: opts.pools?.breakerState ?? this.ownedBreakerState!,
      cache: this.responseCache,
      instanceId: `${this.replicaId}-${randomBytes(4).toString('hex')}`,
      listTools: async (client: BackendClient) =>
        this.catalog.declares(client, 'tools') ? this.catalog.list(client, 'tools') : [],
      ...(opts.replicaQuota && { replicaQuota: opts.replicaQuota }),
    };
    for (const s of opts.config.servers)
      if (s.enabled) this.backends.set(serverId(s), new ServerPool(s, events, poolDeps));
    this.defaults = familyDefaults(this.backendList().map((b) => b.config));
    for (const v of opts.config.virtualServers ?? []) this.virtuals.set(v.name, new VirtualView(v));
    this.poolDeps = poolDeps;
    const plugins = opts.plugins ?? [];
    this.audit = opts.audit;
    const stages = opts.stages ?? [];
    this.hasPlugins = plugins.length > 0 || stages.length > 0;
    // The core's request pipeline, top to bottom:
    this.pipeline = compose([
      // admission (when configured): the backend queue, before any plugin or backend work; it needs the
      // request's target, so it runs once it is parsed. The per-tool and per-replica quotas are decided
      // by the pool before each attempt, once it knows the replica (see docs/quotas.md).
      ...stages,
      // plugins: pre-hooks and request interceptors see the request before routing; response
      // interceptors and post-hooks see the answer, errors included (error handlers may recover).
      ...(plugins.length > 0 ? [pluginStage(plugins, (err, ctx) => toRpcError(ctx.request.id, err))] : []),
      // dispatch: route by method, name or URI to a backend (or answer locally) and forward.
      {
        name: 'dispatch',
        run: async (ctx) => void (ctx.response = await (ctx.state.get(DISPATCH) as Dispatch)(ctx.request)),
      },
    ]);
  }

  /** Starts every backend; resolves when each has connected or failed its first attempt. */
  async start(): Promise<void> {
    await Promise.all([...this.backends.values()].map((b) => b.start()));
  }

  /**
   * Applies a registry change without a restart: a new or changed server is (re)started, a deleted or
   * disabled one is stopped (its calls in flight fail with GW_BACKEND_UNAVAILABLE), and /mcp sessions
   * hear list_changed. Calls for one name must not overlap (the caller serialises them).
   */
  async applyServer(name: string, server: ServerConfig | undefined): Promise<void> {
    const old = this.backends.get(name);
    const wanted = server?.enabled ? server : undefined;
    // A registered server's tenant hides it from other tenants from now on, like a configured one's.
    this.access.setServerTenant(name, server?.tenant, server === undefined);
    if (old && wanted && canonicalJson(old.config) === canonicalJson(wanted)) return;
    if (!old && !wanted) return;
    if (old) {
      this.backends.delete(name);
      this.sharedSubs.delete(name);
      this.sharedLevels.delete(name);
      this.rootsSession.delete(name);
      await old.close();
    }
    if (wanted) {
      const backend = new ServerPool(wanted, this.backendEvents(), this.poolDeps);
      this.backends.set(name, backend);
      await backend.start();
    }
    this.defaults = familyDefaults(this.backendList().map((b) => b.config));
    this.log.info(
      { server: name, action: wanted ? (old ? 'restarted' : 'started') : 'stopped' },
      'registry change applied',
    );
    this.onAvailabilityChanged(name);
  }

  hasScope(scope: string, identity?: Principal): boolean {
    if (scope === 'aggregate') return true;
    if (scope.startsWith(VIRTUAL_SCOPE_PREFIX)) {
      const v = this.virtuals.get(scope.slice(VIRTUAL_SCOPE_PREFIX.length));
      return (
        v !== undefined && (identity === undefined || v.tenant === undefined || v.tenant === identity.tenant)
      );
    }
    const id = this.resolveServer(scope);
    if (id === undefined) return false;
    return identity === undefined || this.access.forPrincipal(identity).serverVisible(id);
  }

  /** A virtual server (/v/{name}/mcp) as routing uses it. */
  virtualServer(name: string): VirtualView | undefined {
    return this.virtuals.get(name);
  }

  /**
   * Applies a virtual server's change (from the config file or the admin API, on this gateway or
   * another): its sessions hear list_changed; a deleted one's sessions get GW_UNKNOWN_VIRTUAL_SERVER.
   */
  setVirtualServer(name: string, config: VirtualServerConfig | undefined): void {
    if (config) {
      // Applied twice (the writer's own apply, then the store's notice): the second changes nothing.
      const old = this.virtuals.get(name);
      if (old && canonicalJson(old.config) === canonicalJson(config)) return;
      this.virtuals.set(name, new VirtualView(config));
    } else if (!this.virtuals.delete(name)) return;
    for (const s of this.sessions)
      if (s.scope === `${VIRTUAL_SCOPE_PREFIX}${name}`) listsChanged(s, ALL_LISTS);
  }

  /** The running server a name means: a server id, or a family name (its default version). */
  resolveServer(name: string): string | undefined {
    return this.backends.has(name) ? name : this.defaults.get(name);
  }

  /** The prefix of a server's tools and prompts on /mcp: its family name while it is the default version. */
  prefixOf(id: string): string {
    const config = this.backends.get(id)?.config;
    return config?.version !== undefined && this.defaults.get(config.name) === id ? config.name : id;
  }

  backend(name: string): ServerPool | undefined {
    return this.backends.get(name);
  }

  backendList(): ServerPool[] {
    return [...this.backends.values()];
  }

  timeoutMs(server: string): number {
    return this.backends.get(server)?.config.timeouts.requestMs ?? 120_000;
  }

  openSession(o: OpenSessionOptions): CoreSessionHandle {
    if (!this.hasScope(o.scope, o.identity)) throw unknownScope(o.scope);
    // /servers/{family}/mcp is pinned, for the session's life, to the version that is the default now.
    const scope =
      o.scope === 'aggregate' || o.scope.startsWith(VIRTUAL_SCOPE_PREFIX)
        ? o.scope
        : this.resolveServer(o.scope)!;
    const s = new ClientSession(o.id, o.principal, scope, o.unrelated, this, o.identity ?? ANONYMOUS);
    s.modern = o.modern ?? false;
    this.sessions.add(s);
    if (o.restore) s.restore(o.restore);
    return s;
  }

  readiness(): ReadinessReport {
    const servers: ReadinessReport['servers'] = {};
    let ready = true;
    for (const b of this.backends.values()) {
      const st = b.status();
      servers[b.name] = st;
      if (st.state !== 'ready' && st.state !== 'failed') ready = false;
    }
    return { ready, servers, pools: { cache: { ...this.responseCache.counters } } };
  }

  async close(): Promise<void> {
    await Promise.all([...this.sessions].map((s) => s.close()));
    await Promise.all([...this.backends.values()].map((b) => b.close()));
    await this.responseCache.close();
    await this.ownedBreakerState?.close();
  }

  /** Runs the pipeline; observed (timing, outcome, the route span) when someone listens or traces. */
  runPipeline(
    session: ClientSession,
    request: JsonRpcRequest,
    dispatch: Dispatch,
  ): Promise<JsonRpcResponse | undefined> {
    if (!this.opts.observe && !messageTrace(request)) return this.auditedStages(session, request, dispatch);
    return this.runObserved(session, request, dispatch);
  }

  /** The note `forward` fills in for the request being observed, if it is. */
  noteOf(request: JsonRpcRequest): BackendNote | undefined {
    return this.notes.get(request);
  }

  private async runObserved(
    session: ClientSession,
    request: JsonRpcRequest,
    dispatch: Dispatch,
  ): Promise<JsonRpcResponse | undefined> {
    const t0 = performance.now();
    const note: BackendNote = { server: undefined, backendMs: undefined };
    this.notes.set(request, note);
    const tool =
      request.method === 'tools/call' && typeof request.params?.name === 'string'
        ? request.params.name
        : undefined;
    const stage = startStage(STAGE.route, messageTrace(request), {
      attributes: () => ({
        'rpc.system': 'jsonrpc',
        'rpc.method': request.method,
        'mcp.session.id': session.id,
        ...(tool !== undefined && { 'mcp.tool.name': tool }),
      }),
    });
    // A request interceptor may hand dispatch a replacement: it carries the same note.
    const noted: Dispatch = (req) => {
      if (req !== request) this.notes.set(req, note);
      return dispatch(req);
    };
    if (stage) note.trace = stage.ctx;
    const res = await this.auditedStages(session, request, noted);
    const outcome: Outcome =
      res === undefined
        ? 'cancelled'
        : 'error' in res
          ? 'error'
          : (res.result as { isError?: unknown } | null)?.isError === true
            ? 'tool_error'
            : 'ok';
    const code =
      res && 'error' in res
        ? ((res.error.data as { code?: unknown } | undefined)?.code as string)
        : undefined;
    if (stage) {
      if (note.server !== undefined && stage.span.isRecording())
        stage.span.setAttribute('mcpgw.server', note.server);
      endStage(
        stage,
        outcome === 'error'
          ? { code, message: (res as { error: { message: string } }).error.message }
          : undefined,
      );
    }
    this.opts.observe?.({
      method: request.method,
      tool,
      server: note.server,
      tenant: tenantOf(session.principal),
      outcome,
      code: typeof code === 'string' ? code : undefined,
      totalMs: performance.now() - t0,
      backendMs: note.backendMs,
      sessionId: session.id,
      principal: session.principal,
      rpcId: request.id,
      traceId: messageTraceId(request),
      ...(tool !== undefined &&
        note.server !== undefined &&
        res &&
        'result' in res && { result: res.result }),
    });
    return res;
  }

  /** The audit stage: tools/call, prompts/get and resources/read leave a record. */
  private auditedStages(
    session: ClientSession,
    request: JsonRpcRequest,
    dispatch: Dispatch,
  ): Promise<JsonRpcResponse | undefined> {
    if (this.audit && AUDITED_METHODS.has(request.method)) return this.audited(session, request, dispatch);
    return this.runStages(session, request, dispatch);
  }

  /** One audit record per call, enqueued once the answer is known; the write happens off this path. */
  private async audited(
    session: ClientSession,
    request: JsonRpcRequest,
    dispatch: Dispatch,
  ): Promise<JsonRpcResponse | undefined> {
    const started = performance.now();
    const key = `${session.id}\n${String(request.id)}`;
    try {
      const response = await this.runStages(session, request, dispatch);
      const server = this.routes.get(key);
      this.audit!.record(
        auditEvent({
          region: this.opts.config.region,
          principal: session.principal,
          sessionId: session.id,
          request,
          response,
          server,
          classification: this.classification(server),
          latencyMs: performance.now() - started,
          traceId: messageTraceId(request),
        }),
      );
      return response;
    } finally {
      this.routes.delete(key);
    }
  }

  /**
   * Called as an audited call is forwarded: remembers where it went, and refuses it when the audit
   * trail is failing and the server's data is of a class that must not go unaudited.
   */
  beforeForward(session: ClientSession, request: JsonRpcRequest, server: string): void {
    if (!this.audit || !AUDITED_METHODS.has(request.method)) return;
    this.routes.set(`${session.id}\n${String(request.id)}`, server);
    const classification = this.classification(server);
    if (this.audit.mustRefuse(classification))
      throw new GatewayError(
        'GW_AUDIT_UNAVAILABLE',
        `Refused: the audit trail is failing and "${server}" handles ${classification} data`,
        { server, classification },
      );
  }

  private classification(server: string | undefined): Classification {
    return (server && this.backends.get(server)?.config.classification) || 'Internal';
  }

  private async runStages(
    session: ClientSession,
    request: JsonRpcRequest,
    dispatch: Dispatch,
  ): Promise<JsonRpcResponse | undefined> {
    // Without plugins the pipeline is the dispatch stage alone: skip the context and the composed chain.
    if (!this.hasPlugins)
      return dispatch(request).catch((err: unknown) => this.failed(session, request, err));
    const ctx: PipelineContext = {
      request,
      session,
      state: new Map<string, unknown>([[DISPATCH, dispatch]]),
      target: () => session.targetOf(ctx.request),
    };
    try {
      await this.pipeline(ctx);
    } catch (err) {
      return this.failed(session, request, err);
    }
    return ctx.response;
  }

  /** A request the pipeline could not answer: its error, logged with its stack when it is a gateway bug. */
  private failed(session: ClientSession, request: JsonRpcRequest, err: unknown): JsonRpcResponse {
    if (!(err instanceof GatewayError))
      this.log.error(
        { err, method: request.method, sessionId: session.id, requestId: request.id },
        'request failed',
      );
    return toRpcError(request.id, err);
  }

  // ---------------------------------------------------------------- helpers used by sessions

  /** Replaces the client's progress token with one unique across every client of the backend. */
  mapProgress(
    params: JsonObject | undefined,
    ctx: CallContext,
    client: BackendClient,
  ): { params: JsonObject | undefined; release(): void } {
    const meta = params?._meta as JsonObject | undefined;
    if (!meta || meta.progressToken === undefined) return { params, release: () => {} };
    const token = `mcpgw-p${++this.nextProgress}`;
    this.progress.set(token, { ctx, token: meta.progressToken, client });
    return {
      params: { ...params, _meta: { ...meta, progressToken: token } },
      release: () => this.progress.delete(token),
    };
  }

  /** Records a call in flight (where a shared backend's own requests are routed); returns its removal. */
  trackCall(ctx: CallContext): () => void {
    let set = this.calls.get(ctx.server);
    if (!set) this.calls.set(ctx.server, (set = new Set()));
    set.add(ctx);
    return () => set.delete(ctx);
  }

  async subscribeShared(session: ClientSession, server: string, uri: string): Promise<JsonRpcResponse> {
    let byUri = this.sharedSubs.get(server);
    if (!byUri) this.sharedSubs.set(server, (byUri = new Map()));
    const subs = byUri.get(uri);
    if (subs && subs.size > 0) {
      subs.add(session);
      return { jsonrpc: '2.0', id: 0, result: {} };
    }
    const modern = this.modernOf(this.backends.get(server));
    if (modern) {
      // A 2026 server has no resources/subscribe: its URIs join the upstream listen's filter.
      byUri.set(uri, new Set([session]));
      modern.watchResources([...byUri.keys()]);
      return { jsonrpc: '2.0', id: 0, result: {} };
    }
    const client = await this.backends.get(server)!.clientFor(session);
    const res = await client.call('resources/subscribe', { uri }, { timeoutMs: this.timeoutMs(server) });
    if (!('error' in res)) byUri.set(uri, new Set([...(byUri.get(uri) ?? []), session]));
    return res;
  }

  async unsubscribeShared(session: ClientSession, server: string, uri: string): Promise<JsonRpcResponse> {
    const subs = this.sharedSubs.get(server)?.get(uri);
    if (!subs?.delete(session) || subs.size > 0) return { jsonrpc: '2.0', id: 0, result: {} };
    this.sharedSubs.get(server)!.delete(uri);
    const modern = this.modernOf(this.backends.get(server));
    if (modern) {
      modern.watchResources([...this.sharedSubs.get(server)!.keys()]);
      return { jsonrpc: '2.0', id: 0, result: {} };
    }
    const client = this.backends.get(server)!.existingClientFor(session);
    return client
      ? client.call('resources/unsubscribe', { uri }, { timeoutMs: this.timeoutMs(server) })
      : { jsonrpc: '2.0', id: 0, result: {} };
  }

  /** A shared backend logs at the most verbose level any of its sessions asked for. */
  async applySharedLogLevel(server: string): Promise<JsonRpcResponse | undefined> {
    let min: string | undefined;
    for (const s of this.sessions) {
      if (!s.uses(server) || !s.logLevel) continue;
      if (!min || LOG_LEVELS.indexOf(s.logLevel) < LOG_LEVELS.indexOf(min)) min = s.logLevel;
    }
    if (!min || this.sharedLevels.get(server) === min) return undefined;
    const client = this.backends.get(server)?.existingClientFor({} as SessionOwner);
    // A 2026 server has no logging/setLevel: each request's envelope carries its caller's level.
    if (!client || client instanceof ModernBackendClient) return undefined;
    this.sharedLevels.set(server, min);
    return client.call('logging/setLevel', { level: min }, { timeoutMs: this.timeoutMs(server) });
  }

  noteRootsSession(server: string, session: ClientSession): void {
    this.rootsSession.set(server, session);
  }

  async endSession(session: ClientSession, options?: { keepBackendSessions?: boolean }): Promise<void> {
    this.sessions.delete(session);
    for (const [server, byUri] of this.sharedSubs) {
      for (const [uri, subs] of byUri) {
        if (subs.delete(session) && subs.size === 0) {
          byUri.delete(uri);
          const modern = this.modernOf(this.backends.get(server));
          if (modern) {
            modern.watchResources([...byUri.keys()]);
            continue;
          }
          // The last subscriber left: the backend's one subscription for every session goes too.
          void this.backends
            .get(server)
            ?.existingClientFor(session)
            ?.call('resources/unsubscribe', { uri }, { timeoutMs: this.timeoutMs(server) })
            .catch(() => {});
        }
      }
    }
    for (const [server, s] of this.rootsSession) if (s === session) this.rootsSession.delete(server);
    const keepSession = options?.keepBackendSessions ?? false;
    await Promise.all([...this.backends.values()].map((b) => b.release(session, { keepSession })));
  }

  // ---------------------------------------------------------------- what backends send

  private backendEvents(): BackendEvents {
    return {
      request: (server, owner, req, related, signal) =>
        this.onBackendRequest(
          server,
          owner as ClientSession | undefined,
          req,
          related as CallContext | undefined,
          signal,
        ),
      notification: (server, owner, n, related, client) =>
        this.onBackendNotification(
          server,
          owner as ClientSession | undefined,
          n,
          related as CallContext | undefined,
          client,
        ),
      availabilityChanged: (server) => this.onAvailabilityChanged(server),
      identityHeaders: (server, owner) => this.opts.backendIdentity?.(server, owner?.id),
      ...(this.opts.credentials && { credentials: this.opts.credentials }),
      backendSessionChanged: (server, owner, info) =>
        void this.opts.sessions
          ?.setBackendSession(owner.id, server, info)
          .catch((err: unknown) => this.log.warn({ err, server }, 'could not record the backend session')),
    };
  }

  /** A server's 2026 backend (its first replica), for the upstream listen and gateway-held state. */
  private modernOf(pool: ServerPool | undefined): ModernHttpBackend | undefined {
    return modernBackend(pool?.replicas[0]?.inner);
  }

  private async onBackendRequest(
    server: string,
    owner: ClientSession | undefined,
    req: JsonRpcRequest,
    related: CallContext | undefined,
    signal: AbortSignal,
  ): Promise<JsonObject | JsonRpcResponse> {
    const capability = REQUIRED_CAPABILITY[req.method];
    const picked = related ?? this.pickCall(server, owner);
    if (picked === AMBIGUOUS)
      return toRpcError(
        req.id,
        new GatewayError(
          'GW_CLIENT_AMBIGUOUS',
          `Calls of several client sessions are in flight on "${server}": ${req.method} cannot be tied to one of them`,
        ),
      );
    const ctx = picked;
    const session =
      ctx?.session ?? owner ?? (req.method === 'roots/list' ? this.rootsSession.get(server) : undefined);
    if (!session)
      return toRpcError(
        req.id,
        new GatewayError('GW_NO_CLIENT_FOR_REQUEST', `No client request in flight to relay ${req.method} to`),
      );
    if (capability === undefined)
      return rpcError(req.id, RpcCode.MethodNotFound, `Method not found: ${req.method}`);
    if (session.clientCapabilities[capability] === undefined) {
      return toRpcError(
        req.id,
        new GatewayError(
          'GW_CAPABILITY_NOT_DECLARED',
          `The client did not declare the "${capability}" capability`,
          { capability },
        ),
      );
    }
    return session.requestClient(req.method, req.params, ctx?.sink ?? session.unrelated, signal);
  }

  /**
   * The call a backend's own request or notification belongs to, when the transport cannot say (stdio
   * carries no relation): the most recent call in flight, provided every call in flight on that backend
   * belongs to one client session. With several sessions in flight the gateway cannot know whose call
   * caused it, and guessing would hand one user's prompt to another: AMBIGUOUS.
   */
  private pickCall(
    server: string,
    owner: ClientSession | undefined,
  ): CallContext | undefined | typeof AMBIGUOUS {
    const set = this.calls.get(server);
    if (!set) return undefined;
    let last: CallContext | undefined;
    for (const c of set) {
      if (owner && c.session !== owner) continue;
      if (last && last.session !== c.session) return AMBIGUOUS;
      last = c;
    }
    return last;
  }

  private onBackendNotification(
    server: string,
    owner: ClientSession | undefined,
    n: JsonRpcNotification,
    related: CallContext | undefined,
    client: BackendClient,
  ): void {
    const p = n.params ?? {};
    const invalidates = INVALIDATES[n.method];
    if (invalidates) {
      this.catalog.invalidate(client, invalidates);
      for (const s of this.audience(server, owner)) s.sendUnrelated({ jsonrpc: '2.0', method: n.method });
      return;
    }
    switch (n.method) {
      case 'notifications/progress': {
        const entry = this.progress.get(String(p.progressToken));
        if (!entry) return;
        const id = entry.client.idOfContext(entry.ctx);
        if (id !== undefined) entry.client.extendCall(id);
        entry.ctx.sink.send({
          jsonrpc: '2.0',
          method: n.method,
          params: { ...p, progressToken: entry.token },
        });
        return;
      }
      case 'notifications/resources/updated': {
        const uri = String(p.uri);
        const targets = owner ? [owner] : [...(this.sharedSubs.get(server)?.get(uri) ?? [])];
        for (const s of targets)
          s.sendUnrelated({
            jsonrpc: '2.0',
            method: n.method,
            params: { ...p, uri: s.exposedUri(server, uri) },
          });
        return;
      }
      case 'notifications/message': {
        if (related) return related.sink.send(n);
        const level = typeof p.level === 'string' ? LOG_LEVELS.indexOf(p.level) : 0;
        for (const s of this.audience(server, owner)) {
          if (owner || !s.logLevel || LOG_LEVELS.indexOf(s.logLevel) <= level) s.sendUnrelated(n);
        }
        return;
      }
      default: {
        // Anything else (elicitation/complete, task status, custom): to the caller it concerns.
        if (related) return related.sink.send(n);
        const call = this.pickCall(server, owner);
        if (call === AMBIGUOUS) return; // nobody can be told safely
        if (call) return call.sink.send(n);
        if (owner) owner.sendUnrelated(n);
      }
    }
  }

  /** Sessions that should hear about `server`: its owner, or every session that can see it. */
  private audience(server: string, owner: ClientSession | undefined): ClientSession[] {
    if (owner) return [owner];
    return [...this.sessions].filter((s) => s.uses(server));
  }

  /**
   * Puts stored policies in force (the admin API's): the next request of every session is decided by
   * them, and every session is told that its lists may have changed.
   */
  applyPolicies(global: PolicyConfig | undefined, tenants: ReadonlyMap<string, PolicyConfig>): void {
    this.access.setPolicies(global, tenants);
    for (const s of this.sessions) listsChanged(s, s.isAggregate ? ALL_LISTS : ['tools']);
  }

  /** Tells every session that sees `server` that its tools changed (an approval, a lifecycle change). */
  announceToolsChanged(server: string): void {
    for (const s of this.sessions) if (s.uses(server)) listsChanged(s, ['tools']);
  }

  private onAvailabilityChanged(server: string): void {
    for (const s of this.sessions) if (s.isAggregate) listsChanged(s, ALL_LISTS);
    // Re-apply per-client state to a shared backend that just (re)started.
    const backend = this.backends.get(server);
    const modern = this.modernOf(backend);
    if (modern) modern.watchResources([...(this.sharedSubs.get(server)?.keys() ?? [])]);
    else if (backend?.shared && backend.existingClientFor({} as SessionOwner)) {
      this.sharedLevels.delete(server);
      void this.applySharedLogLevel(server);
      const client = backend.existingClientFor({} as SessionOwner)!;
      for (const uri of this.sharedSubs.get(server)?.keys() ?? [])
        void client.call('resources/subscribe', { uri }, { timeoutMs: this.timeoutMs(server) });
    }
  }
}

/** The tenant of a principal key (`tenant:subject`); `default` for the anonymous principal. */
export function tenantOf(principal: string): string {
  const i = principal.indexOf(':');
  return i > 0 ? principal.slice(0, i) : 'default';
}

const ALL_LISTS = ['tools', 'prompts', 'resources'] as const;

/** `notifications/<kind>/list_changed` to session `s`, for each kind. */
function listsChanged(s: ClientSession, kinds: readonly ('tools' | 'prompts' | 'resources')[]): void {
  for (const kind of kinds) s.sendUnrelated({ jsonrpc: '2.0', method: `notifications/${kind}/list_changed` });
}
