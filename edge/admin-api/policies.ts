/**
 * Access policies, stored and versioned: scope `*` is the gateway's (seeded from the config file's
 * `policy`), any other scope a tenant's. A tenant admin reads and writes its own tenant's scope only.
 * Bodies are checked against the config schema's `policy`. The running gateway watches the store and
 * puts every change in force before the write is answered (cli/admin-api.ts `enforceStoredPolicies`).
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { policySchema } from '../../shared/config/security-schema.js';
import { VersionConflictError } from './store.js';
import { callerOf, expectedVersionOf, fail, type AdminPlugin, errors } from './common.js';

export const GLOBAL_SCOPE = '*';

const scopeParam = {
  type: 'object',
  properties: { scope: { type: 'string', pattern: '^(\\*|[A-Za-z0-9][A-Za-z0-9_.-]{0,127})$' } },
  required: ['scope'],
} as const;

export const policyRoutes: AdminPlugin = async (app, deps) => {
  const allowed = (req: FastifyRequest, reply: FastifyReply, scope: string) => {
    const t = callerOf(req).tenant;
    if (t !== undefined && scope !== t) {
      fail(reply, 404, `no policy "${scope}"`, 'scope');
      return false;
    }
    return true;
  };

  app.get(
    '/policies',
    { schema: { summary: 'Stored policies', tags: ['policies'], response: errors } },
    async (req) => {
      const t = callerOf(req).tenant;
      return { policies: (await deps.store.policies()).filter((p) => t === undefined || p.scope === t) };
    },
  );

  app.get(
    '/policies/:scope',
    {
      schema: {
        summary: 'One policy ("*": the gateway\'s; else a tenant\'s)',
        tags: ['policies'],
        params: scopeParam,
        response: errors,
      },
    },
    async (req, reply) => {
      const scope = (req.params as { scope: string }).scope;
      if (!allowed(req, reply, scope)) return reply;
      const p = await deps.store.policy(scope);
      if (!p) return fail(reply, 404, `no policy "${scope}"`, 'scope');
      return reply.header('etag', `"${p.version}"`).send(p);
    },
  );

  app.put(
    '/policies/:scope',
    {
      schema: {
        summary: 'Replace a policy (If-Match: "<version>"; "0" for "must not exist")',
        tags: ['policies'],
        params: scopeParam,
        body: { type: 'object', additionalProperties: true, description: 'As `policy` in the config file.' },
        response: errors,
      },
    },
    async (req, reply) => {
      const scope = (req.params as { scope: string }).scope;
      if (!allowed(req, reply, scope)) return reply;
      const expected = expectedVersionOf(req);
      if (expected === null) return fail(reply, 400, 'If-Match must be "<version>"', 'If-Match');
      const r = policySchema.unwrap().safeParse(req.body);
      if (!r.success) {
        const i = r.error.issues[0]!;
        const field = i.path.join('.') || 'body';
        return fail(reply, 400, `${field}: ${i.message}`, field);
      }
      try {
        const p = await deps.store.putPolicy(
          scope,
          r.data as Record<string, unknown>,
          callerOf(req).actor,
          expected,
        );
        await deps.store.record({
          actor: callerOf(req).actor,
          tenant: scope === GLOBAL_SCOPE ? null : scope,
          kind: 'policy',
          target: scope,
          op: 'update',
          version: p.version,
        });
        return reply.header('etag', `"${p.version}"`).send(p);
      } catch (err) {
        if (err instanceof VersionConflictError)
          return fail(reply, 409, err.message, 'If-Match', { currentVersion: err.actual });
        throw err;
      }
    },
  );

  app.delete(
    '/policies/:scope',
    {
      schema: {
        summary: 'Delete a policy (If-Match: "<version>" optional); "*" deleted: everything allowed',
        tags: ['policies'],
        params: scopeParam,
        response: errors,
      },
    },
    async (req, reply) => {
      const scope = (req.params as { scope: string }).scope;
      if (!allowed(req, reply, scope)) return reply;
      const expected = expectedVersionOf(req);
      if (expected === null) return fail(reply, 400, 'If-Match must be "<version>"', 'If-Match');
      try {
        const version = await deps.store.deletePolicy(scope, callerOf(req).actor, expected);
        if (version === undefined) return fail(reply, 404, `no policy "${scope}"`, 'scope');
        await deps.store.record({
          actor: callerOf(req).actor,
          tenant: scope === GLOBAL_SCOPE ? null : scope,
          kind: 'policy',
          target: scope,
          op: 'delete',
          version,
        });
        return reply.code(204).send();
      } catch (err) {
        if (err instanceof VersionConflictError)
          return fail(reply, 409, err.message, 'If-Match', { currentVersion: err.actual });
        throw err;
      }
    },
  );
};
