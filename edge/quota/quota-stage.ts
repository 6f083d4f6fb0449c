/**
 * The pipeline's `quota` and `admission` stages. They run once the request is parsed and its target is
 * known (the HTTP layer checked the caller's own dimensions before the body was read):
 * - quota: the target server's and the user's per-tool counters, one store decision; a refusal is a
 *   JSON-RPC error (GW_QUOTA_TOOL / GW_QUOTA_SERVER) whose data names the dimension, limit, window and
 *   retryAfterMs.
 * - admission: a slot of the target server's fair queue (priority class, then users in turn), held until
 *   the answer is known; GW_QUEUE_TIMEOUT / GW_QUEUE_FULL when none comes.
 * Neither cares which tier it runs in: both read only the pipeline context and their dependencies.
 */
import type { Principal } from '../../shared/identity/principal.js';
import type { PipelineContext, RequestTarget, Stage } from '../../shared/pipeline/pipeline.js';
import { inStage, STAGE } from '../../shared/telemetry/tracing.js';
import { refusalError } from './answers.js';
import { FairQueue, type FairQueueOptions } from './fair-queue.js';
import type { QuotaPolicy } from './policy.js';
import type { QuotaGuard } from './quota-guard.js';

const TARGET = 'mcpgw.quota.target';

async function targetOf(ctx: PipelineContext): Promise<RequestTarget | undefined> {
  if (ctx.state.has(TARGET)) return ctx.state.get(TARGET) as RequestTarget | undefined;
  const t = await ctx.target?.();
  ctx.state.set(TARGET, t);
  return t;
}

export function quotaStage(o: {
  guard: QuotaGuard;
  policy: QuotaPolicy;
  callerOf: (principalKey: string) => Principal;
}): Stage {
  return {
    name: 'quota',
    async run(ctx, next) {
      const target = await targetOf(ctx);
      if (target) {
        const dims = o.policy.targetDimensions(o.callerOf(ctx.session.principal), target.server, target.tool);
        if (dims.length > 0)
          await inStage(
            STAGE.quota,
            async () => {
              const v = await o.guard.decide(dims);
              if (!v.allowed)
                throw refusalError(v, {
                  server: target.server,
                  ...(target.tool ? { tool: target.tool } : {}),
                }).error;
            },
            () => ({
              'mcpgw.server': target.server,
              ...(target.tool !== undefined && { 'mcp.tool.name': target.tool }),
              'mcpgw.quota.dimensions': dims.length,
            }),
          );
      }
      return next();
    },
  };
}

export interface PriorityClass {
  name: string;
  roles: readonly string[];
  tenants: readonly string[];
}

/** One FairQueue per backend server, created on first use. */
export class BackendQueues {
  private readonly queues = new Map<string, FairQueue>();
  private readonly classes: string[];

  constructor(
    private readonly o: Omit<FairQueueOptions, 'classes'> & { priorities: readonly PriorityClass[] },
  ) {
    this.classes = [...o.priorities.map((p) => p.name), 'default'];
  }

  classOf(p: Principal): string {
    const hit = this.o.priorities.find(
      (c) => c.roles.some((r) => p.roles.includes(r)) || c.tenants.includes(p.tenant),
    );
    return hit?.name ?? 'default';
  }

  queue(server: string): FairQueue {
    let q = this.queues.get(server);
    if (!q) this.queues.set(server, (q = new FairQueue({ ...this.o, classes: this.classes }, server)));
    return q;
  }

  get stats(): Record<string, { inFlight: number; waiting: number }> {
    return Object.fromEntries([...this.queues].map(([s, q]) => [s, q.stats]));
  }
}

export function admissionStage(o: {
  queues: BackendQueues;
  callerOf: (principalKey: string) => Principal;
}): Stage {
  return {
    name: 'admission',
    async run(ctx, next) {
      const target = await targetOf(ctx);
      if (!target) return next();
      const caller = o.callerOf(ctx.session.principal);
      const release = await o.queues
        .queue(target.server)
        .acquire(ctx.session.principal, o.queues.classOf(caller));
      try {
        await next();
      } finally {
        release();
      }
    },
  };
}
