/**
 * Quotas and admission control as one unit the composition root wires in: the HTTP hook (caller
 * dimensions, per-address connections), the pipeline's `quota` and `admission` stages, and the stats.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { QuotasConfig } from '../../shared/config/schema.js';
import type { Principal } from '../../shared/identity/principal.js';
import type { Logger } from '../../shared/log.js';
import type { Stage } from '../../shared/pipeline/pipeline.js';
import type { GatewayError } from '../../shared/errors.js';
import type { QuotaStore } from '../../shared/ports/quota-store.js';
import { refusalError } from './answers.js';
import { installHttpAdmission } from './http-admission.js';
import { QuotaPolicy } from './policy.js';
import { QuotaGuard, type QuotaStats } from './quota-guard.js';
import { admissionStage, BackendQueues, quotaStage } from './quota-stage.js';
import { RecentCallers } from './recent-callers.js';

export interface Quotas {
  /** The pipeline stages, in order: quota, then admission. */
  readonly stages: Stage[];
  installHttp(app: FastifyInstance, callerOf: (req: FastifyRequest) => Principal): void;
  /**
   * The per-replica `server` limit, for the pool: undefined when replica `replica` of `server` may take
   * one more attempt (and it is counted), else the refusal (GW_QUOTA_SERVER) to answer when no replica can.
   */
  replicaQuota(server: string, replica: string): Promise<GatewayError | undefined>;
  stats(): QuotaStats & { backends: Record<string, { inFlight: number; waiting: number }> };
  close(): Promise<void>;
}

export function createQuotas(o: { config: QuotasConfig; store: QuotaStore; log: Logger }): Quotas {
  const log = o.log.child({ component: 'quotas' });
  const policy = new QuotaPolicy(o.config);
  const guard = new QuotaGuard({ store: o.store, log, expectedReplicas: o.config.expectedReplicas });
  const callers = new RecentCallers();
  const callerOf = (key: string) => callers.get(key);
  const queues = new BackendQueues(o.config.admission.backend);
  return {
    stages: [quotaStage({ guard, policy, callerOf }), admissionStage({ queues, callerOf })],
    installHttp: (app, callerOfRequest) =>
      installHttpAdmission(app, {
        guard,
        policy,
        callerOf: callerOfRequest,
        remember: (p) => callers.remember(p),
        connectionsPerIp: o.config.admission.connectionsPerIp,
        concurrency: o.config.concurrency,
        log,
      }),
    replicaQuota: async (server, replica) => {
      const dims = policy.replicaDimensions(server, replica);
      if (dims.length === 0) return undefined;
      const v = await guard.decide(dims);
      return v.allowed ? undefined : refusalError(v, { server, replica }).error;
    },
    stats: () => ({ ...structuredClone(guard.stats), backends: queues.stats }),
    close: () => guard.close(),
  };
}
