/**
 * Server versions (docs/registry.md, docs/adr/0008-server-versions.md). A server may run in several
 * versions at once: `{name: payments, version: v2}` runs as the server `payments-v2` (its id: the
 * registry key, the backend, the prefix of its tools, `/servers/payments-v2/mcp`, policies), and the
 * family's default version is also served under the plain `payments`. The id keeps to the characters
 * deployed clients accept in tool names (`^[a-zA-Z0-9_-]{1,64}$`), which rules out `payments@v2`.
 */

/** Version labels: letters, digits and inner `-`; no `_` or `.`, so that ids stay client-safe names. */
export const VERSION_PATTERN = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,14}[A-Za-z0-9])?$/;

/** What a server entry says about its version (a subset of ServerConfig). */
export interface Versioned {
  name: string;
  version?: string | undefined;
  defaultVersion?: boolean | undefined;
  enabled?: boolean | undefined;
}

/** The id a server runs under: its name, or `{name}-{version}` for a versioned one. */
export function serverId(s: Versioned): string {
  return s.version === undefined ? s.name : `${s.name}-${s.version}`;
}

/**
 * Orders version labels the way people read them: digit runs as numbers (`v9` < `v10`), the rest as
 * text, and a plain release after its pre-releases (`v2-rc1` < `v2`).
 */
export function compareVersions(a: string, b: string): number {
  const pa = a.split('-');
  const pb = b.split('-');
  const main = compareParts(pa[0]!, pb[0]!);
  if (main !== 0) return main;
  // Same main part: the one without a suffix is the release, newer than any pre-release of it.
  if (pa.length !== pb.length && (pa.length === 1 || pb.length === 1)) return pa.length === 1 ? 1 : -1;
  return compareParts(pa.slice(1).join('-'), pb.slice(1).join('-'));
}

function compareParts(a: string, b: string): number {
  const ta = a.match(/\d+|\D+/g) ?? [];
  const tb = b.match(/\d+|\D+/g) ?? [];
  for (let i = 0; i < Math.max(ta.length, tb.length); i++) {
    const x = ta[i];
    const y = tb[i];
    if (x === undefined) return -1;
    if (y === undefined) return 1;
    const nx = /^\d/.test(x);
    const ny = /^\d/.test(y);
    if (nx && ny) {
      const d = Number(x) - Number(y);
      if (d !== 0) return d;
    } else if (x !== y) return x < y ? -1 : 1;
  }
  return 0;
}

/**
 * The member of one family (servers sharing a `name`) served under the plain name: an unversioned
 * member if there is one; else the highest version marked `defaultVersion`; else the highest version.
 * Deterministic whatever order the members come in, so every gateway picks the same one.
 */
export function defaultMember<T extends Versioned>(members: readonly T[]): T | undefined {
  const live = members.filter((m) => m.enabled !== false);
  const plain = live.find((m) => m.version === undefined);
  if (plain) return plain;
  const marked = live.filter((m) => m.defaultVersion === true);
  const pool = marked.length > 0 ? marked : live;
  return pool.reduce<T | undefined>(
    (best, m) => (best === undefined || compareVersions(m.version!, best.version!) > 0 ? m : best),
    undefined,
  );
}

/** Family name -> id of its default member, for every family that has one. */
export function familyDefaults(servers: readonly Versioned[]): Map<string, string> {
  const families = new Map<string, Versioned[]>();
  for (const s of servers) families.set(s.name, [...(families.get(s.name) ?? []), s]);
  const out = new Map<string, string>();
  for (const [name, members] of families) {
    const d = defaultMember(members);
    if (d) out.set(name, serverId(d));
  }
  return out;
}
