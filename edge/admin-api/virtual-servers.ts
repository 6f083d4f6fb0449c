/**
 * Virtual servers (create, replace, delete, list, history), versioned like servers: `If-Match` against
 * lost updates, every change in the change log. A write reaches every gateway through the store's
 * watch (cli/single.ts), and the sessions of the changed virtual server hear list_changed.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { virtualServerRefs, virtualServerSchema } from '../../shared/config/virtual-schema.js';
import {
  VirtualServerConflictError,
  type VirtualServerEntry,
} from '../../shared/ports/virtual-server-store.js';
import {
  callerOf,
  expectedVersionOf,
  fail,
  errors,
  nameParam,
  parsedBody,
  recordChange,
  type AdminPlugin,
} from './common.js';
import { visible } from './servers.js';

const body = {
  type: 'object',
  description:
    'A virtual server as in the config file (`virtualServers[]`, docs/configuration.md): name, description?, tenant?, tools[{server, tool, alias?, description?}], prompts[{server, prompt, alias?}], resources[{server, uri | uriTemplate}].',
  required: ['name'],
  properties: { name: { type: 'string' }, expectedVersion: { type: 'integer', minimum: 0 } },
  additionalProperties: true,
} as const;

export const virtualServerRoutes: AdminPlugin = async (app, deps) => {
  const view = (e: VirtualServerEntry) => ({
    name: e.virtualServer.name,
    version: e.version,
    updatedAt: new Date(e.updatedAt).toISOString(),
    updatedBy: e.updatedBy,
    tenant: e.virtualServer.tenant ?? null,
    endpoint: `/v/${e.virtualServer.name}/mcp`,
    virtualServer: e.virtualServer,
  });
  const mine = (req: FastifyRequest, e: VirtualServerEntry) => visible(callerOf(req), e.virtualServer);

  const found = async (req: FastifyRequest, reply: FastifyReply, name: string) => {
    const e = await deps.virtualServers?.get(name);
    if (!e || !mine(req, e)) {
      fail(reply, 404, `no virtual server "${name}"`, 'name');
      return undefined;
    }
    return e;
  };

  /** The body as a virtual server whose every reference names a server the caller sees; else a 400. */
  const parsed = async (req: FastifyRequest, reply: FastifyReply) => {
    const caller = callerOf(req);
    const v = parsedBody(req, reply, req.body as Record<string, unknown>, virtualServerSchema);
    if (!v) return undefined;
    // One lookup per server named (a reference per chosen item would repeat them), in parallel.
    const refs = virtualServerRefs(v);
    const names = [...new Set(refs.map((ref) => ref.server))];
    const known = new Map(
      await Promise.all(
        names.map(async (n): Promise<[string, boolean]> => {
          const [entry, versions] = await Promise.all([deps.registry.get(n), deps.registry.versions(n)]);
          return [n, [entry, ...versions].some((e) => e && visible(caller, e.server))];
        }),
      ),
    );
    for (const ref of refs) {
      if (!known.get(ref.server)) {
        const field = ref.path.join('.');
        fail(reply, 400, `${field}: no server "${ref.server}" (a server id or name)`, field);
        return undefined;
      }
    }
    return v;
  };

  const record = (
    req: FastifyRequest,
    name: string,
    tenant: string | undefined,
    op: string,
    version: number,
  ) => recordChange(deps, req, { kind: 'virtual-server', target: name, tenant, op, version });

  const conflict = (reply: FastifyReply, err: unknown) => {
    if (err instanceof VirtualServerConflictError)
      return fail(reply, 409, err.message, 'expectedVersion', { currentVersion: err.actualVersion });
    throw err;
  };

  const store = () => {
    if (!deps.virtualServers) throw new Error('no virtual server store on this node');
    return deps.virtualServers;
  };

  app.get(
    '/virtual-servers',
    { schema: { summary: 'Virtual servers', tags: ['virtual-servers'], response: errors } },
    async (req) => {
      const all = (await deps.virtualServers?.list()) ?? [];
      return { virtualServers: all.filter((e) => mine(req, e)).map(view) };
    },
  );

  app.get(
    '/virtual-servers/:name',
    {
      schema: {
        summary: 'One virtual server',
        tags: ['virtual-servers'],
        params: nameParam,
        response: errors,
      },
    },
    async (req, reply) => {
      const e = await found(req, reply, (req.params as { name: string }).name);
      if (!e) return reply;
      return reply.header('etag', `"${e.version}"`).send(view(e));
    },
  );

  app.post(
    '/virtual-servers',
    { schema: { summary: 'Create a virtual server', tags: ['virtual-servers'], body, response: errors } },
    async (req, reply) => {
      const v = await parsed(req, reply);
      if (!v) return reply;
      try {
        const e = await store().put(v, callerOf(req).actor, 0);
        await record(req, v.name, v.tenant, 'create', e.version);
        return reply.code(201).header('etag', `"${e.version}"`).send(view(e));
      } catch (err) {
        if (err instanceof VirtualServerConflictError)
          return fail(reply, 409, `virtual server "${v.name}" exists already`, 'name');
        throw err;
      }
    },
  );

  app.put(
    '/virtual-servers/:name',
    {
      schema: {
        summary: 'Replace a virtual server (If-Match: "<version>" or expectedVersion)',
        tags: ['virtual-servers'],
        params: nameParam,
        body,
        response: errors,
      },
    },
    async (req, reply) => {
      const name = (req.params as { name: string }).name;
      if ((req.body as { name?: unknown }).name !== name)
        return fail(reply, 400, `name must be "${name}" (the URL's)`, 'name');
      const expected = expectedVersionOf(req, req.body as { expectedVersion?: unknown });
      if (expected === null) return fail(reply, 400, 'If-Match must be "<version>"', 'If-Match');
      const current = await found(req, reply, name);
      if (!current) return reply;
      const v = await parsed(req, reply);
      if (!v) return reply;
      try {
        const e = await store().put(v, callerOf(req).actor, expected ?? current.version);
        await record(req, name, v.tenant, 'update', e.version);
        return reply.header('etag', `"${e.version}"`).send(view(e));
      } catch (err) {
        return conflict(reply, err);
      }
    },
  );

  app.delete(
    '/virtual-servers/:name',
    {
      schema: {
        summary: 'Delete a virtual server (its sessions get GW_UNKNOWN_VIRTUAL_SERVER)',
        tags: ['virtual-servers'],
        params: nameParam,
        response: errors,
      },
    },
    async (req, reply) => {
      const name = (req.params as { name: string }).name;
      const expected = expectedVersionOf(req);
      if (expected === null) return fail(reply, 400, 'If-Match must be "<version>"', 'If-Match');
      const current = await found(req, reply, name);
      if (!current) return reply;
      try {
        await store().delete(name, callerOf(req).actor, expected ?? current.version);
        await record(req, name, current.virtualServer.tenant, 'delete', current.version + 1);
        return reply.code(204).send();
      } catch (err) {
        return conflict(reply, err);
      }
    },
  );

  app.get(
    '/virtual-servers/:name/history',
    {
      schema: {
        summary: "A virtual server's versions, who and when",
        tags: ['virtual-servers'],
        params: nameParam,
        response: errors,
      },
    },
    async (req, reply) => {
      const name = (req.params as { name: string }).name;
      const h = (await deps.virtualServers?.history(name)) ?? [];
      const last = h.filter((v) => v.virtualServer).at(-1)?.virtualServer;
      const tenant = callerOf(req).tenant;
      if (h.length === 0 || (tenant !== undefined && last?.tenant !== tenant))
        return fail(reply, 404, `no virtual server "${name}"`, 'name');
      return {
        versions: h.map((v) => ({
          version: v.version,
          op: v.op,
          changedAt: new Date(v.changedAt).toISOString(),
          changedBy: v.changedBy,
          ...(v.virtualServer && { virtualServer: v.virtualServer }),
        })),
      };
    },
  );
};
