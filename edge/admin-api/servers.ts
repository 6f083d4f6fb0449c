/**
 * Servers (register, update, deregister, list with health, history), their capabilities, and the change
 * log. A registry write reaches the running gateway through the registry's watch (cli/single.ts), which
 * starts, restarts or stops the backend and tells connected clients `notifications/tools/list_changed`.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { runtimeServerSchema, type ServerConfig } from '../../shared/config/schema.js';
import { RegistryConflictError, type RegistryEntry } from '../../shared/ports/registry-store.js';
import { defaultMember, serverId } from '../../shared/mcp/server-versions.js';
import {
  callerOf,
  expectedVersionOf,
  fail,
  nameParam,
  parsedBody,
  recordChange,
  type AdminCaller,
  type AdminPlugin,
  errors,
} from './common.js';

const serverBody = {
  type: 'object',
  description: 'A server as in the config file (`servers[]`, docs/configuration.md).',
  required: ['name', 'transport'],
  properties: {
    name: { type: 'string' },
    transport: {
      type: 'string',
      description: 'stdio, streamable-http or sse (checked with the config schema)',
    },
    tenant: { type: 'string' },
    expectedVersion: { type: 'integer', minimum: 0 },
  },
  additionalProperties: true,
} as const;

/**
 * What a caller may see of a server (or of anything else with a tenant): everything for `admin`, its
 * tenant's for `tenant-admin`.
 */
export function visible(caller: AdminCaller, server: { tenant?: string | undefined }): boolean {
  return caller.tenant === undefined || server.tenant === caller.tenant;
}

/** Header and env values are secrets: names only in answers. */
function redacted(s: ServerConfig): Record<string, unknown> {
  const out: Record<string, unknown> = { ...s };
  for (const f of ['headers', 'env'] as const) {
    const v = (s as unknown as Record<string, Record<string, string> | undefined>)[f];
    if (v) out[f] = Object.fromEntries(Object.keys(v).map((k) => [k, '***']));
  }
  return out;
}

export const serverRoutes: AdminPlugin = async (app, deps) => {
  const view = (e: RegistryEntry) => {
    const id = serverId(e.server);
    const st = deps.core?.readiness().servers[id];
    return {
      name: id,
      family: e.server.name,
      serverVersion: e.server.version ?? null,
      version: e.version,
      updatedAt: new Date(e.updatedAt).toISOString(),
      updatedBy: e.updatedBy,
      tenant: e.server.tenant ?? null,
      health: st
        ? { state: st.state, ...(st.error !== undefined && { error: st.error }) }
        : { state: 'unknown' },
      server: redacted(e.server),
    };
  };

  /** The entry, or a 404 when it does not exist or belongs to another tenant. */
  const found = async (req: FastifyRequest, reply: FastifyReply, name: string) => {
    const e = await deps.registry.get(name);
    if (!e || !visible(callerOf(req), e.server)) {
      // A plain name whose server runs in versions: say where they are.
      const versions = e
        ? []
        : (await deps.registry.versions(name)).filter((v) => visible(callerOf(req), v.server));
      fail(
        reply,
        404,
        versions.length > 0
          ? `no server "${name}": it runs in versions (${versions.map((v) => serverId(v.server)).join(', ')}); see /servers/${name}/versions`
          : `no server "${name}"`,
        'name',
      );
      return undefined;
    }
    return e;
  };

  /** The body as a server, or a 400 naming the field. */
  const parsed = (req: FastifyRequest, reply: FastifyReply, body: Record<string, unknown>) =>
    parsedBody(req, reply, body, runtimeServerSchema);

  const written = (req: FastifyRequest, server: ServerConfig, op: string, version: number) =>
    recordChange(deps, req, { kind: 'server', target: serverId(server), tenant: server.tenant, op, version });

  // Where servers are not changed through this API (an edge), every write says why.
  if (deps.serverWrites !== undefined) {
    const why = deps.serverWrites;
    // Before the body is checked: the answer is the same whatever the body.
    app.addHook('preValidation', async (req, reply) => {
      const path = req.routeOptions.url ?? '';
      if (req.method !== 'GET' && (path.endsWith('/servers') || path.endsWith('/servers/:name')))
        return fail(reply, 405, why);
    });
  }

  const conflict = (reply: FastifyReply, err: unknown) => {
    if (err instanceof RegistryConflictError)
      return fail(reply, 409, err.message, 'expectedVersion', { currentVersion: err.actualVersion });
    throw err;
  };

  app.get(
    '/servers',
    { schema: { summary: 'Servers with their version and health', tags: ['servers'], response: errors } },
    async (req) => {
      const caller = callerOf(req);
      const all = await deps.registry.list();
      return { servers: all.filter((e) => visible(caller, e.server)).map(view) };
    },
  );

  app.get(
    '/servers/:name',
    { schema: { summary: 'One server', tags: ['servers'], params: nameParam, response: errors } },
    async (req, reply) => {
      const e = await found(req, reply, (req.params as { name: string }).name);
      if (!e) return reply;
      return reply.header('etag', `"${e.version}"`).send(view(e));
    },
  );

  app.post(
    '/servers',
    { schema: { summary: 'Register a server', tags: ['servers'], body: serverBody, response: errors } },
    async (req, reply) => {
      const server = parsed(req, reply, req.body as Record<string, unknown>);
      if (!server) return reply;
      try {
        const e = await deps.registry.upsert(server, callerOf(req).actor, { expectedVersion: 0 });
        await written(req, e.server, 'create', e.version);
        return reply.code(201).header('etag', `"${e.version}"`).send(view(e));
      } catch (err) {
        if (err instanceof RegistryConflictError)
          return fail(reply, 409, `server "${serverId(server)}" exists already`, 'name');
        throw err;
      }
    },
  );

  app.put(
    '/servers/:name',
    {
      schema: {
        summary: 'Replace a server (If-Match: "<version>" or expectedVersion for optimistic concurrency)',
        tags: ['servers'],
        params: nameParam,
        body: serverBody,
        response: errors,
      },
    },
    async (req, reply) => {
      const name = (req.params as { name: string }).name;
      const body = req.body as Record<string, unknown>;
      const expected = expectedVersionOf(req, body);
      if (expected === null) return fail(reply, 400, 'If-Match must be "<version>"', 'If-Match');
      const current = await found(req, reply, name);
      if (!current) return reply;
      const server = parsed(req, reply, body);
      if (!server) return reply;
      if (serverId(server) !== name)
        return fail(
          reply,
          400,
          server.version === undefined && current.server.version === undefined
            ? `name must be "${name}" (the URL's)`
            : `name and version must make "${name}" (the URL's): name "${current.server.name}", version "${current.server.version ?? ''}"`,
          server.name !== current.server.name ? 'name' : 'version',
        );
      try {
        const e = await deps.registry.upsert(server, callerOf(req).actor, {
          expectedVersion: expected ?? current.version,
        });
        await written(req, e.server, 'update', e.version);
        return reply.header('etag', `"${e.version}"`).send(view(e));
      } catch (err) {
        return conflict(reply, err);
      }
    },
  );

  app.delete(
    '/servers/:name',
    { schema: { summary: 'Deregister a server', tags: ['servers'], params: nameParam, response: errors } },
    async (req, reply) => {
      const name = (req.params as { name: string }).name;
      const expected = expectedVersionOf(req);
      if (expected === null) return fail(reply, 400, 'If-Match must be "<version>"', 'If-Match');
      const current = await found(req, reply, name);
      if (!current) return reply;
      try {
        await deps.registry.delete(name, callerOf(req).actor, {
          expectedVersion: expected ?? current.version,
        });
        await written(req, current.server, 'delete', current.version + 1);
        return reply.code(204).send();
      } catch (err) {
        return conflict(reply, err);
      }
    },
  );

  app.get(
    '/servers/:name/history',
    {
      schema: {
        summary: "A server's versions, who and when",
        tags: ['servers'],
        params: nameParam,
        response: errors,
      },
    },
    async (req, reply) => {
      const name = (req.params as { name: string }).name;
      const h = await deps.registry.history(name);
      const caller = callerOf(req);
      // A tenant admin sees the history of its tenant's server only (a deleted one by its last version).
      const last = h.filter((v) => v.server).at(-1)?.server;
      if (h.length === 0 || (last && !visible(caller, last)) || (!last && caller.tenant !== undefined))
        return fail(reply, 404, `no server "${name}"`, 'name');
      return {
        versions: h.map((v) => ({
          version: v.version,
          op: v.op,
          changedAt: new Date(v.changedAt).toISOString(),
          changedBy: v.changedBy,
          ...(v.server && { server: redacted(v.server) }),
        })),
      };
    },
  );

  app.get(
    '/servers/:name/versions',
    {
      schema: {
        summary: 'The versions of a server that run at once, and the one served under the plain name',
        tags: ['servers'],
        params: nameParam,
        response: errors,
      },
    },
    async (req, reply) => {
      const name = (req.params as { name: string }).name;
      const caller = callerOf(req);
      const members = (await deps.registry.versions(name)).filter((e) => visible(caller, e.server));
      if (members.length === 0) return fail(reply, 404, `no server named "${name}"`, 'name');
      const chosen = defaultMember(members.map((e) => e.server));
      const defaultId = chosen && serverId(chosen);
      return {
        name,
        default: defaultId ?? null,
        versions: members.map((e) => ({
          ...view(e),
          default: serverId(e.server) === defaultId,
          enabled: e.server.enabled,
          lifecycle: e.server.lifecycle,
        })),
      };
    },
  );

  const capabilitiesOf = async (name: string) => {
    const caps = await deps.core
      ?.capabilities(name)
      .catch((err: unknown) => ({ error: (err as Error).message }));
    return caps ?? { state: 'not running', tools: [], prompts: [], resources: [] };
  };

  app.get(
    '/servers/:name/capabilities',
    {
      schema: {
        summary: "A server's tools, prompts and resources",
        tags: ['capabilities'],
        params: nameParam,
        response: errors,
      },
    },
    async (req, reply) => {
      const e = await found(req, reply, (req.params as { name: string }).name);
      if (!e) return reply;
      return { server: serverId(e.server), ...(await capabilitiesOf(serverId(e.server))) };
    },
  );

  app.get(
    '/capabilities',
    {
      schema: {
        summary: 'Tools, prompts and resources of every visible server',
        tags: ['capabilities'],
        response: errors,
      },
    },
    async (req) => {
      const caller = callerOf(req);
      const entries = (await deps.registry.list()).filter((e) => visible(caller, e.server));
      const servers = await Promise.all(
        entries.map(async (e) => ({
          server: serverId(e.server),
          ...(await capabilitiesOf(serverId(e.server))),
        })),
      );
      return { servers };
    },
  );

  app.get(
    '/changes',
    {
      schema: {
        summary: 'The change log: every change made through this API, oldest first',
        tags: ['changes'],
        querystring: {
          type: 'object',
          properties: {
            after: { type: 'integer', minimum: 0, description: 'Changes after this id (paging).' },
            limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 },
            kind: { type: 'string', enum: ['server', 'api-key', 'policy', 'virtual-server'] },
          },
          additionalProperties: false,
        },
        response: errors,
      },
    },
    async (req) => {
      const q = req.query as { after?: number; limit: number; kind?: string };
      const caller = callerOf(req);
      const changes = await deps.store.changes({
        limit: q.limit,
        ...(q.after !== undefined && { afterId: q.after }),
        ...(q.kind !== undefined && { kind: q.kind }),
        ...(caller.tenant !== undefined && { tenant: caller.tenant }),
      });
      return { changes, next: changes.at(-1)?.id ?? q.after ?? 0 };
    },
  );
};
