/**
 * Wires authentication into the edge's request lifecycle: an onRequest hook (before any body is read)
 * on the MCP transports, which answers 401/403 with its challenge or records the Principal for the
 * request. Health, readiness and the OAuth metadata stay open.
 */
import type { FastifyInstance } from 'fastify';
import type { GatewayConfig } from '../../shared/config/schema.js';
import { GatewayError, toRpcError } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';
import type { Authenticator } from './authenticate.js';
import { challenge, registerProtectedResourceMetadata } from './protected-resource.js';
import { setRequestPrincipal } from './request-principal.js';
import { endStage, STAGE, startStage } from '../../shared/telemetry/tracing.js';
import { requestStage } from '../http/request-trace.js';
import { bearerMatches } from '../http/admin.js';

export function registerAuthentication(
  app: FastifyInstance,
  o: {
    config: GatewayConfig;
    authenticator: Authenticator;
    guardedPrefixes: readonly string[];
    log: Logger;
    /** Told of each outcome, so that a source that keeps failing is blocked (edge/security). */
    sources?: { recordAuthFailure(ip: string): void; recordAuthSuccess(ip: string): void };
  },
): void {
  registerProtectedResourceMetadata(app, o.config);
  if (!o.authenticator.enabled) return;
  app.addHook('onRequest', async function authenticate(req, reply) {
    if (!o.guardedPrefixes.some((p) => req.url.startsWith(p)) || req.method === 'OPTIONS') return;
    // `admin.token` is the /admin endpoints' own credential, which they check themselves: it is not a
    // gateway credential, so the authenticators would refuse it (docs/admin-api.md, "Who may call").
    const adminToken = o.config.admin.token;
    if (adminToken && req.url.startsWith('/admin/') && bearerMatches(req.headers.authorization, adminToken))
      return;
    // A span of its own under the request's root (made here from the headers: the body is not read yet).
    const stage = startStage(STAGE.authenticate, requestStage(req, reply)?.ctx);
    const outcome = await o.authenticator.authenticate(req.raw);
    if (stage?.span.isRecording())
      stage.span.setAttribute('mcpgw.auth.outcome', outcome.ok ? outcome.principal.authMethod : outcome.code);
    endStage(stage, outcome.ok ? undefined : { code: outcome.code, message: 'authentication refused' });
    const ip = req.socket.remoteAddress ?? '';
    if (outcome.ok) {
      o.sources?.recordAuthSuccess(ip);
      return void setRequestPrincipal(req.raw, outcome.principal);
    }
    // Only a credential that was presented and is wrong counts: a client without one is on its way to
    // the authorization server (RFC 9728), not guessing.
    // One that could not be checked at all (a store or IdP outage) is not the caller's failure.
    if (outcome.code === 'GW_INVALID_TOKEN' && !outcome.unverifiable) o.sources?.recordAuthFailure(ip);
    o.log.debug({ url: req.url.split('?')[0], code: outcome.code, reason: outcome.description }, 'refused');
    const err = new GatewayError(
      outcome.code,
      `${new GatewayError(outcome.code).message}: ${outcome.description}`,
    );
    return reply
      .code(err.httpStatus)
      .header('www-authenticate', challenge(o.config, req, outcome))
      .header('content-type', 'application/json')
      .send(JSON.stringify(toRpcError(null, err)));
  });
}
