/** What the admin API's plugins share: the caller, the error shape, versions from If-Match. */
import type { FastifyReply, FastifyRequest, FastifyPluginAsync } from 'fastify';
import type { ZodType } from 'zod';
import type { GatewayConfig } from '../../shared/config/schema.js';
import type { Logger } from '../../shared/log.js';
import type { ApiKeyStore } from '../../shared/ports/api-key-store.js';
import type { RegistryStore } from '../../shared/ports/registry-store.js';
import type { ReadinessReport } from '../../shared/ports/core-service.js';
import type { AdminStore } from './store.js';
import type { VirtualServerStore } from '../../shared/ports/virtual-server-store.js';
import type { ControlPlane } from '../../shared/ports/control-plane.js';

export const ADMIN_API_PREFIX = '/admin/api/v1';

export const ADMIN_ROLE = 'admin';
export const TENANT_ADMIN_ROLE = 'tenant-admin';

export interface AdminCaller {
  /** Recorded as the author of every change: `<authMethod>:<subject>`. */
  actor: string;
  /** undefined: every tenant (role admin); else only this tenant's objects. */
  tenant: string | undefined;
}

export interface AdminApiDeps {
  config: GatewayConfig;
  log: Logger;
  registry: RegistryStore;
  store: AdminStore;
  /** The running gateway: health and capabilities (absent on a node without one). */
  core?: AdminCoreView;
  apiKeys?: ApiKeyStore;
  /** Virtual servers (/v/{name}/mcp); absent: the routes answer 404. */
  virtualServers?: VirtualServerStore;
  /** The control plane on the bus (`federation.controlPlane`); absent: its routes answer 404. */
  controlPlane?: ControlPlane;
  /**
   * Set where servers cannot be changed through this API (an edge of the tier split): why. Writes of
   * /servers then answer 405 with it; reads still work.
   */
  serverWrites?: string;
}

/** What the admin API reads of the running core (cli/admin-api.ts adapts the GatewayCore). */
export interface AdminCoreView {
  readiness(): ReadinessReport;
  /** A running server's tools, prompts and resources; undefined when it does not run here. */
  capabilities(server: string): Promise<Record<string, unknown> | undefined>;
}

export type AdminPlugin = FastifyPluginAsync<AdminApiDeps>;

declare module 'fastify' {
  interface FastifyRequest {
    adminCaller?: AdminCaller;
  }
}

/** The admin caller of a request inside the admin API (set by its auth hook). */
/** The `{name}` path parameter of a server or virtual server: a server name as the config allows it. */
export const nameParam = {
  type: 'object',
  properties: { name: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$' } },
  required: ['name'],
} as const;

export function callerOf(req: FastifyRequest): AdminCaller {
  return req.adminCaller!;
}

/** An error answer naming the problem: `{error: {status, code, message, field?}}`. */
export function fail(
  reply: FastifyReply,
  status: number,
  message: string,
  field?: string,
  extra: Record<string, unknown> = {},
): FastifyReply {
  const code =
    {
      400: 'bad_request',
      401: 'unauthenticated',
      403: 'forbidden',
      404: 'not_found',
      405: 'method_not_allowed',
      409: 'conflict',
      412: 'precondition_failed',
      503: 'unavailable',
    }[status] ?? 'error';
  return reply
    .code(status)
    .send({ error: { status, code, message, ...(field !== undefined && { field }), ...extra } });
}

/**
 * A request body as an object of `schema` (a server, a virtual server), or undefined after a 400 naming
 * the field. `expectedVersion` is not part of it; a tenant admin's objects get its tenant, and naming
 * another tenant is refused.
 */
export function parsedBody<T>(
  req: FastifyRequest,
  reply: FastifyReply,
  body: Record<string, unknown>,
  schema: ZodType<T>,
): T | undefined {
  const caller = callerOf(req);
  const { expectedVersion: _ignored, ...rest } = body;
  if (caller.tenant !== undefined) {
    if (rest.tenant !== undefined && rest.tenant !== caller.tenant) {
      fail(reply, 400, `tenant must be "${caller.tenant}" (your tenant) or absent`, 'tenant');
      return undefined;
    }
    rest.tenant = caller.tenant;
  }
  const r = schema.safeParse(rest);
  if (!r.success) {
    const i = r.error.issues[0]!;
    const field = i.path.join('.') || 'body';
    fail(reply, 400, `${field}: ${i.message}`, field);
    return undefined;
  }
  return r.data;
}

/** A change made through the API, in the change log with the caller as its author. */
export function recordChange(
  deps: AdminApiDeps,
  req: FastifyRequest,
  change: { kind: string; target: string; tenant: string | undefined; op: string; version: number },
): Promise<unknown> {
  return deps.store.record({ ...change, actor: callerOf(req).actor, tenant: change.tenant ?? null });
}

/** The version an `If-Match: "<n>"` header (or `expectedVersion` in the body) asks for. */
export function expectedVersionOf(
  req: FastifyRequest,
  body?: { expectedVersion?: unknown },
): number | undefined | null {
  const h = req.headers['if-match'];
  if (typeof h === 'string') {
    const m = /^(?:W\/)?"?(\d+)"?$/.exec(h.trim());
    return m ? Number(m[1]) : null;
  }
  const v = body?.expectedVersion;
  if (v === undefined) return undefined;
  return Number.isInteger(v) && (v as number) >= 0 ? (v as number) : null;
}

export const errorSchema = {
  type: 'object',
  properties: {
    error: {
      type: 'object',
      properties: {
        status: { type: 'integer' },
        code: { type: 'string' },
        message: { type: 'string' },
        field: { type: 'string' },
      },
      additionalProperties: true,
    },
  },
} as const;

/** The answers every admin route documents: its result, or the admin API's error shape. */
export const errors = {
  '2xx': { type: 'object', additionalProperties: true },
  400: errorSchema,
  401: errorSchema,
  403: errorSchema,
  404: errorSchema,
  409: errorSchema,
  503: errorSchema,
};
