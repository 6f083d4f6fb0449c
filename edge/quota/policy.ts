/**
 * The `quotas:` config compiled once into what a request needs: the dimensions that apply to a caller
 * (checked at the HTTP layer, before the body is read) and those that apply to a target server and tool
 * (checked in the pipeline, once the request names them), with tenant, server and tool overrides applied.
 */
import type { QuotasConfig } from '../../shared/config/schema.js';
import type { ErrorCode } from '../../shared/errors.js';
import type { Principal } from '../../shared/identity/principal.js';
import type { RateDimension } from '../../shared/ports/quota-store.js';

export type DimensionName = 'user' | 'clientApp' | 'tenant' | 'tool' | 'server' | 'global';
export type StoreFailureMode = 'open' | 'closed' | 'local';

export interface Limit {
  limit: number;
  windowMs: number;
  burst?: number;
  onStoreFailure?: StoreFailureMode;
}

/** One rate dimension of one request, with what a refusal must say about it. */
export interface QuotaDimension {
  readonly name: DimensionName;
  readonly rate: RateDimension;
  readonly onStoreFailure: StoreFailureMode;
  /** The error a refusal on this dimension gives. */
  readonly code: ErrorCode;
}

export interface ConcurrencyRule {
  readonly key: string;
  readonly slot: string;
  readonly limit: number;
  readonly leaseMs: number;
  readonly onStoreFailure: StoreFailureMode;
}

const CODES: Record<DimensionName, ErrorCode> = {
  user: 'GW_QUOTA_USER',
  clientApp: 'GW_QUOTA_CLIENT_APP',
  tenant: 'GW_QUOTA_TENANT',
  tool: 'GW_QUOTA_TOOL',
  server: 'GW_QUOTA_SERVER',
  global: 'GW_QUOTA_GLOBAL',
};

export class QuotaPolicy {
  constructor(private current: QuotasConfig) {}

  /** The limits in force (the file's, with the control plane's on top when it is on). */
  get config(): QuotasConfig {
    return this.current;
  }

  /** Puts other limits in force from the next decision on; counters and leases held stay. */
  replace(config: QuotasConfig): void {
    this.current = config;
  }

  /** The user-scoped keys share one slot: `u:<tenant>:<subject>`. */
  userSlot(p: Principal): string {
    return `u:${p.tenant}:${p.subject}`;
  }

  /** Dimensions known from the caller alone: user, client app, tenant, global. */
  callerDimensions(p: Principal): QuotaDimension[] {
    const c = this.config;
    const t = c.tenants[p.tenant];
    const out: QuotaDimension[] = [];
    const user = t?.user ?? c.user;
    if (user) out.push(this.dim('user', `user:${p.tenant}:${p.subject}`, this.userSlot(p), user));
    const app = t?.clientApp ?? c.clientApp;
    if (app && p.clientApp !== undefined)
      out.push(this.dim('clientApp', `app:${p.tenant}:${p.clientApp}`, `a:${p.tenant}:${p.clientApp}`, app));
    const tenant = t?.tenant ?? c.tenant;
    if (tenant) out.push(this.dim('tenant', `tenant:${p.tenant}`, `t:${p.tenant}`, tenant));
    if (c.global) out.push(this.dim('global', 'global', 'g', c.global));
    return out;
  }

  /** The per-user concurrency rule, when on. */
  concurrency(p: Principal): ConcurrencyRule | undefined {
    const c = this.config.concurrency;
    const limit = this.config.tenants[p.tenant]?.concurrencyPerUser ?? c.perUser;
    if (limit === false) return undefined;
    return {
      key: `conc:${p.tenant}:${p.subject}`,
      slot: this.userSlot(p),
      limit,
      leaseMs: c.leaseMs,
      onStoreFailure: c.onStoreFailure ?? this.config.onStoreFailure,
    };
  }

  /**
   * Dimensions known once the request names its target: for tools/call, the user's per-tool counter.
   * (The `server` limit is per replica, checked by the pool once it picks one: `replicaDimensions`.)
   */
  targetDimensions(p: Principal, server: string, tool?: string): QuotaDimension[] {
    const c = this.config;
    const s = c.servers[server];
    const out: QuotaDimension[] = [];
    if (tool !== undefined) {
      const lim = s?.tools[tool] ?? s?.tool ?? c.tenants[p.tenant]?.tool ?? c.tool;
      if (lim)
        out.push(this.dim('tool', `tool:${p.tenant}:${p.subject}:${server}/${tool}`, this.userSlot(p), lim));
    }
    return out;
  }

  /**
   * The `server` limit of one replica of a server (all users together): the pool asks before it sends an
   * attempt there, and tries another replica when this one is spent. Its own slot per replica.
   */
  replicaDimensions(server: string, replica: string): QuotaDimension[] {
    const srv = this.config.servers[server]?.server ?? this.config.server;
    if (!srv) return [];
    return [this.dim('server', `server:${server}:${replica}`, `s:${server}:${replica}`, srv)];
  }

  private dim(name: DimensionName, key: string, slot: string, l: Limit): QuotaDimension {
    return {
      name,
      code: CODES[name],
      onStoreFailure: l.onStoreFailure ?? this.config.onStoreFailure,
      rate: { key, slot, limit: l.limit, windowMs: l.windowMs, burst: l.burst ?? l.limit },
    };
  }
}
