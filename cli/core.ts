/**
 * Composition root of the core role: the backends and the internal API edges call (docs/adr/0005). It
 * authenticates no client: every request must carry an internal token signed by a trusted edge key.
 */
import { createServer as createHttpServer, type Server } from 'node:http';
import { Server as NetServer } from 'node:net';
import { createServer as createHttpsServer } from 'node:https';
import type { Server as TlsServer } from 'node:tls';
import { MemorySessionStore } from '../shared/adapters/memory/session-store.js';
import { RedisSessionStore } from '../shared/adapters/redis/session-store.js';
import { sharedSecret } from '../shared/adapters/redis/shared-secret.js';
import type { GatewayConfig } from '../shared/config/schema.js';
import { InternalTokenVerifier } from '../shared/identity/internal-token.js';
import { createLogger } from '../shared/log.js';
import { useCursorKey } from '../shared/mcp/cursor.js';
import type { SessionStore } from '../shared/ports/session-store.js';
import { serverTlsOptions, watchServerTls } from '../shared/tls/server-tls.js';
import { BackendIdentity } from '../core/internal/backend-identity.js';
import { InternalApi } from '../core/internal/internal-api.js';
import { GatewayCore } from '../core/mcp/gateway-core.js';
import { listenUrl, type RunningTier } from './listen.js';
import { gatewayIdOf, startFederation } from './federation.js';
import { startControlPlane } from './control-plane.js';
import type { FederationNode } from '../federation/federation-node.js';
import { loadPlugins, observer, quotasOf, type StartOptions } from './single.js';
import { coreOps } from './core-ops.js';
import { openNodeStores } from './stores.js';
import { adminCoreView, adminStoreOf, enforceStoredPolicies } from './admin-api.js';
import { followVirtualServers } from './virtual-servers.js';
import { exportStateMetrics, metricsOf, startTracing } from './telemetry.js';
import { UsageAnalytics } from '../shared/telemetry/usage.js';
import { serverId } from '../shared/mcp/server-versions.js';

export async function startCoreNode(config: GatewayConfig, opts: StartOptions = {}): Promise<RunningTier> {
  const log = opts.log ?? createLogger(config.log.level);
  const coreId = config.internal.id ?? config.region;
  const plugins = await loadPlugins(config, opts.baseDir ?? process.cwd(), log);
  const sessions: SessionStore =
    config.sessions.store === 'redis' && config.redis
      ? new RedisSessionStore(config.redis.url, { keyPrefix: config.redis.keyPrefix })
      : new MemorySessionStore();
  // Cursors are made here (merged lists): cores sharing sessions must accept each other's.
  if (config.sessions.store === 'redis' && config.redis)
    useCursorKey(await sharedSecret(config.redis.url, 'cursors', { keyPrefix: config.redis.keyPrefix }));

  const trusts = config.internal.trustedKeys.length > 0 || config.internal.jwksUrl !== undefined;
  const verifier = trusts
    ? new InternalTokenVerifier({
        audience: coreId,
        trustedKeyFiles: config.internal.trustedKeys,
        ...(config.internal.jwksUrl && { jwksUrl: config.internal.jwksUrl }),
        log,
      })
    : undefined;
  if (!verifier)
    log.warn({}, 'TEST MODE: this core accepts requests without an internal token (loopback only)');
  const identity = new BackendIdentity(config, coreId, log);
  // Set once the federation starts (after listening); read by the DR gate on every request.
  const fed: { node?: FederationNode | undefined } = {};

  // Observability as in the single role: the core is where a request's outcome is known.
  const tracing = await startTracing(config, log, opts.spanProcessors);
  const metrics = metricsOf(config);
  const usage = new UsageAnalytics(config.telemetry.usage);
  // The audit trail (its sink and retention), virtual servers and stored policies; the servers stay the
  // config file's in this role.
  const stores = await openNodeStores(config, { baseDir: opts.baseDir ?? process.cwd(), log });
  const quotas = config.quotas.enabled ? await quotasOf(config, log) : undefined;

  const core = new GatewayCore({
    config,
    log,
    plugins,
    sessions,
    replicaId: coreId,
    audit: stores.audit,
    observe: observer(log, metrics, usage),
    stages: quotas?.stages,
    replicaQuota: quotas?.replicaQuota,
    ...(identity.active && { backendIdentity: (server, id) => identity.headersFor(server, id) }),
  });
  // Quota refusals, queue depth and cache lookups, read from their owners' counters at each scrape.
  exportStateMetrics(metrics, { ...(quotas && { quotas }), cache: core.responseCache });
  // Virtual servers and the stored policies are the shared store's, followed live as on a single node
  // (docs/registry.md, docs/admin-api.md); an edge's admin API asks for its writes at once (sync).
  const virtuals = await followVirtualServers(stores.virtualServers, core, config.virtualServers, log);
  const started = core.start();
  if (opts.waitForBackends !== false) await started;
  // federation.controlPlane: the bus's policies and limits are in force before this core listens.
  let gatewayId = config.federation?.gatewayId ?? coreId;
  const control = await startControlPlane(config, { core, quotas, log, gatewayId: () => gatewayId }).catch(
    async (err: unknown) => {
      await core.close();
      throw err;
    },
  );
  // The bus's policies, when the control plane carries them, replace the stored ones (ADR 0009).
  const policies = control?.policies
    ? { reload: async () => {}, stop: async () => {} }
    : await enforceStoredPolicies(await adminStoreOf(stores.db, config), core, log);

  const api = new InternalApi({
    core,
    sessions,
    verifier,
    identity,
    ...(quotas && { callers: quotas }),
    coreId,
    region: config.region,
    // Ids and plain names: `/servers/payments/mcp` reaches the default version of `payments`.
    servers: [...new Set(config.servers.filter((s) => s.enabled).flatMap((s) => [serverId(s), s.name]))],
    // The edge already bounded the client's body; the frame around it adds little.
    maxBodyBytes: config.http.maxBodyBytes + 64 * 1024,
    idleTimeoutMs: config.sessions.idleTimeoutMs,
    sharedSessions: config.sessions.store === 'redis',
    // DR pairing: the federation (started once listening) fences what this core may run.
    drGate: (scope, drFor) => fed.node?.dr?.gate(scope, drFor),
    sync: (change) => ('policies' in change ? policies.reload() : virtuals.apply(change.virtualServer)),
    // What an edge's admin API shows of a server (GET /admin/api/v1/capabilities).
    capabilities: adminCoreView(core).capabilities,
    log,
  });
  const ops = await coreOps({
    config,
    log,
    core,
    coreId,
    metrics,
    usage,
    sessionCount: () => api.sessionCount,
  });
  const handle: typeof api.handle = (req, res) =>
    ops.handles(req.url) ? ops.handle(req, res) : api.handle(req, res);
  const tls = config.listen.tls;
  const server: Server = tls
    ? (createHttpsServer(serverTlsOptions(tls), handle) as unknown as Server)
    : createHttpServer(handle);
  // Longer than the edges' pool keep-alive, so an edge never writes to a socket the core is closing.
  server.keepAliveTimeout = 75_000;
  server.headersTimeout = 80_000;
  const tlsWatch = tls ? watchServerTls(server as unknown as TlsServer, tls, log) : undefined;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.listen.port, config.listen.host, () => resolve());
  });
  const url = listenUrl(server, config);
  gatewayId = gatewayIdOf(config, url);
  // Edges of every region learn this core (URL, region, audience, servers) from the bus.
  const federation = await startFederation(
    config,
    core,
    url,
    log,
    {
      role: 'core',
      audience: coreId,
      ...(control && { bus: control.bus }),
      ...(config.federation?.domain && { domain: config.federation.domain }),
    },
    metrics,
  ).catch(async (err: unknown) => {
    await control?.close();
    server.close();
    await core.close();
    throw new Error(`federation: ${(err as Error).message}`, { cause: err });
  });
  fed.node = federation;
  log.info(
    { url, role: 'core', coreId, region: config.region, servers: config.servers.map(serverId) },
    'mcpgw listening',
  );
  let closed: Promise<void> | undefined;
  return {
    url,
    drain: async (timeoutMs) => {
      // Edges already send new calls elsewhere (the drain began); those still arriving are refused with a
      // 503 the edge may retry elsewhere. New connections are refused, but idle keep-alive ones stay open
      // until close(): http.Server#close would also close them, and a call an edge sent on one as it closed
      // was lost mid-call, not refused (test/cluster/core-drain-keepalive.test.ts).
      if (server.listening) NetServer.prototype.close.call(server);
      const idle = await api.stopAccepting(timeoutMs);
      return { idle, inflight: api.inflightCount, streams: 0 };
    },
    close: () =>
      (closed ??= (async () => {
        tlsWatch?.close();
        // First, so that edges stop choosing this core at once (its keys are deleted).
        await control?.close();
        await federation?.close();
        verifier?.close();
        identity.close();
        const stopped = new Promise<void>((r) => server.close(() => r()));
        server.closeAllConnections();
        await api.close();
        await stopped;
        virtuals.stop();
        await policies.stop();
        await core.close();
        await ops.close();
        await Promise.all([sessions.close(), stores.close(), quotas?.close()]);
        await tracing?.shutdown();
      })()),
  };
}
