/**
 * Host-header routing: with `http.hostRouting.pattern: "{service}-mcp.example.com"`, a request to
 * `hubspot-mcp.example.com/mcp` is served as `/servers/hubspot/mcp` (and /sse, /message likewise), so
 * that one gateway serves every server under its own host name. The rewrite runs before routing; the
 * matching hosts count as allowed hosts for the DNS-rebinding check.
 */
export interface HostRouter {
  /** The path to route `url` to for `host`, or `url` unchanged. */
  rewrite(host: string | undefined, url: string): string;
  /** Whether `host` is one of the pattern's host names. */
  matches(host: string | undefined): boolean;
}

const ROUTED_PATHS = new Set(['/mcp', '/sse', '/message']);

export function hostRouter(pattern: string, serverNames: readonly string[]): HostRouter {
  const [before, after] = pattern.toLowerCase().split('{service}') as [string, string];
  const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const re = new RegExp(`^${escape(before)}([a-z0-9](?:[a-z0-9_-]{0,30}[a-z0-9])?)${escape(after)}$`);
  // Host names are case-insensitive, server names are not: find the server a host means.
  const byLower = new Map(serverNames.map((n) => [n.toLowerCase(), n]));
  const serviceOf = (host: string | undefined): string | undefined => {
    if (!host) return undefined;
    const name = host.toLowerCase().replace(/:\d+$/, '');
    const m = re.exec(name);
    return m ? (byLower.get(m[1]!) ?? m[1]!) : undefined;
  };
  return {
    matches: (host) => serviceOf(host) !== undefined,
    rewrite(host, url) {
      const service = serviceOf(host);
      if (!service) return url;
      const q = url.indexOf('?');
      const path = q >= 0 ? url.slice(0, q) : url;
      if (!ROUTED_PATHS.has(path)) return url;
      return `/servers/${encodeURIComponent(service)}${path}${q >= 0 ? url.slice(q) : ''}`;
    },
  };
}
