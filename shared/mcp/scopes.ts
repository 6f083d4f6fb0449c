/**
 * The scopes a client session is opened on: `aggregate` (/mcp), a server id or name
 * (/servers/{name}/mcp), or `v/{name}` (a virtual server, /v/{name}/mcp); and the one refusal of a
 * scope that does not exist for the caller, used by the edge and the core alike.
 */
import { GatewayError } from '../errors.js';

export const VIRTUAL_SCOPE_PREFIX = 'v/';

/** The error for a scope that does not exist for the caller: a server, or a virtual server (HTTP 404). */
export function unknownScope(scope: string): GatewayError {
  if (scope.startsWith(VIRTUAL_SCOPE_PREFIX)) {
    const name = scope.slice(VIRTUAL_SCOPE_PREFIX.length);
    return new GatewayError('GW_UNKNOWN_VIRTUAL_SERVER', `Unknown virtual server: ${name}`, {
      virtualServer: name,
    });
  }
  return new GatewayError('GW_UNKNOWN_SERVER', `Unknown server: ${scope}`, { server: scope });
}

/**
 * Whether a JSON-RPC error answer says the session's own scope is gone for its caller (a deleted virtual
 * server, a server now hidden): the HTTP layer answers it 404, as it would have refused the request itself.
 */
export function isScopeRefusal(error: { data?: unknown } | undefined, scope: string): boolean {
  const data = error?.data as { code?: unknown; virtualServer?: unknown; server?: unknown } | undefined;
  if (data?.code === 'GW_UNKNOWN_VIRTUAL_SERVER')
    return `${VIRTUAL_SCOPE_PREFIX}${String(data.virtualServer)}` === scope;
  return data?.code === 'GW_UNKNOWN_SERVER' && data.server === scope;
}
