/**
 * CORS for browser-based MCP clients: only the configured origins get CORS headers, a preflight from one
 * of them is answered here (204), and the headers a client must read (the session id, the auth
 * challenge) are exposed. Headers go on the raw response because the MCP endpoints write it directly.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';

const ALLOWED_METHODS = 'GET, POST, DELETE, OPTIONS';
const ALLOWED_HEADERS = [
  'accept',
  'authorization',
  'content-type',
  'last-event-id',
  'mcp-protocol-version',
  'mcp-session-id',
  'mcp-method',
  'mcp-name',
  'x-api-key',
];
const EXPOSED_HEADERS = 'Mcp-Session-Id, Mcp-Protocol-Version, WWW-Authenticate, Retry-After, Allow';

export function corsHook(origins: readonly string[], maxAgeSec: number) {
  const allowed = new Set(origins);
  return async function cors(req: FastifyRequest, reply: FastifyReply): Promise<void> {
    const origin = req.headers.origin;
    if (origin === undefined || !allowed.has(origin)) return;
    const res = reply.raw;
    res.setHeader('access-control-allow-origin', origin);
    res.setHeader('vary', 'Origin');
    const preflight = req.method === 'OPTIONS' && req.headers['access-control-request-method'] !== undefined;
    if (!preflight) {
      res.setHeader('access-control-expose-headers', EXPOSED_HEADERS);
      return;
    }
    const asked = String(req.headers['access-control-request-headers'] ?? '')
      .split(',')
      .map((h) => h.trim().toLowerCase())
      .filter((h) => h !== '');
    const headers = asked.filter((h) => ALLOWED_HEADERS.includes(h));
    res.setHeader('access-control-allow-methods', ALLOWED_METHODS);
    res.setHeader(
      'access-control-allow-headers',
      (headers.length > 0 ? headers : ALLOWED_HEADERS).join(', '),
    );
    res.setHeader('access-control-max-age', String(maxAgeSec));
    return reply.code(204).send();
  };
}
