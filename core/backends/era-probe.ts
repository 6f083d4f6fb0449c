/**
 * Which era a Streamable HTTP backend speaks, decided the way the SDK v2 client decides it
 * (docs/adr/0004-protocol-eras.md, "How a v2 client picks the era"): a `server/discover` with the full
 * 2026 envelope and headers, then
 * - a DiscoverResult listing 2026-07-28: 2026;
 * - `-32022` naming 2026-07-28 among its supported versions: one corrective re-probe;
 * - any other JSON-RPC error, or any other 4xx: 2025 (the server gets a plain initialize);
 * - 401/403, 5xx, a network error, a timeout, a 2xx without usable JSON: no verdict (a connect error).
 */
import { GatewayError } from '../../shared/errors.js';
import type { HttpServerConfig } from '../../shared/config/schema.js';
import { MODERN_CODES, MODERN_VERSION, withEnvelope, type EnvelopeOwner } from '../../shared/mcp/eras.js';
import { upstreamAgent } from './http-common.js';
import { baseHeaders, contentType, describeNetworkError, parseHttpUrl } from './streamable-http.js';

export type Era = '2025' | '2026';

export async function probeEra(
  config: HttpServerConfig,
  gateway: EnvelopeOwner,
  /** Who the probe speaks as (`identity: headers | delegation`: the core itself). */
  identity?: Readonly<Record<string, string>>,
): Promise<Era> {
  for (let attempt = 0; attempt < 2; attempt++) {
    const answer = await discover(config, gateway, identity);
    if (answer.result) {
      const versions = (answer.result as { supportedVersions?: unknown }).supportedVersions;
      if (Array.isArray(versions) && versions.includes(MODERN_VERSION)) return '2026';
      return '2025';
    }
    if (!answer.error) return '2025';
    const supported = (answer.error.data as { supported?: unknown } | undefined)?.supported;
    const corrective =
      answer.error.code === MODERN_CODES.UnsupportedVersion &&
      Array.isArray(supported) &&
      supported.includes(MODERN_VERSION);
    if (!corrective) return '2025';
  }
  return '2025';
}

async function discover(
  config: HttpServerConfig,
  gateway: EnvelopeOwner,
  identity: Readonly<Record<string, string>> | undefined,
): Promise<{ result?: object; error?: { code: number; data?: unknown } }> {
  const u = parseHttpUrl(config.url);
  const timeoutMs = config.timeouts.connectMs;
  const fail = (text: string, status?: number) =>
    new GatewayError('GW_BACKEND_UNAVAILABLE', `backend "${config.name}" probe failed: ${text}`, {
      server: config.name,
      ...(status !== undefined && { status }),
    });
  let res;
  try {
    res = await upstreamAgent.request({
      origin: u.origin,
      path: `${u.pathname}${u.search}`,
      method: 'POST',
      headers: {
        ...baseHeaders(u, config.headers),
        ...identity,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'mcp-protocol-version': MODERN_VERSION,
        'mcp-method': 'server/discover',
      },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 'mcpgw-discover-probe',
        method: 'server/discover',
        params: withEnvelope({}, gateway),
      }),
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
    });
  } catch (err) {
    throw fail(describeNetworkError(err, timeoutMs).text);
  }
  const status = res.statusCode;
  const text = await res.body.text().catch(() => '');
  if (status === 401 || status === 403 || status >= 500) throw fail(`HTTP ${status}`, status);
  const message = parseAnswer(text, contentType(res.headers));
  if (status >= 200 && status < 300) {
    if (!message) throw fail(`HTTP ${status} without a usable JSON-RPC answer`, status);
    return message;
  }
  // Any other 4xx: its body is read as JSON-RPC first; without one it still means "not 2026".
  return message ?? {};
}

/** The JSON-RPC answer in a JSON body or in the first `data:` of an SSE body. */
function parseAnswer(
  text: string,
  ctype: string,
): { result?: object; error?: { code: number; data?: unknown } } | undefined {
  let body = text;
  if (ctype.startsWith('text/event-stream')) {
    const line = text.split('\n').find((l) => l.startsWith('data:') && l.length > 5);
    body = line ? line.slice(5).trim() : '';
  }
  try {
    const v = JSON.parse(body) as { result?: unknown; error?: { code?: unknown; data?: unknown } };
    if (typeof v.result === 'object' && v.result !== null) return { result: v.result };
    if (typeof v.error?.code === 'number') return { error: { code: v.error.code, data: v.error.data } };
  } catch {
    /* not JSON */
  }
  return undefined;
}
