/**
 * API keys: create (the key is in the answer once, never again), list, revoke, rotate (same id and
 * grants, a new secret; the old secret stops working at once). Answers never hold a key's hash.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { generateApiKey } from '../auth/api-key.js';
import type { ApiKeyRecord } from '../../shared/ports/api-key-store.js';
import { ADMIN_ROLE, callerOf, fail, type AdminPlugin, errors } from './common.js';

const idParam = {
  type: 'object',
  properties: { id: { type: 'string', pattern: '^[A-Za-z0-9]{6,32}$' } },
  required: ['id'],
} as const;

const keyBody = {
  type: 'object',
  required: ['owner'],
  properties: {
    owner: { type: 'string', minLength: 1, maxLength: 200 },
    tenant: { type: 'string', minLength: 1, maxLength: 200 },
    roles: { type: 'array', items: { type: 'string', minLength: 1 }, default: [] },
    scopes: { type: 'array', items: { type: 'string', minLength: 1 }, default: [] },
    expiresAt: { type: 'string', format: 'date-time' },
    description: { type: 'string', maxLength: 500 },
  },
  additionalProperties: false,
} as const;

function view(r: ApiKeyRecord) {
  return {
    id: r.id,
    owner: r.owner,
    tenant: r.tenant,
    roles: r.roles,
    scopes: r.scopes,
    createdAt: new Date(r.createdAt).toISOString(),
    ...(r.expiresAt !== undefined && { expiresAt: new Date(r.expiresAt).toISOString() }),
    revoked: r.revoked,
    ...(r.description !== undefined && { description: r.description }),
  };
}

export const keyRoutes: AdminPlugin = async (app, deps) => {
  const pepper = deps.config.auth.apiKeys?.pepper;
  const ready = (reply: FastifyReply) => {
    if (deps.apiKeys && pepper) return deps.apiKeys;
    fail(reply, 404, 'API keys are not configured on this node (auth.apiKeys)');
    return undefined;
  };
  const found = async (req: FastifyRequest, reply: FastifyReply) => {
    const store = ready(reply);
    if (!store) return undefined;
    const id = (req.params as { id: string }).id;
    const r = await store.get(id);
    const t = callerOf(req).tenant;
    if (!r || (t !== undefined && r.tenant !== t)) {
      fail(reply, 404, `no API key "${id}"`, 'id');
      return undefined;
    }
    return { store, r };
  };
  const log = (req: FastifyRequest, r: ApiKeyRecord, op: string) =>
    deps.store.record({
      actor: callerOf(req).actor,
      tenant: r.tenant,
      kind: 'api-key',
      target: r.id,
      op,
      version: null,
      detail: { owner: r.owner, roles: r.roles },
    });

  app.get(
    '/keys',
    { schema: { summary: 'API keys (never their secrets)', tags: ['keys'], response: errors } },
    async (req, reply) => {
      const store = ready(reply);
      if (!store) return reply;
      const t = callerOf(req).tenant;
      return { keys: (await store.list()).filter((r) => t === undefined || r.tenant === t).map(view) };
    },
  );

  app.post(
    '/keys',
    {
      schema: {
        summary: 'Create an API key; the key is in this answer only',
        tags: ['keys'],
        body: keyBody,
        response: errors,
      },
    },
    async (req, reply) => {
      const store = ready(reply);
      if (!store) return reply;
      const b = req.body as {
        owner: string;
        tenant?: string;
        roles: string[];
        scopes: string[];
        expiresAt?: string;
        description?: string;
      };
      const t = callerOf(req).tenant;
      if (t !== undefined) {
        if (b.tenant !== undefined && b.tenant !== t)
          return fail(reply, 400, `tenant must be "${t}" (your tenant) or absent`, 'tenant');
        if (b.roles.includes(ADMIN_ROLE))
          return fail(reply, 403, `a tenant admin cannot grant role "${ADMIN_ROLE}"`, 'roles');
      }
      const g = generateApiKey(pepper!);
      const record: ApiKeyRecord = {
        id: g.id,
        hash: g.hash,
        owner: b.owner,
        tenant: t ?? b.tenant ?? 'default',
        roles: b.roles,
        scopes: b.scopes,
        createdAt: Date.now(),
        ...(b.expiresAt !== undefined && { expiresAt: Date.parse(b.expiresAt) }),
        revoked: false,
        ...(b.description !== undefined && { description: b.description }),
      };
      await store.put(record);
      await log(req, record, 'create');
      return reply.code(201).send({ ...view(record), key: g.key });
    },
  );

  app.get(
    '/keys/:id',
    { schema: { summary: 'One API key', tags: ['keys'], params: idParam, response: errors } },
    async (req, reply) => {
      const f = await found(req, reply);
      return f ? view(f.r) : reply;
    },
  );

  app.post(
    '/keys/:id/revoke',
    {
      schema: {
        summary: 'Revoke an API key (it stays listed)',
        tags: ['keys'],
        params: idParam,
        response: errors,
      },
    },
    async (req, reply) => {
      const f = await found(req, reply);
      if (!f) return reply;
      await f.store.revoke(f.r.id);
      await log(req, f.r, 'revoke');
      return view({ ...f.r, revoked: true });
    },
  );

  app.post(
    '/keys/:id/rotate',
    {
      schema: {
        summary: 'A new secret for the key; the old one stops working',
        tags: ['keys'],
        params: idParam,
        response: errors,
      },
    },
    async (req, reply) => {
      const f = await found(req, reply);
      if (!f) return reply;
      if (f.r.revoked) return fail(reply, 409, `API key "${f.r.id}" is revoked`, 'id');
      // Same id, so the new key is `mcpgw_<id>_<new secret>`; the id's hash mixing keeps it bound.
      let g = generateApiKey(pepper!);
      const key = `mcpgw_${f.r.id}_${g.key.split('_').slice(2).join('_')}`;
      const { hashApiKeySecret } = await import('../auth/api-key.js');
      const secret = key.slice(`mcpgw_${f.r.id}_`.length);
      g = { key, id: f.r.id, hash: hashApiKeySecret(pepper!, f.r.id, secret) };
      const record = { ...f.r, hash: g.hash };
      await f.store.put(record);
      await log(req, record, 'rotate');
      return { ...view(record), key };
    },
  );
};
