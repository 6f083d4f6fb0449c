/**
 * Composition root of the single role: edge and core in one process, joined by a function call, on the
 * embedded stores (no external service needed). Tests build nodes with the same function.
 */
import { createRequire } from 'node:module';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { MemoryEventStore } from '../shared/adapters/memory/event-store.js';
import { InProcessBus } from '../shared/adapters/memory/federation-bus.js';
import { MemoryRegistryStore } from '../shared/adapters/memory/registry-store.js';
import { MemorySessionStore } from '../shared/adapters/memory/session-store.js';
import { RedisEventStore } from '../shared/adapters/redis/event-store.js';
import { RedisReplicaChannel } from '../shared/adapters/redis/replica-channel.js';
import { RedisSessionStore } from '../shared/adapters/redis/session-store.js';
import { sharedSecret } from '../shared/adapters/redis/shared-secret.js';
import { useCursorKey } from '../shared/mcp/cursor.js';
import type { ReplicaChannel } from '../shared/ports/replica-channel.js';
import type { EventStore } from '../shared/ports/event-store.js';
import type { SessionStore } from '../shared/ports/session-store.js';
import type { GatewayConfig } from '../shared/config/schema.js';
import { createLogger, type Logger } from '../shared/log.js';
import type { GatewayPlugin, PluginFactory } from '../shared/pipeline/pipeline.js';
import { GatewayCore } from '../core/mcp/gateway-core.js';
import { buildEdgeApp } from '../edge/http/app.js';
import { createQuotas, type Quotas } from '../edge/quota/quotas.js';
import { MemoryQuotaStore } from '../shared/adapters/memory/quota-store.js';
import { RedisQuotaStore } from '../shared/adapters/redis/quota-store.js';
import type { Principal } from '../shared/identity/principal.js';
import type { FastifyRequest } from 'fastify';

export interface RunningNode {
  /** Base URL, e.g. http://127.0.0.1:8080 */
  url: string;
  core: GatewayCore;
  /** Quotas and admission control, when `quotas.enabled`. */
  quotas?: Quotas;
  close(): Promise<void>;
}

export interface StartOptions {
  log?: Logger;
  /** Directory that relative plugin paths are resolved against (the config file's). */
  baseDir?: string;
  /** Wait for every backend's first connection attempt before listening. */
  waitForBackends?: boolean;
  /** Who is calling, for tests that need several principals before authentication exists. */
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
  const registry = new MemoryRegistryStore();
  const bus = new InProcessBus();
  for (const s of config.servers) await registry.upsert(s, 'config');

  const quotas = config.quotas.enabled ? await quotasOf(config, log) : undefined;
  const core = new GatewayCore({
    config,
    log,
    plugins,
    sessions,
    replicaId: replicas?.replicaId,
    stages: quotas?.stages,
  });
  const started = core.start();
  if (opts.waitForBackends !== false) await started;
  const { app, endpoint } = buildEdgeApp({
    config,
    core,
    sessions,
    events,
    replicas,
    log,
    quotas,
    callerOf: opts.callerOf,
  });
  // Listening to the other replicas before taking requests: nothing addressed to this one is missed.
  await replicas?.listen((m) => endpoint.onReplicaMessage(m));
  await app.listen({ host: config.listen.host, port: config.listen.port });
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : config.listen.port;
  const host = config.listen.host.includes(':') ? `[${config.listen.host}]` : config.listen.host;
  const url = `http://${host}:${port}`;
  log.info(
    { url, role: config.role, region: config.region, servers: config.servers.map((s) => s.name) },
    'mcpgw listening',
  );
  let closed: Promise<void> | undefined;
  return {
    url,
    core,
    quotas,
    close: () =>
      (closed ??= (async () => {
        await app.close();
        await core.close();
        await Promise.all([
          sessions.close(),
          events.close(),
          registry.close(),
          bus.close(),
          replicas?.close(),
          quotas?.close(),
        ]);
      })()),
  };
}

/** Quotas on their store: this process's memory, or the shared Redis (waited for briefly at start). */
async function quotasOf(config: GatewayConfig, log: Logger): Promise<Quotas> {
  const q = config.quotas;
  if (q.store === 'memory' || !config.redis)
    return createQuotas({ config: q, store: new MemoryQuotaStore(), log });
  const store = new RedisQuotaStore(config.redis.url, {
    keyPrefix: config.redis.keyPrefix,
    commandTimeoutMs: q.redisTimeoutMs,
  });
  if (!(await store.ready()))
    log.warn({}, 'quota store (Redis) not reachable at start: each dimension follows its onStoreFailure');
  return createQuotas({ config: q, store, log });
}

/** Sessions and SSE logs: in memory for one node, in Redis (with a channel between replicas) when shared. */
function sessionStores(config: GatewayConfig): {
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
