/**
 * The admin REST API under /admin/api/v1 (docs/admin-api.md): servers, capabilities, API keys, policies
 * and the change log, with an OpenAPI 3 document generated from the route schemas
 * (/admin/api/v1/openapi.json) and its UI (/admin/api/v1/docs).
 *
 * Who may call: a principal of the edge authentication (JWT or API key) with role `admin` (everything)
 * or `tenant-admin` (its own tenant's objects only; others' are 404). The configured `admin.token` as a
 * bearer is an `admin`. With authentication off and no admin token, loopback callers are `admin` and
 * everyone else is refused (403), as for the rest of /admin.
 *
 * Extension point: every resource is a Fastify plugin taking AdminApiDeps; `registerAdminApi` mounts
 * ADMIN_PLUGINS plus the caller's `extraPlugins` (lifecycle transitions, approvals) in the same scope,
 * so they share the auth hook, the error shape and the OpenAPI document.
 */
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance } from 'fastify';
import { Authenticator } from '../auth/authenticate.js';
import { bearerMatches, isLoopback } from '../http/admin.js';
import {
  ADMIN_API_PREFIX,
  ADMIN_ROLE,
  TENANT_ADMIN_ROLE,
  fail,
  type AdminApiDeps,
  type AdminPlugin,
} from './common.js';
import { serverRoutes } from './servers.js';
import { virtualServerRoutes } from './virtual-servers.js';
import { keyRoutes } from './keys.js';
import { policyRoutes } from './policies.js';
import { quotaLimitRoutes } from './quota-limits.js';
import { ControlPlaneUnavailable } from '../../shared/ports/control-plane.js';

export * from './common.js';

export const ADMIN_PLUGINS: readonly AdminPlugin[] = [
  serverRoutes,
  keyRoutes,
  policyRoutes,
  virtualServerRoutes,
  quotaLimitRoutes,
];

export async function registerAdminApi(
  app: FastifyInstance,
  deps: AdminApiDeps,
  extraPlugins: readonly AdminPlugin[] = [],
): Promise<void> {
  const authenticator = new Authenticator(deps.config, { apiKeys: deps.apiKeys });
  await app.register(async (scope) => {
    await scope.register(swagger, {
      openapi: {
        openapi: '3.0.3',
        info: { title: 'mcpgw admin API', version: '1' },
        components: {
          securitySchemes: {
            bearer: { type: 'http', scheme: 'bearer' },
            apiKey: { type: 'apiKey', in: 'header', name: 'X-API-Key' },
          },
        },
        security: [{ bearer: [] }, { apiKey: [] }],
      },
    });
    await scope.register(swaggerUi, { routePrefix: `${ADMIN_API_PREFIX}/docs` });
    scope.get(`${ADMIN_API_PREFIX}/openapi.json`, { schema: { hide: true } }, async () => scope.swagger());

    // The MCP endpoints keep bodies raw; here JSON is parsed (an empty body is no body).
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, body, done) => {
      const text = String(body);
      if (text.trim() === '') return done(null, undefined);
      try {
        done(null, JSON.parse(text));
      } catch {
        done(Object.assign(new Error('the body is not valid JSON'), { statusCode: 400 }));
      }
    });
    scope.setErrorHandler(
      (
        err: Error & { validation?: unknown; statusCode?: number; validationContext?: string },
        _req,
        reply,
      ) => {
        if (err.validation) {
          const v = (
            err.validation as {
              instancePath?: string;
              params?: { missingProperty?: string; additionalProperty?: string };
            }[]
          )[0];
          const path = (v?.instancePath ?? '').replace(/^\//, '').replace(/\//g, '.');
          const leaf = v?.params?.missingProperty ?? v?.params?.additionalProperty;
          const field = [err.validationContext, path, leaf].filter((x) => x).join('.');
          return fail(reply, 400, err.message, field);
        }
        // The control plane's bus is away: nothing was written, the values in force stay.
        if (err instanceof ControlPlaneUnavailable) return fail(reply, 503, err.message);
        if (err.statusCode && err.statusCode >= 400 && err.statusCode < 500)
          return fail(reply, err.statusCode, err.message);
        deps.log.error({ err }, 'admin API error');
        return fail(reply, 500, 'internal error');
      },
    );

    scope.addHook('onRequest', async (req, reply) => {
      const url = req.url;
      // The UI's static assets and the document hold no data: the UI asks for the token itself.
      if (url.startsWith(`${ADMIN_API_PREFIX}/docs`) || url.startsWith(`${ADMIN_API_PREFIX}/openapi.json`))
        return;
      const token = deps.config.admin.token;
      if (token && bearerMatches(req.headers.authorization, token)) {
        req.adminCaller = { actor: 'admin-token', tenant: undefined };
        return;
      }
      if (!authenticator.enabled) {
        if (token) {
          reply.header('www-authenticate', 'Bearer');
          return fail(reply, 401, 'the admin token is required (Authorization: Bearer <admin.token>)');
        }
        if (!isLoopback(req.socket.remoteAddress))
          return fail(reply, 403, 'authentication is off: the admin API answers loopback clients only');
        req.adminCaller = { actor: 'loopback', tenant: undefined };
        return;
      }
      const outcome = await authenticator.authenticate(req.raw);
      if (!outcome.ok) {
        reply.header('www-authenticate', 'Bearer');
        return fail(reply, 401, outcome.description);
      }
      const p = outcome.principal;
      const actor = `${p.authMethod}:${p.subject}`;
      if (p.roles.includes(ADMIN_ROLE)) req.adminCaller = { actor, tenant: undefined };
      else if (p.roles.includes(TENANT_ADMIN_ROLE)) req.adminCaller = { actor, tenant: p.tenant };
      else return fail(reply, 403, `role "${ADMIN_ROLE}" or "${TENANT_ADMIN_ROLE}" is required`);
    });

    for (const plugin of [...ADMIN_PLUGINS, ...extraPlugins])
      await scope.register(plugin, { ...deps, prefix: ADMIN_API_PREFIX } as AdminApiDeps);
  });
}
