/**
 * Admin routes for governance, as a standalone Fastify plugin that takes its dependencies: held-back
 * tools, approvals and lifecycle transitions. Authentication and the admin role are the mounting API's
 * (register this plugin inside its protected scope).
 */
import type { FastifyInstance } from 'fastify';
import { GatewayError, ERRORS } from '../../shared/errors.js';
import { LIFECYCLE_STAGES, type LifecycleStage } from '../../shared/config/governance-schema.js';
import { RegistryConflictError, type RegistryStore } from '../../shared/ports/registry-store.js';
import { transitionLifecycle } from '../governance/lifecycle.js';
import type { ToolGovernance } from '../governance/tool-governance.js';

export interface GovernanceRouteDeps {
  governance: ToolGovernance;
  registry: RegistryStore;
  /** Who is making the change (the authenticated admin), recorded with it. */
  actorOf: (req: unknown) => string;
}

const NAME = /^[A-Za-z0-9_.-]{1,128}$/;

export async function governanceRoutes(app: FastifyInstance, deps: GovernanceRouteDeps): Promise<void> {
  app.setErrorHandler((err, _req, reply) => {
    if (err instanceof GatewayError)
      return reply
        .status(ERRORS[err.code].http === 200 ? 400 : ERRORS[err.code].http)
        .send({ code: err.code, message: err.message, data: err.detail });
    if (err instanceof RegistryConflictError)
      return reply.status(409).send({ code: 'CONFLICT', message: err.message });
    return reply
      .status((err as { statusCode?: number }).statusCode ?? 500)
      .send({ message: (err as Error).message });
  });

  app.get('/governance/held', async (req) => {
    const server = (req.query as { server?: string }).server;
    return { held: deps.governance.heldTools(server) };
  });

  app.post('/governance/approvals', async (req, reply) => {
    const b = (req.body ?? {}) as Record<string, unknown>;
    if (
      typeof b.server !== 'string' ||
      !NAME.test(b.server) ||
      typeof b.tool !== 'string' ||
      !NAME.test(b.tool)
    )
      return reply.status(400).send({ message: 'body: "server" and "tool" must be names' });
    if (
      b.expectedHash !== undefined &&
      (typeof b.expectedHash !== 'string' || !/^[0-9a-f]{64}$/.test(b.expectedHash))
    )
      return reply.status(400).send({ message: 'body: "expectedHash" must be a sha256 hex digest' });
    const approval = await deps.governance.approve({
      server: b.server,
      tool: b.tool,
      by: deps.actorOf(req),
      expectedHash: b.expectedHash as string | undefined,
    });
    return reply.status(201).send(approval);
  });

  app.post('/governance/lifecycle', async (req, reply) => {
    const b = (req.body ?? {}) as Record<string, unknown>;
    if (typeof b.server !== 'string' || !NAME.test(b.server))
      return reply.status(400).send({ message: 'body: "server" must be a name' });
    if (b.tool !== undefined && (typeof b.tool !== 'string' || !NAME.test(b.tool)))
      return reply.status(400).send({ message: 'body: "tool" must be a name' });
    if (!LIFECYCLE_STAGES.includes(b.to as LifecycleStage))
      return reply.status(400).send({ message: `body: "to" must be one of ${LIFECYCLE_STAGES.join(', ')}` });
    if (b.deprecationNotice !== undefined && typeof b.deprecationNotice !== 'string')
      return reply.status(400).send({ message: 'body: "deprecationNotice" must be a string' });
    const entry = await transitionLifecycle(deps.registry, {
      server: b.server,
      tool: b.tool as string | undefined,
      to: b.to as LifecycleStage,
      deprecationNotice: b.deprecationNotice as string | undefined,
      by: deps.actorOf(req),
    });
    if (!entry) return reply.status(404).send({ message: `unknown server: ${b.server}` });
    return { server: b.server, version: entry.version, updatedBy: entry.updatedBy };
  });
}
