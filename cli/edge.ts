/**
 * Composition root of the edge role: the client-facing app (sessions, streams, the 2026 endpoint, legacy
 * SSE) with its core reached over the internal API (edge/forward/remote-core.ts) instead of a function
 * call. An edge keeps nothing another edge cannot recover: sessions and stream logs are in the shared
 * stores, and the core side of a session is found by its id from any edge.
 */
import { randomBytes } from 'node:crypto';
import type { Server as TlsServer } from 'node:tls';
import { sharedSecret } from '../shared/adapters/redis/shared-secret.js';
import type { GatewayConfig } from '../shared/config/schema.js';
import { watchFiles } from '../shared/files/watch.js';
import { InternalTokenSigner } from '../shared/identity/internal-token.js';
import { createLogger } from '../shared/log.js';
import { useCursorKey } from '../shared/mcp/cursor.js';
import { readPem, serverTlsOptions, watchServerTls } from '../shared/tls/server-tls.js';
import { buildEdgeApp } from '../edge/http/app.js';
import { RemoteCore, type CoreTarget } from '../edge/forward/remote-core.js';
import { listenUrl, type RunningTier } from './listen.js';
import { startFederation } from './federation.js';
import { coreDiscovery, placementOf } from './core-discovery.js';
import type { FederationNode } from '../federation/federation-node.js';
import { quotasOf, sessionStores, type StartOptions } from './single.js';
import { exportStateMetrics, metricsOf, startTracing } from './telemetry.js';
import { startControlPlane, wantsControlPlane } from './control-plane.js';
import { apiKeyStoreFor } from './api-keys.js';
import { openAuditTrail } from './stores.js';
import { forwardAuditor } from '../edge/forward/forward-audit.js';
import { mountEdgeAdminApi } from './edge-admin.js';
import { federatedAggregate, followRemoteCatalog } from './federated-aggregate.js';

export async function startEdgeNode(config: GatewayConfig, opts: StartOptions = {}): Promise<RunningTier> {
  const log = opts.log ?? createLogger(config.log.level);
  const { sessions, events, replicas } = sessionStores(config);
  if (config.sessions.store === 'redis' && config.redis)
    useCursorKey(await sharedSecret(config.redis.url, 'cursors', { keyPrefix: config.redis.keyPrefix }));
  const signer = new InternalTokenSigner({
    keyFile: config.internal.signingKey!,
    ...(config.internal.signingKid && { kid: config.internal.signingKid }),
    issuer: config.internal.id ?? `edge-${config.region}`,
    region: config.region,
    ttlSeconds: config.internal.tokenTtlSeconds,
    log,
  });
  // Tracing and the HTTP-side metrics (sessions, auth failures, blocked sources); requests are observed
  // by the core, which serves its own /metrics.
  const tracing = await startTracing(config, log, opts.spanProcessors);
  const metrics = metricsOf(config);
  const instance = replicas?.replicaId ?? randomBytes(4).toString('hex');
  // The calls this edge forwards, audited on this side too (the core records them on its own).
  const audit = await openAuditTrail(config, { baseDir: opts.baseDir ?? process.cwd(), log });
  let federation: FederationNode | undefined;
  const remote = new RemoteCore({
    cores: config.cores.map(coreTarget),
    region: config.region,
    instance,
    tokens: signer,
    log,
    ...(audit && { onForwarded: forwardAuditor(audit.audit, config.region) }),
    ...(config.federation && {
      discovery: config.federation.discoverCores,
      placement: placementOf(config, () => federation?.index),
      drPartners: config.federation.drPartners,
      // A DR lease changes hands about downAfterMs after the last heartbeat: calls wait that out.
      drWaitMs: 3 * config.federation.downAfterMs,
    }),
  });
  // /mcp across the federation: other regions' and domains' scopes merged into this region's aggregate.
  const merged =
    config.federation?.mergeRemote === true ? federatedAggregate(config, remote, log) : undefined;
  const core = merged ?? remote;
  let stopDiscovery: (() => void) | undefined;
  // The caller's own quotas (user, client app, tenant, global, concurrency) are decided here, before the
  // request goes on; the per-tool and per-replica limits and the fair queue are the core's (docs/quotas.md).
  const quotas = config.quotas.enabled ? await quotasOf(config, log) : undefined;
  exportStateMetrics(metrics, quotas ? { quotas } : {});
  let stopMerge: (() => void) | undefined;
  if (config.federation) {
    // An edge is reached by clients, not by gateways: its advertised URL is informational.
    const own = `${config.listen.tls ? 'https' : 'http'}://${config.listen.host}:${config.listen.port}`;
    federation = await startFederation(config, undefined, own, log, { role: 'edge' }, metrics);
    if (federation && config.federation.discoverCores) {
      const tls = config.federation.coreTls;
      stopDiscovery = await coreDiscovery(
        federation.index,
        remote,
        tls && coreTarget({ region: config.region, url: own, tls }),
      );
    }
    if (federation && merged)
      stopMerge = followRemoteCatalog(federation.index, remote, merged, config.region, log);
  }
  await remote.start();
  // federation.controlPlane: the bus's limits are in force before this edge listens (its policies are the
  // cores' to enforce).
  const control = quotas
    ? await startControlPlane(config, {
        quotas,
        log,
        gatewayId: () => config.federation?.gatewayId ?? `edge-${config.region}-${instance}`,
      }).catch(async (err: unknown) => {
        stopDiscovery?.();
        stopMerge?.();
        await Promise.allSettled([federation?.close(), core.close(), quotas.close()]);
        throw err;
      })
    : undefined;
  if (!quotas && wantsControlPlane(config))
    log.warn(
      {},
      'federation.controlPlane on an edge without quotas: its cores enforce policies; nothing here',
    );
  const tls = config.listen.tls;
  // API keys are checked here, at the edge (with `store: redis`, every edge sees a revocation at once).
  const apiKeys = apiKeyStoreFor(config);
  const { app, endpoint, drain } = buildEdgeApp({
    config,
    core,
    sessions,
    events,
    apiKeys,
    ...(replicas && { replicas }),
    log,
    metrics,
    ...(quotas && { quotas }),
    ...(tls && { https: serverTlsOptions(tls) }),
  });
  // The admin API, when this edge shares the cores' Postgres store (cli/edge-admin.ts).
  const closeAdmin = await mountEdgeAdminApi(app, {
    config,
    log,
    core: remote,
    ...(apiKeys && { apiKeys }),
    baseDir: opts.baseDir ?? process.cwd(),
  });
  await replicas?.listen((m) => endpoint.onReplicaMessage(m));
  await app.listen({ host: config.listen.host, port: config.listen.port });
  const tlsWatch = tls ? watchServerTls(app.server as unknown as TlsServer, tls, log) : undefined;
  const url = listenUrl(app.server, config);
  log.info(
    { url, role: 'edge', instance, region: config.region, cores: config.cores.map((c) => c.url) },
    'mcpgw listening',
  );
  let closed: Promise<void> | undefined;
  return {
    url,
    drain,
    close: () =>
      (closed ??= (async () => {
        tlsWatch?.close();
        stopDiscovery?.();
        stopMerge?.();
        await control?.close();
        await federation?.close();
        await app.close();
        await core.close();
        await audit?.close();
        await closeAdmin?.();
        signer.close();
        await Promise.all([
          sessions.close(),
          events.close(),
          replicas?.close(),
          apiKeys?.close(),
          quotas?.close(),
        ]);
        await tracing?.shutdown();
      })()),
  };
}

/** A configured core as the forward stage sees it: its token audience and TLS material (re-read on change). */
export function coreTarget(c: GatewayConfig['cores'][number]): CoreTarget {
  const t = c.tls;
  const files = t ? [t.ca, t.cert, t.key].filter((f): f is string => f !== undefined) : [];
  return {
    id: c.id ?? c.region,
    region: c.region,
    url: c.url,
    ...(t && {
      connect: () => ({
        ...(t.ca && { ca: readPem(t.ca) }),
        ...(t.cert && { cert: readPem(t.cert) }),
        ...(t.key && { key: readPem(t.key) }),
        ...(t.serverName && { servername: t.serverName }),
        minVersion: 'TLSv1.2',
      }),
    }),
    ...(files.length > 0 && {
      watch: (onChange: () => void) => {
        const w = watchFiles(files, onChange);
        return () => w.close();
      },
    }),
  };
}
