/**
 * Authorization: what one caller may see and use. Tenancy first (a server with a tenant exists only for
 * that tenant's callers), then the `policy` rules. The config is compiled once; each client session keeps
 * its caller's view while it is current, so list filtering and call checks cost a map lookup.
 *
 * A rule applies to a caller when every condition it states holds (roles: any of; scopes: all of;
 * tenants and subjects: any of). It covers an item when its server glob matches and the item's kind list
 * matches; a rule that names none of tools/prompts/resources covers every item of its servers, one that
 * names some covers only those. A covering deny beats any allow; with no covering rule `default` decides.
 *
 * The policies can be replaced at run time (the admin API's stored policies): views then belong to an
 * older generation and sessions take a fresh one on their next request.
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

/** One policy compiled: its rules and what it decides when none covers an item. */
interface CompiledPolicy {
  rules: CompiledRule[];
  defaultAllow: boolean;
}

/** A policy's rules that apply to one caller. */
interface PolicyLayer {
  rules: CompiledRule[];
  defaultAllow: boolean;
}

export class AccessControl {
  private readonly tenants = new Map<string, string | undefined>();
  private global: CompiledPolicy | undefined;
  private readonly byTenant = new Map<string, CompiledPolicy>();
  private readonly views = new Map<string, CallerAccess>();
  /**
   * Grows with every change of policy or of a server's tenant; a view of an older generation is stale
   * (sessions compare it before each use, so a change applies from their next request).
   */
  generation = 0;

  constructor(config: GatewayConfig) {
    for (const s of config.servers) this.tenants.set(serverId(s), s.tenant);
    this.global = config.policy && compilePolicy(config.policy);
  }

  /**
   * Replaces the policies in force: the gateway's (`global`, absent: everything allowed) and each
   * tenant's. A tenant's policy applies to that tenant's callers on top of the gateway's: both must let
   * an item through, so a tenant administrator can narrow what its callers use, never widen it.
   */
  setPolicies(
    global: PolicyConfig | undefined,
    tenants: ReadonlyMap<string, PolicyConfig> = new Map(),
  ): void {
    this.global = global && compilePolicy(global);
    this.byTenant.clear();
    for (const [t, p] of tenants) this.byTenant.set(t, compilePolicy(p));
    this.changed();
  }

  /** A server appeared, changed tenant or went (undefined tenant and `gone`: forget it). */
  setServerTenant(server: string, tenant: string | undefined, gone = false): void {
    if (gone) {
      if (!this.tenants.has(server)) return;
      this.tenants.delete(server);
    } else {
      if (this.tenants.has(server) && this.tenants.get(server) === tenant) return;
      this.tenants.set(server, tenant);
    }
    this.changed();
  }

  private changed(): void {
    this.generation++;
    this.views.clear();
  }

  /** The caller's view; one per principal, shared by its sessions (bounded: principals come and go). */
  forPrincipal(p: Principal): CallerAccess {
    const key = `${p.authMethod}\u0000${principalKey(p)}\u0000${p.roles.join(' ')}\u0000${p.scopes.join(' ')}`;
    let v = this.views.get(key);
    if (!v) {
      const layers: PolicyLayer[] = [];
      for (const policy of [this.global, this.byTenant.get(p.tenant)])
        if (policy)
          layers.push({
            rules: policy.rules.filter((r) => r.appliesTo(p)),
            defaultAllow: policy.defaultAllow,
          });
      v = new CallerAccess(p, layers, this.tenants, this.generation);
      this.views.set(key, v);
      if (this.views.size > 10_000) this.views.delete(this.views.keys().next().value!);
    }
    return v;
  }
}

export class CallerAccess {
  private readonly servers = new Map<string, boolean>();
  private readonly items = new Map<string, boolean>();
  /** False without a policy: every item of a visible server is visible. */
  readonly filtersItems: boolean;

  constructor(
    readonly principal: Principal,
    /** The policies that apply (the gateway's, the caller's tenant's): every one must allow. */
    private readonly layers: readonly PolicyLayer[],
    private readonly tenants: ReadonlyMap<string, string | undefined>,
    /** The AccessControl generation this view was made in. */
    readonly generation: number,
  ) {
    this.filtersItems = layers.length > 0;
  }

  serverVisible(server: string): boolean {
    let v = this.servers.get(server);
    if (v === undefined) {
      const tenant = this.tenants.get(server);
      v =
        (tenant === undefined || tenant === this.principal.tenant) &&
        this.layers.every(
          (l) =>
            !l.rules.some((r) => !r.allow && r.whole && r.server(server)) &&
            (l.defaultAllow || l.rules.some((r) => r.allow && r.server(server))),
        );
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
      v = this.layers.every((l) => {
        const covering = l.rules.filter((r) => r.server(server) && r.items[kind](name));
        return !covering.some((r) => !r.allow) && (covering.some((r) => r.allow) || l.defaultAllow);
      });
      if (this.items.size < 50_000) this.items.set(key, v);
    }
    return v;
  }

  /**
   * Violations of the argument constraints of the allow rules covering the tool, policy by policy: in
   * each, the call passes when one covering allow rule has no constraints or all of its constraints hold.
   */
  checkArguments(server: string, tool: string, args: unknown): ArgumentViolation[] {
    for (const l of this.layers) {
      const covering = l.rules.filter((r) => r.allow && r.server(server) && r.items.tools(tool));
      if (covering.length === 0 || covering.some((r) => !r.arguments)) continue;
      let first: ArgumentViolation[] | undefined;
      for (const r of covering) {
        const v = violations(r.arguments!, args);
        if (v.length === 0) {
          first = undefined;
          break;
        }
        first ??= v;
      }
      if (first) return first;
    }
    return [];
  }
}

function compilePolicy(p: PolicyConfig): CompiledPolicy {
  return { rules: p.rules.map(compileRule), defaultAllow: p.default === 'allow' };
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
