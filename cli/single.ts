/**
 * Composition root of the single role: edge and core in one process, joined by a function call, on the
 * embedded stores (no external service needed). Tests build nodes with the same function.
 */
import type { JsonObject } from '../shared/mcp/jsonrpc.js';
import type { DrainResult } from '../shared/lifecycle/drain.js';
import { adminCoreView, adminStoreOf, enforceStoredPolicies, watchConfigFile } from './admin-api.js';
import { busPolicyStore, startControlPlane } from './control-plane.js';
import { appliedOnWrite, followVirtualServers } from './virtual-servers.js';
import { registerAdminApi } from '../edge/admin-api/index.js';
import { governanceRoutes } from '../core/admin/governance-routes.js';
import { PostgresApprovalStore } from '../shared/adapters/postgres/approval-store.js';
import { createRequire } from 'node:module';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { MemoryEventStore } from '../shared/adapters/memory/event-store.js';
import { MemorySessionStore } from '../shared/adapters/memory/session-store.js';
import { RedisEventStore } from '../shared/adapters/redis/event-store.js';
import { RedisReplicaChannel } from '../shared/adapters/redis/replica-channel.js';
import { RedisSessionStore } from '../shared/adapters/redis/session-store.js';
import { RedisBreakerState } from '../shared/adapters/redis/breaker-state.js';
import { RedisResponseCache } from '../shared/adapters/redis/response-cache.js';
import { sharedSecret } from '../shared/adapters/redis/shared-secret.js';
import { useCursorKey } from '../shared/mcp/cursor.js';
import type { ReplicaChannel } from '../shared/ports/replica-channel.js';
import type { EventStore } from '../shared/ports/event-store.js';
import type { SessionStore } from '../shared/ports/session-store.js';
import { runtimeServerSchema, type GatewayConfig } from '../shared/config/schema.js';
import { createLogger, type Logger } from '../shared/log.js';
import type { GatewayPlugin, PluginFactory } from '../shared/pipeline/pipeline.js';
import { openNodeStores, serversToStart, type NodeStores } from './stores.js';
import { apiKeyStoreFor } from './api-keys.js';
import type { ApiKeyStore } from '../shared/ports/api-key-store.js';
import type { SpanProcessor } from '@opentelemetry/sdk-trace-base';
import type { GatewayMetrics } from '../shared/telemetry/metrics.js';
import { UsageAnalytics } from '../shared/telemetry/usage.js';
import { resultTokens } from '../core/rest/rest-backend.js';
import { loadTokenizer } from '../core/rest/token-budget.js';
import { GatewayCore, type CoreObservation } from '../core/mcp/gateway-core.js';
import { buildEdgeApp, type EdgeApp } from '../edge/http/app.js';
import { createQuotas, type Quotas } from '../edge/quota/quotas.js';
import { MemoryQuotaStore } from '../shared/adapters/memory/quota-store.js';
import { RedisQuotaStore } from '../shared/adapters/redis/quota-store.js';
import type { Principal } from '../shared/identity/principal.js';
import type { FastifyRequest } from 'fastify';
import { exportStateMetrics, metricsOf, startTracing } from './telemetry.js';
import type { Server as TlsServer } from 'node:tls';
import { serverTlsOptions, watchServerTls } from '../shared/tls/server-tls.js';
import { listenUrl } from './listen.js';
import type { FederationNode } from '../federation/federation-node.js';
import { gatewayIdOf, startFederation } from './federation.js';
import { federatedSingle } from './federated-aggregate.js';
import { serverId } from '../shared/mcp/server-versions.js';

export interface RunningNode {
  /** Base URL, e.g. http://127.0.0.1:8080 */
  url: string;
  core: GatewayCore;
  /** The registry, audit trail and vault of this node. */
  stores: NodeStores;
  /** The edge's source guard: what the auth stage reports authentication failures to. */
  security: EdgeApp['security'];
  metrics?: GatewayMetrics;
  usage: UsageAnalytics;
  /** Quotas and admission control, when `quotas.enabled`. */
  quotas?: Quotas;
  /** Registry publisher, capability index and region lease, when `federation` is configured. */
  federation?: FederationNode;
  /** After the drain delay: stop accepting, wait for the requests in flight (at most `timeoutMs`). */
  drain(timeoutMs: number): Promise<DrainResult>;
  close(): Promise<void>;
}

export interface StartOptions {
  log?: Logger;
  /** Directory that relative plugin paths are resolved against (the config file's). */
  baseDir?: string;
  /** Wait for every backend's first connection attempt before listening. */
  waitForBackends?: boolean;
  /** The API key store to use instead of the one the config names (it stays the caller's to close). */
  apiKeys?: ApiKeyStore;
  /** Span processors added to the configured ones when tracing is enabled (tests: an in-memory exporter). */
  spanProcessors?: SpanProcessor[];
  /** The config file the node was started from: watched, and re-seeded into the registry on change. */
  configFile?: string;
  /** Who is calling, for tests that need several principals without credentials (never from config). */
  callerOf?: (req: FastifyRequest) => Principal;
}

export async function loadPlugins(
  config: GatewayConfig,
  baseDir: string,
  log: Logger,
): Promise<GatewayPlugin[]> {
  const plugins: GatewayPlugin[] = [];
  for (const p of config.plugins) {
    const spec =
      p.module.startsWith('.') || isAbsolute(p.module)
        ? pathToFileURL(resolve(baseDir, p.module)).href
        : packageSpecifier(p.module, baseDir);
    const mod = (await import(spec)) as { default?: PluginFactory };
    if (typeof mod.default !== 'function')
      throw new Error(`plugin ${p.module}: the default export must be a factory function`);
    const plugin = await mod.default(p.options, { log: log.child({ plugin: p.module }) });
    if (!plugin || typeof plugin.name !== 'string')
      throw new Error(`plugin ${p.module}: the factory must return an object with a name`);
    plugins.push(plugin);
  }
  return plugins;
}

/**
 * An npm package plugin is looked up from the config file's directory (its node_modules), like any
 * dependency of the deployment; failing that, from the gateway's own installation.
 */
function packageSpecifier(name: string, baseDir: string): string {
  try {
    return pathToFileURL(createRequire(join(baseDir, 'mcpgw.config')).resolve(name)).href;
  } catch {
    return name;
  }
}

export async function startSingleNode(config: GatewayConfig, opts: StartOptions = {}): Promise<RunningNode> {
  const log = opts.log ?? createLogger(config.log.level);
  const plugins = await loadPlugins(config, opts.baseDir ?? process.cwd(), log);
  // Ports on their embedded adapters; cluster adapters (Redis, Postgres, NATS) plug in here later.
  const { sessions, events, replicas } = sessionStores(config);
  // Replicas continue each other's sessions, so they must accept each other's pagination cursors.
  if (config.sessions.store === 'redis' && config.redis)
    useCursorKey(await sharedSecret(config.redis.url, 'cursors', { keyPrefix: config.redis.keyPrefix }));
  // The registry is what runs: seeded from the file, changed by operators (docs/registry.md).
  const stores = await openNodeStores(config, { baseDir: opts.baseDir ?? process.cwd(), log });
  const servers = await serversToStart(config, stores.registry);

  // Breaker verdicts and the response cache's second tier, shared by the region's cores through Redis.
  const pools =
    config.pools.sharedState === 'redis' && config.redis
      ? {
          breakerState: new RedisBreakerState(config.redis.url, { keyPrefix: config.redis.keyPrefix }),
          sharedCache: new RedisResponseCache(config.redis.url, { keyPrefix: config.redis.keyPrefix }),
        }
      : undefined;
  const tracing = await startTracing(config, log, opts.spanProcessors);
  const metrics = metricsOf(config);
  const usage = new UsageAnalytics(config.telemetry.usage);
  const observe = observer(log, metrics, usage);
  const quotas = config.quotas.enabled ? await quotasOf(config, log) : undefined;
  const core = new GatewayCore({
    config: { ...config, servers },
    log,
    plugins,
    sessions,
    replicaId: replicas?.replicaId,
    audit: stores.audit,
    observe,
    pools,
    stages: quotas?.stages,
    replicaQuota: quotas?.replicaQuota,
    ...(stores.vault && stores.tokens && { credentials: { vault: stores.vault, tokens: stores.tokens } }),
    approvals: stores.db ? new PostgresApprovalStore(stores.db) : undefined,
  });
  // Quota refusals, queue depth and cache lookups, read from their owners' counters at each scrape.
  exportStateMetrics(metrics, { ...(quotas && { quotas }), cache: core.responseCache });
  // Registry changes (from an operator, or another gateway sharing the store) apply without a restart,
  // one at a time per server, in the order they were announced.
  const applying = new Map<string, Promise<void>>();
  const stopWatching = stores.registry.watch((change) => {
    const name = change.type === 'upsert' ? serverId(change.entry.server) : change.name;
    const parsed = change.type === 'upsert' ? runtimeServerSchema.safeParse(change.entry.server) : undefined;
    if (parsed && !parsed.success) {
      // Whoever wrote it bypassed the schema: the running server stays as it was.
      log.error(
        { server: name, problems: parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`) },
        'invalid registry entry not applied',
      );
      return;
    }
    const server = parsed?.data;
    const next = (applying.get(name) ?? Promise.resolve())
      .then(() => core.applyServer(name, server))
      .catch((err: unknown) => log.error({ err, server: name }, 'registry change not applied'));
    applying.set(name, next);
  });
  // Virtual servers (/v/{name}/mcp) are the store's, changed live like the registry's servers.
  const virtuals = await followVirtualServers(stores.virtualServers, core, config.virtualServers, log);
  const started = core.start();
  if (opts.waitForBackends !== false) await started;
  const ownKeys = opts.apiKeys ? undefined : apiKeyStoreFor(config);
  const apiKeys = opts.apiKeys ?? ownKeys;
  const tls = config.listen.tls;
  // /mcp across the federation (other regions' and domains' scopes), when this node may reach cores.
  const merged = federatedSingle(config, core, log);
  const { app, endpoint, security, drain } = buildEdgeApp({
    config,
    core: merged?.core ?? core,
    sessions,
    events,
    replicas,
    log,
    apiKeys,
    metrics,
    usage,
    quotas,
    // The pool is this process's: an in-session call's caller quota is decided with its pool call.
    deferCallerQuotas: merged === undefined,
    callerOf: opts.callerOf,
    ...(tls && { https: serverTlsOptions(tls) }),
  });
  // The admin REST API (docs/admin-api.md): changes go through the registry, whose watch applies them;
  // the stored policies (scope "*" seeded from the file's) are what the core enforces, live.
  const adminStore = await adminStoreOf(stores.db, config);
  // With federation.controlPlane, the bus's policies and limits are in force before the node listens
  // (a restart picks up the current ones), and the admin API's policies are the bus's.
  let gatewayId = config.federation?.gatewayId ?? 'starting';
  const control = await startControlPlane(config, { core, quotas, log, gatewayId: () => gatewayId }).catch(
    async (err: unknown) => {
      await core.close();
      throw err;
    },
  );
  const policies = control?.policies
    ? { reload: async () => {}, stop: async () => {} }
    : await enforceStoredPolicies(adminStore, core, log);
  await registerAdminApi(
    app,
    {
      config,
      log,
      registry: stores.registry,
      virtualServers: appliedOnWrite(stores.virtualServers, virtuals.apply),
      store: control?.policies ? busPolicyStore(adminStore, control.plane) : adminStore,
      core: adminCoreView(core),
      apiKeys,
      ...(control && { controlPlane: control.plane }),
    },
    [
      // Governance (docs/governance.md): approvals and lifecycle transitions act on every tenant's servers,
      // so only a full admin may use them; a tenant admin gets 403.
      async (scope) => {
        scope.addHook('preHandler', async (req, reply) => {
          if (req.adminCaller?.tenant !== undefined)
            return reply.status(403).send({
              error: {
                status: 403,
                code: 'FORBIDDEN',
                message: 'governance needs the admin role, not a tenant admin',
              },
            });
        });
        await governanceRoutes(scope, {
          governance: core.governance,
          registry: stores.registry,
          actorOf: (req) => (req as FastifyRequest).adminCaller?.actor ?? 'admin',
        });
      },
    ],
  );
  // The config file is watched: servers it owns are re-seeded, so its edits apply like an admin's.
  const fileWatch = opts.configFile
    ? watchConfigFile(opts.configFile, stores.registry, log, adminStore, stores.virtualServers)
    : undefined;
  // Listening to the other replicas before taking requests: nothing addressed to this one is missed.
  await replicas?.listen((m) => endpoint.onReplicaMessage(m));
  await app.listen({ host: config.listen.host, port: config.listen.port });
  const tlsWatch = tls ? watchServerTls(app.server as unknown as TlsServer, tls, log) : undefined;
  const url = listenUrl(app.server, config);
  // After listening: the registry entry names the URL where this node is reached.
  let federation: FederationNode | undefined;
  try {
    gatewayId = gatewayIdOf(config, url);
    federation = await startFederation(
      config,
      core,
      url,
      log,
      { ...(control && { bus: control.bus }) },
      metrics,
    );
    if (federation) await merged?.attach(federation);
  } catch (err) {
    await control?.close();
    await merged?.close();
    await app.close();
    await core.close();
    throw new Error(`federation: ${(err as Error).message}`, { cause: err });
  }
  log.info(
    {
      url,
      role: config.role,
      region: config.region,
      store: config.store.kind,
      servers: servers.map(serverId),
    },
    'mcpgw listening',
  );
  let closed: Promise<void> | undefined;
  return {
    url,
    core,
    stores,
    ...(federation && { federation }),
    security,
    metrics,
    usage,
    quotas,
    drain,
    close: () =>
      (closed ??= (async () => {
        // Leaving the registry first: other gateways stop routing here before the listener goes.
        await control?.close();
        await federation?.close();
        stopWatching();
        await policies.stop();
        virtuals.stop();
        fileWatch?.close();
        tlsWatch?.close();
        await app.close();
        // After the sessions ended: their sessions on other regions' cores are closed through it.
        await merged?.close();
        await Promise.all(applying.values());
        await core.close();
        await Promise.all([
          sessions.close(),
          events.close(),
          stores.close(),
          replicas?.close(),
          ownKeys?.close(),
          pools?.breakerState.close(),
          quotas?.close(),
        ]);
        await tracing?.shutdown();
      })()),
  };
}

/**
 * Text up to this many UTF-16 units is counted before its answer goes out (at most ~90 tokens: a few µs;
 * 1024 characters took ~30 µs, too much to add to a call's latency).
 */
const SMALL_RESULT = 256;

/** A result whose tokens are counted at once: no content, or a single short text item. */
function smallResult(result: JsonObject): boolean {
  const content = result.content;
  if (!Array.isArray(content) || content.length > 1) return false;
  if (content.length === 0) return result.structuredContent === undefined;
  const text = (content[0] as { text?: unknown }).text;
  return typeof text === 'string' && text.length <= SMALL_RESULT;
}

/**
 * What the core reports per request goes to the metrics (tool results' token counts too), the usage
 * analytics and, at debug level, the access log (never the arguments: the request carries them, the
 * observation does not).
 */
export function observer(
  log: Logger,
  metrics: GatewayMetrics | undefined,
  usage: UsageAnalytics,
): (o: CoreObservation) => void {
  const access = log.isLevelEnabled?.('debug') ?? false;
  // With metrics on, every tool result's tokens are counted: the encoding is loaded now, not by the
  // first call (a process without metrics and REST servers never loads it).
  if (metrics) loadTokenizer();
  // Tool results' tokens, with the cached counter: a small result's at once (a few µs; kept for a later
  // turn of the event loop, every result outlived a young-generation collection: docs/observability.md),
  // a large one's after the answer is on its way, all those of a turn in one callback.
  let results: CoreObservation[] = [];
  const countTokens = (server: string, tool: string, result: JsonObject): void => {
    try {
      metrics!.observeResultTokens(server, tool, resultTokens.ofResult(result));
    } catch (err) {
      log.warn({ err: (err as Error).message, server, tool }, 'tool result tokens not counted');
    }
  };
  const countLater = (): void => {
    const batch = results;
    results = [];
    for (const o of batch) countTokens(o.server!, o.tool!, o.result!);
  };
  return (o) => {
    metrics?.observeRequest(o);
    if (metrics && o.result && o.server !== undefined && o.tool !== undefined) {
      if (smallResult(o.result)) countTokens(o.server, o.tool, o.result);
      else if (results.push(o) === 1) setImmediate(countLater);
    }
    usage.record({
      server: o.server,
      tenant: o.tenant,
      user: o.principal,
      tool: o.tool,
      ok: o.outcome === 'ok' || o.outcome === 'cancelled',
      ms: o.totalMs,
    });
    if (access)
      log.debug(
        {
          sessionId: o.sessionId,
          requestId: o.rpcId,
          ...(o.traceId !== undefined && { traceId: o.traceId }),
          method: o.method,
          tool: o.tool,
          server: o.server,
          outcome: o.outcome,
          code: o.code,
          ms: Math.round(o.totalMs * 1000) / 1000,
          backendMs: o.backendMs === undefined ? undefined : Math.round(o.backendMs * 1000) / 1000,
        },
        'request',
      );
  };
}

/** Sessions and SSE logs: in memory for one node, in Redis (with a channel between replicas) when shared. */
export function sessionStores(config: GatewayConfig): {
  sessions: SessionStore;
  events: EventStore;
  replicas?: ReplicaChannel;
} {
  if (config.sessions.store === 'memory' || !config.redis)
    return {
      sessions: new MemorySessionStore(),
      events: new MemoryEventStore(config.sessions.eventRetention),
    };
  const { url, keyPrefix } = config.redis;
  return {
    sessions: new RedisSessionStore(url, { keyPrefix }),
    events: new RedisEventStore(url, {
      keyPrefix,
      ...config.sessions.eventRetention,
      sessionTtlMs: config.sessions.idleTimeoutMs,
    }),
    replicas: new RedisReplicaChannel(url, { keyPrefix }),
  };
}

export function configBaseDir(file: string): string {
  return dirname(resolve(file));
}

/** Quotas on their store: this process's memory, or the shared Redis (waited for briefly at start). */
export async function quotasOf(config: GatewayConfig, log: Logger): Promise<Quotas> {
  const q = config.quotas;
  if (q.store === 'memory' || (!config.redis && !q.redisCluster))
    return createQuotas({ config: q, store: new MemoryQuotaStore(), log });
  const store = new RedisQuotaStore(q.redisCluster ?? config.redis!.url, {
    keyPrefix: config.redis?.keyPrefix ?? 'mcpgw',
    commandTimeoutMs: q.redisTimeoutMs,
  });
  if (!(await store.ready()))
    log.warn({}, 'quota store (Redis) not reachable at start: each dimension follows its onStoreFailure');
  return createQuotas({ config: q, store, log });
}
