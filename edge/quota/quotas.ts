/**
 * Quotas and admission control as one unit the composition root wires in: the HTTP hook (caller
 * dimensions, per-address connections), the pipeline's `quota` and `admission` stages, and the stats.
 */
import type { Context } from '@opentelemetry/api';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { QuotaLimits, QuotasConfig } from '../../shared/config/schema.js';
import type { Principal } from '../../shared/identity/principal.js';
import type { Logger } from '../../shared/log.js';
import type { Stage } from '../../shared/pipeline/pipeline.js';
import type { GatewayError } from '../../shared/errors.js';
import type { QuotaStore } from '../../shared/ports/quota-store.js';
import { inStage, STAGE } from '../../shared/telemetry/tracing.js';
import { refusalError } from './answers.js';
import { installHttpAdmission } from './http-admission.js';
import { QuotaPolicy } from './policy.js';
import { QuotaGuard, type QuotaStats } from './quota-guard.js';
import { admissionStage, BackendQueues } from './quota-stage.js';
import { DeferredCallerQuotas, isCallerRefusal } from './deferred-caller.js';
import { RecentCallers } from './recent-callers.js';

export interface Quotas {
  /** The pipeline stage: admission (the per-tool and per-replica limits are the pool's, `replicaQuota`). */
  readonly stages: Stage[];
  /**
   * The HTTP hook. `deferCallers` (a single node whose pool is this process's): an in-session POST's
   * caller decision waits for the request's pool call, which makes it with its own (deferred-caller.ts).
   */
  installHttp(
    app: FastifyInstance,
    callerOf: (req: FastifyRequest) => Principal,
    options?: { deferCallers?: boolean },
  ): void;
  /** The caller decisions left for later, when `installHttp` was told to defer them. */
  readonly deferred: DeferredCallerQuotas | undefined;
  /**
   * Tells the pipeline stages who a principal key stands for (tenant, roles), where no HTTP hook of this
   * process saw the caller: a core learns it from each request's internal token.
   */
  remember(p: Principal): void;
  /**
   * For the pool, before each attempt: the replica's `server` limit and (when `tool` is given) the
   * caller's per-tool limit, one store decision. Undefined admits; a refusal by the replica's limit
   * says `reroute` (another replica may serve), a per-tool refusal does not.
   */
  replicaQuota(
    server: string,
    replica: string,
    ask: { principal: string; tool?: string; trace?: Context | undefined; request?: object },
  ): Promise<{ error: GatewayError; reroute: boolean } | undefined>;
  stats(): QuotaStats & { backends: Record<string, { inFlight: number; waiting: number }> };
  /**
   * Puts the file's limits with `limits` on top in force (each key it names replaces the file's; an
   * empty object: the file's alone). Applies from the next request; counters, leases and queues stay.
   */
  setLimits(limits: QuotaLimits): void;
  close(): Promise<void>;
}

export function createQuotas(o: { config: QuotasConfig; store: QuotaStore; log: Logger }): Quotas {
  const log = o.log.child({ component: 'quotas' });
  const policy = new QuotaPolicy(o.config);
  const guard = new QuotaGuard({ store: o.store, log, expectedReplicas: o.config.expectedReplicas });
  const callers = new RecentCallers();
  const callerOf = (key: string) => callers.get(key);
  const queues = new BackendQueues(o.config.admission.backend);
  let deferred: DeferredCallerQuotas | undefined;
  return {
    stages: [admissionStage({ queues, callerOf })],
    installHttp: (app, callerOfRequest, options) => {
      if (options?.deferCallers) deferred = new DeferredCallerQuotas(guard);
      installHttpAdmission(app, {
        guard,
        policy,
        callerOf: callerOfRequest,
        remember: (p) => callers.remember(p),
        connectionsPerIp: o.config.admission.connectionsPerIp,
        concurrency: o.config.concurrency,
        ...(deferred && { deferred }),
        log,
      });
    },
    get deferred() {
      return deferred;
    },
    remember: (p) => callers.remember(p),
    replicaQuota: async (server, replica, ask) => {
      // The caller's own dimensions, when the HTTP hook left them to this call: all in one decision.
      const caller = deferred?.undecided(ask.request);
      const dims = [
        ...(caller ? caller.dims : []),
        ...policy.replicaDimensions(server, replica),
        ...(ask.tool !== undefined ? policy.targetDimensions(callerOf(ask.principal), server, ask.tool) : []),
      ];
      if (dims.length === 0 && !caller?.conc) return undefined;
      const v = await inStage(
        STAGE.quota,
        ask.trace,
        () => guard.decide(dims, caller?.conc),
        () => ({
          'mcpgw.server': server,
          ...(ask.tool !== undefined && { 'mcp.tool.name': ask.tool }),
          'mcpgw.quota.dimensions': dims.length,
        }),
      );
      // Refused by the replica's or the tool's limit, nothing was charged: the caller's decision stays open
      // (the next replica's attempt makes it, or the endpoint does, alone, before answering).
      const callerRefused = caller !== undefined && !v.allowed && isCallerRefusal(v, caller);
      if (caller && (v.allowed || callerRefused)) deferred!.decided(caller, v);
      if (v.allowed) return undefined;
      if (callerRefused) return { error: refusalError(v).error, reroute: false };
      const reroute = v.refusal.kind === 'rate' && v.refusal.report.dimension.name === 'server';
      return {
        error: refusalError(v, { server, ...(reroute ? { replica } : { tool: ask.tool }) }).error,
        reroute,
      };
    },
    stats: () => ({ ...structuredClone(guard.stats), backends: queues.stats }),
    setLimits: (limits) => policy.replace({ ...o.config, ...limits }),
    close: () => guard.close(),
  };
}
