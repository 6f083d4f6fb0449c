/**
 * The pipeline's `admission` stage: once the request is parsed and names its target server, a slot of
 * that server's fair queue (priority class, then users in turn), held until the answer is known;
 * GW_QUEUE_TIMEOUT / GW_QUEUE_FULL when none comes. The caller's own dimensions were checked at the HTTP
 * layer before the body was read; the per-tool and per-replica `server` limits are decided by the pool
 * before each attempt (one store decision), since only it knows which replica the call goes to.
 * It does not care which tier it runs in: it reads only the pipeline context and its dependencies.
 */
import type { Principal } from '../../shared/identity/principal.js';
import type { PipelineContext, RequestTarget, Stage } from '../../shared/pipeline/pipeline.js';
import { FairQueue, type FairQueueOptions } from './fair-queue.js';

const TARGET = 'mcpgw.quota.target';

async function targetOf(ctx: PipelineContext): Promise<RequestTarget | undefined> {
  if (ctx.state.has(TARGET)) return ctx.state.get(TARGET) as RequestTarget | undefined;
  const t = await ctx.target?.();
  ctx.state.set(TARGET, t);
  return t;
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
