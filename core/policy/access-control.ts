/**
 * Authorization: what one caller may see and use. Tenancy first (a server with a tenant exists only for
 * that tenant's callers), then the `policy` rules. The config is compiled once; each client session asks
 * for its caller's view once and keeps it, so list filtering and call checks cost a map lookup.
 *
 * A rule applies to a caller when every condition it states holds (roles: any of; scopes: all of;
 * tenants and subjects: any of). It covers an item when its server glob matches and the item's kind list
 * matches; a rule that names none of tools/prompts/resources covers every item of its servers, one that
 * names some covers only those. A covering deny beats any allow; with no covering rule `default` decides.
 */
import type { GatewayConfig } from '../../shared/config/schema.js';
import type { PolicyConfig } from '../../shared/config/security-schema.js';
import { principalKey, type Principal } from '../../shared/identity/principal.js';
import { globMatcher, type GlobMatcher } from './glob.js';
import { serverId } from '../../shared/mcp/server-versions.js';

export type ItemKind = 'tools' | 'prompts' | 'resources';

type RuleConfig = PolicyConfig['rules'][number];
type Constraint = NonNullable<RuleConfig['arguments']>[string];

interface CompiledRule {
  allow: boolean;
  appliesTo(p: Principal): boolean;
  server: GlobMatcher;
  /** Whether the rule names no item list, i.e. it covers its servers whole. */
  whole: boolean;
  items: Record<ItemKind, GlobMatcher>;
  arguments?: Record<string, { c: Constraint; pattern?: RegExp }>;
}

export interface ArgumentViolation {
  path: string;
  message: string;
}

export class AccessControl {
  private readonly tenants = new Map<string, string | undefined>();
  private readonly rules: CompiledRule[];
  private readonly defaultAllow: boolean;
  /** Whether anything beyond tenancy filters items (lists and calls need the catalog). */
  readonly filtersItems: boolean;
  private readonly views = new Map<string, CallerAccess>();

  constructor(config: GatewayConfig) {
    for (const s of config.servers) this.tenants.set(serverId(s), s.tenant);
    this.filtersItems = config.policy !== undefined;
    this.defaultAllow = config.policy ? config.policy.default === 'allow' : true;
    this.rules = (config.policy?.rules ?? []).map(compileRule);
  }

  /**
   * A server's tenant as the registry now says (a server added or changed at run time): callers'
   * cached verdicts on it are dropped, so that another tenant's server never stays visible.
   */
  setServerTenant(server: string, tenant: string | undefined): void {
    if (this.tenants.has(server) && this.tenants.get(server) === tenant) return;
    this.tenants.set(server, tenant);
    for (const v of this.views.values()) v.forget(server);
  }

  /** The caller's view; one per principal, shared by its sessions (bounded: principals come and go). */
  forPrincipal(p: Principal): CallerAccess {
    const key = `${p.authMethod}\u0000${principalKey(p)}\u0000${p.roles.join(' ')}\u0000${p.scopes.join(' ')}`;
    let v = this.views.get(key);
    if (!v) {
      v = new CallerAccess(
        p,
        this.rules.filter((r) => r.appliesTo(p)),
        this.defaultAllow,
        this.tenants,
        this.filtersItems,
      );
      this.views.set(key, v);
      if (this.views.size > 10_000) this.views.delete(this.views.keys().next().value!);
    }
    return v;
  }
}

export class CallerAccess {
  private readonly servers = new Map<string, boolean>();
  private readonly items = new Map<string, boolean>();

  constructor(
    readonly principal: Principal,
    private readonly rules: CompiledRule[],
    private readonly defaultAllow: boolean,
    private readonly tenants: ReadonlyMap<string, string | undefined>,
    /** False without a policy: every item of a visible server is visible. */
    readonly filtersItems: boolean,
  ) {}

  /** Drops the cached verdicts on `server` (its tenant changed). */
  forget(server: string): void {
    this.servers.delete(server);
    for (const k of this.items.keys()) if (k.split('\u0000')[1] === server) this.items.delete(k);
  }

  serverVisible(server: string): boolean {
    let v = this.servers.get(server);
    if (v === undefined) {
      const tenant = this.tenants.get(server);
      v =
        (tenant === undefined || tenant === this.principal.tenant) &&
        !this.rules.some((r) => !r.allow && r.whole && r.server(server)) &&
        (this.defaultAllow || this.rules.some((r) => r.allow && r.server(server)));
      this.servers.set(server, v);
    }
    return v;
  }

  itemVisible(kind: ItemKind, server: string, name: string): boolean {
    if (!this.serverVisible(server)) return false;
    if (!this.filtersItems) return true;
    const key = `${kind}\u0000${server}\u0000${name}`;
    let v = this.items.get(key);
    if (v === undefined) {
      const covering = this.rules.filter((r) => r.server(server) && r.items[kind](name));
      v = !covering.some((r) => !r.allow) && (covering.some((r) => r.allow) || this.defaultAllow);
      if (this.items.size < 50_000) this.items.set(key, v);
    }
    return v;
  }

  /**
   * Violations of the argument constraints of the allow rules covering the tool: the call passes when
   * one covering allow rule has no constraints or all of its constraints hold.
   */
  checkArguments(server: string, tool: string, args: unknown): ArgumentViolation[] {
    const covering = this.rules.filter((r) => r.allow && r.server(server) && r.items.tools(tool));
    if (covering.length === 0 || covering.some((r) => !r.arguments)) return [];
    let first: ArgumentViolation[] | undefined;
    for (const r of covering) {
      const v = violations(r.arguments!, args);
      if (v.length === 0) return [];
      first ??= v;
    }
    return first!;
  }
}

function compileRule(r: RuleConfig): CompiledRule {
  const named = r.tools !== undefined || r.prompts !== undefined || r.resources !== undefined;
  const list = (l: string[] | undefined) => globMatcher(l ?? (named ? [] : ['*']));
  const subjects = r.subjects && globMatcher(r.subjects);
  return {
    allow: r.effect === 'allow',
    appliesTo: (p) =>
      (!r.roles || r.roles.some((x) => p.roles.includes(x))) &&
      (!r.scopes || r.scopes.every((x) => p.scopes.includes(x))) &&
      (!r.tenants || r.tenants.includes(p.tenant)) &&
      (!subjects || subjects(p.subject)),
    server: globMatcher(r.servers),
    whole: !named,
    items: { tools: list(r.tools), prompts: list(r.prompts), resources: list(r.resources) },
    ...(r.arguments
      ? {
          arguments: Object.fromEntries(
            Object.entries(r.arguments).map(([k, c]) => [
              k,
              { c, ...(c.pattern !== undefined ? { pattern: new RegExp(`^(?:${c.pattern})$`, 'u') } : {}) },
            ]),
          ),
        }
      : {}),
  };
}

function violations(constraints: NonNullable<CompiledRule['arguments']>, args: unknown): ArgumentViolation[] {
  const a =
    typeof args === 'object' && args !== null && !Array.isArray(args)
      ? (args as Record<string, unknown>)
      : {};
  const out: ArgumentViolation[] = [];
  for (const [name, { c, pattern }] of Object.entries(constraints)) {
    const path = `/${name}`;
    if (!(name in a)) {
      if (c.required) out.push({ path, message: 'is required for this caller' });
      continue;
    }
    const v = a[name];
    if (c.enum && !c.enum.some((e) => e === v))
      out.push({ path, message: `must be one of ${c.enum.map((e) => JSON.stringify(e)).join(', ')}` });
    if (pattern && (typeof v !== 'string' || !pattern.test(v)))
      out.push({ path, message: `must match ${c.pattern}` });
    if (c.maxLength !== undefined && (typeof v !== 'string' || v.length > c.maxLength))
      out.push({ path, message: `must be a string of at most ${c.maxLength} characters` });
    if (c.minimum !== undefined && (typeof v !== 'number' || v < c.minimum))
      out.push({ path, message: `must be a number >= ${c.minimum}` });
    if (c.maximum !== undefined && (typeof v !== 'number' || v > c.maximum))
      out.push({ path, message: `must be a number <= ${c.maximum}` });
  }
  return out;
}
