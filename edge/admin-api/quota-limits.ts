/**
 * The cluster's quota limits on the control plane (docs/quotas.md, "Limits from the bus"), and what this
 * gateway holds in force from it. Present when `federation.controlPlane` is on; the limits routes when
 * its `quotas` is. Cluster-wide, so for the `admin` role only (a tenant admin gets 403).
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { parseQuotaLimits } from '../../shared/config/schema.js';
import { ControlRevisionConflict } from '../../shared/ports/control-plane.js';
import { callerOf, errors, expectedVersionOf, fail, type AdminPlugin } from './common.js';

export const quotaLimitRoutes: AdminPlugin = async (app, deps) => {
  const plane = deps.controlPlane;
  // Answered before anything else: a disabled feature, a tenant admin.
  const usable = (req: FastifyRequest, reply: FastifyReply, what: 'quotas' | 'status') => {
    if (!plane || (what === 'quotas' && !plane.status().quotas)) {
      fail(
        reply,
        404,
        what === 'quotas'
          ? 'quota limits over the bus are off on this gateway (federation.controlPlane.quotas)'
          : 'the control plane is off on this gateway (federation.controlPlane)',
      );
      return false;
    }
    if (callerOf(req).tenant !== undefined) {
      fail(reply, 403, 'the control plane is cluster-wide: it needs the admin role, not a tenant admin');
      return false;
    }
    return true;
  };
  const conflict = (reply: FastifyReply, err: unknown) => {
    if (err instanceof ControlRevisionConflict)
      return fail(reply, 409, err.message, 'If-Match', { currentVersion: err.actual });
    throw err;
  };

  app.get(
    '/control-plane',
    {
      schema: {
        summary: 'What this gateway holds in force from the bus',
        tags: ['control-plane'],
        response: errors,
      },
    },
    async (req, reply) => (usable(req, reply, 'status') ? plane!.status() : reply),
  );

  app.get(
    '/control-plane/history/:key',
    {
      schema: {
        summary:
          'The revisions the bus keeps of one key (policy._global, policy.<tenant>, quotas), newest first',
        tags: ['control-plane'],
        params: {
          type: 'object',
          properties: {
            key: {
              type: 'string',
              pattern: '^(quotas|policy\\.(_global|[A-Za-z0-9][A-Za-z0-9_.-]{0,127}))$',
            },
          },
          required: ['key'],
        },
        response: errors,
      },
    },
    async (req, reply) => {
      if (!usable(req, reply, 'status')) return reply;
      const key = (req.params as { key: string }).key;
      return { key, revisions: await plane!.history(key) };
    },
  );

  app.get(
    '/quota-limits',
    { schema: { summary: "The cluster's quota limits (bus)", tags: ['control-plane'], response: errors } },
    async (req, reply) => {
      if (!usable(req, reply, 'quotas')) return reply;
      const q = await plane!.quotaLimits();
      if (!q) return fail(reply, 404, "no quota limits on the bus: the config file's are in force");
      return reply.header('etag', `"${q.revision}"`).send(q);
    },
  );

  app.put(
    '/quota-limits',
    {
      schema: {
        summary: 'Replace the quota limits (If-Match: "<revision>"; "0" for "must not exist")',
        tags: ['control-plane'],
        body: {
          type: 'object',
          additionalProperties: true,
          description:
            'Any of user, clientApp, tenant, tool, server, global, tenants, servers, as in `quotas`.',
        },
        response: errors,
      },
    },
    async (req, reply) => {
      if (!usable(req, reply, 'quotas')) return reply;
      const expected = expectedVersionOf(req);
      if (expected === null) return fail(reply, 400, 'If-Match must be "<version>"', 'If-Match');
      const r = parseQuotaLimits(req.body ?? {});
      if (!r.ok) return fail(reply, 400, r.problem, r.field);
      try {
        const actor = callerOf(req).actor;
        const q = await plane!.putQuotaLimits(req.body as Record<string, unknown>, actor, expected);
        await deps.store.record({
          actor,
          tenant: null,
          kind: 'quota-limits',
          target: 'quotas',
          op: 'update',
          version: q.revision,
        });
        return reply.header('etag', `"${q.revision}"`).send(q);
      } catch (err) {
        return conflict(reply, err);
      }
    },
  );

  app.delete(
    '/quota-limits',
    {
      schema: {
        summary: "Remove the quota limits from the bus: every gateway goes back to its file's",
        tags: ['control-plane'],
        response: errors,
      },
    },
    async (req, reply) => {
      if (!usable(req, reply, 'quotas')) return reply;
      const expected = expectedVersionOf(req);
      if (expected === null) return fail(reply, 400, 'If-Match must be "<version>"', 'If-Match');
      try {
        const actor = callerOf(req).actor;
        const revision = await plane!.deleteQuotaLimits(actor, expected);
        if (revision === undefined) return fail(reply, 404, 'no quota limits on the bus');
        await deps.store.record({
          actor,
          tenant: null,
          kind: 'quota-limits',
          target: 'quotas',
          op: 'delete',
          version: revision,
        });
        return reply.code(204).send();
      } catch (err) {
        return conflict(reply, err);
      }
    },
  );
};
