/**
 * OAuth 2.0 Protected Resource Metadata (RFC 9728) and the challenges that point to it: a client that
 * gets a 401 reads `resource_metadata` from WWW-Authenticate, fetches the metadata and learns which
 * authorization server to get a token from, and for which resource.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { GatewayConfig } from '../../shared/config/schema.js';
import type { AuthOutcome } from './authenticate.js';

export const METADATA_PATH = '/.well-known/oauth-protected-resource';

/** The base URL clients reach the gateway at: configured, or the (already Host-checked) request's. */
export function publicBase(config: GatewayConfig, req: FastifyRequest): string {
  if (config.auth.publicUrl) return config.auth.publicUrl.replace(/\/+$/, '');
  return `${req.protocol}://${req.headers.host ?? 'localhost'}`;
}

/** The resource path a request's metadata is published for (`/mcp`, `/servers/x/mcp`, `/v/x/mcp`, or none). */
function resourcePath(url: string): string {
  const path = url.split('?')[0]!;
  const m = /^\/servers\/([^/]+)\/(mcp|sse|message)$/.exec(path);
  if (m) return `/servers/${m[1]}/mcp`;
  // A virtual server (docs/registry.md) is a resource of its own.
  const v = /^\/v\/([^/]+)\/mcp$/.exec(path);
  if (v) return `/v/${v[1]}/mcp`;
  return path === '/mcp' ? '/mcp' : '';
}

export function challenge(
  config: GatewayConfig,
  req: FastifyRequest,
  failure: Extract<AuthOutcome, { ok: false }>,
): string {
  const parts: string[] = [];
  if (config.auth.jwt)
    // The URL the client called (before Host-header routing rewrote it): the resource it must match.
    parts.push(
      `resource_metadata="${publicBase(config, req)}${METADATA_PATH}${resourcePath(req.originalUrl)}"`,
    );
  else parts.push('realm="mcpgw"');
  if (failure.error) {
    parts.push(`error="${failure.error}"`);
    parts.push(`error_description="${failure.description.replace(/["\\]/g, "'")}"`);
  }
  if (config.auth.requiredScopes.length > 0) parts.push(`scope="${config.auth.requiredScopes.join(' ')}"`);
  return `Bearer ${parts.join(', ')}`;
}

export function registerProtectedResourceMetadata(app: FastifyInstance, config: GatewayConfig): void {
  const jwt = config.auth.jwt;
  if (!jwt) return;
  const document = (req: FastifyRequest, path: string) => ({
    resource: `${publicBase(config, req)}${path}`,
    authorization_servers: config.auth.authorizationServers ?? [jwt.issuer],
    scopes_supported: config.auth.scopesSupported ?? config.auth.requiredScopes,
    bearer_methods_supported: ['header'],
    resource_signing_alg_values_supported: jwt.algorithms,
  });
  app.get(METADATA_PATH, async (req, reply) =>
    reply.header('cache-control', 'max-age=300').send(document(req, '')),
  );
  app.get(`${METADATA_PATH}/*`, async (req, reply) => {
    const suffix = `/${(req.params as { '*': string })['*']}`;
    if (suffix !== '/mcp' && !/^\/(?:servers|v)\/[^/]+\/mcp$/.test(suffix))
      return reply.code(404).send({ error: 'not_found' });
    return reply.header('cache-control', 'max-age=300').send(document(req, suffix));
  });
}
