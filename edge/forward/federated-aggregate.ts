/**
 * The federated aggregate (docs/federation.md, "The aggregate across regions"): `/mcp` at an edge lists,
 * besides its own region's aggregate, the tools and prompts of servers only other regions' cores serve
 * and of domain teams' cores, and routes their calls there. A CoreService around the edge's own one:
 * every other scope and every other method passes through untouched.
 *
 * Names follow the aggregate's rule (`{server}__{name}`, shared/mcp/names.ts): a remote server's tool
 * `t` of `maps` is `maps__t`, exactly what it would be if this region served `maps`; a domain is one
 * scope whose names are its core's own aggregate names, so `finance`'s `ledger__post` is
 * `finance__ledger__post`. A name that would not fit is shortened with a hash and the mapping is kept.
 *
 * Each remote scope a session uses gets its own session on the serving core (opened lazily with the
 * client's initialize parameters, closed with the client session): the call goes there with the
 * caller's signed identity, where that core's tenancy, policy and audit apply, as for
 * `/servers/{name}/mcp`. Data residency decides what is listed and where calls may go: a scope no
 * allowed region serves is not listed, and a call of it is refused with GW_RESIDENCY_DENIED.
 */
import { randomUUID } from 'node:crypto';
import { GatewayError, toRpcError } from '../../shared/errors.js';
import { ANONYMOUS, type Principal } from '../../shared/identity/principal.js';
import type { Logger } from '../../shared/log.js';
import type {
  JsonObject,
  JsonRpcId,
  JsonRpcMessage,
  JsonRpcNotification,
  JsonRpcRequest,
  JsonRpcResponse,
} from '../../shared/mcp/jsonrpc.js';
import { NameMap, splitExposedName } from '../../shared/mcp/names.js';
import type {
  CoreService,
  CoreSessionHandle,
  MessageSink,
  OpenSessionOptions,
  ReadinessReport,
} from '../../shared/ports/core-service.js';

type Kind = 'tools' | 'prompts';
const LIST: Record<string, Kind> = { 'tools/list': 'tools', 'prompts/list': 'prompts' };
const USE: Record<string, Kind> = { 'tools/call': 'tools', 'prompts/get': 'prompts' };
const CHANGED: Record<Kind, string> = {
  tools: 'notifications/tools/list_changed',
  prompts: 'notifications/prompts/list_changed',
};
/** Pages read from one remote scope's list at most (a runaway cursor must not loop forever). */
const MAX_PAGES = 50;

/** A scope served elsewhere: a server only other regions serve, or a domain. */
export interface FederatedScope {
  scope: string;
  /** A domain team's core (its items are that core's aggregate names). */
  domain: boolean;
  /** Residency lets this caller reach a core serving it. */
  allowed: boolean;
}

export interface FederatedAggregateOptions {
  /** This edge's own CoreService: aggregate sessions and every other scope. */
  inner: CoreService;
  /** Where remote scopes' sessions are opened (the edge's RemoteCore: placement, residency, tokens). */
  remote: Pick<CoreService, 'openSession'>;
  /** The scopes served elsewhere, as `principal` may use them. */
  scopes(principal: Principal): readonly FederatedScope[];
  /** The edge's `policy` for an item of a remote scope (absent: allowed). */
  visible?: (principal: Principal, kind: Kind, scope: string, name: string) => boolean;
  log: Logger;
}

export class FederatedAggregate implements CoreService {
  private readonly sessions = new Set<FederatedSession>();

  constructor(readonly o: FederatedAggregateOptions) {}

  hasScope(scope: string, identity?: Principal): boolean {
    return this.o.inner.hasScope(scope, identity);
  }

  openSession(o: OpenSessionOptions): CoreSessionHandle {
    if (o.scope !== 'aggregate') return this.o.inner.openSession(o);
    const s = new FederatedSession(this, o, () => this.sessions.delete(s));
    this.sessions.add(s);
    return s;
  }

  /** What other regions or domains serve changed: every aggregate session lists again. */
  remoteChanged(): void {
    for (const s of this.sessions) s.changed(['tools', 'prompts']);
  }

  get sessionCount(): number {
    return this.sessions.size;
  }

  readiness(): ReadinessReport {
    return this.o.inner.readiness();
  }

  /** As the inner core: what this one changes of a message (names, merged lists) is a new object. */
  get forwardsText(): boolean {
    return this.o.inner.forwardsText === true;
  }

  async close(): Promise<void> {
    await Promise.all([...this.sessions].map((s) => s.close().catch(() => {})));
    await this.o.inner.close();
  }
}

/** An item a remote scope's core listed (its own name), before it is named in the aggregate. */
interface RemoteItem {
  item: JsonObject;
  scope: string;
}

/** A session this edge holds on a remote scope's core for one client session. */
interface Sub {
  handle: CoreSessionHandle;
  /** The initialize answer: an error means the scope is not there for this caller. */
  init: JsonRpcResponse | undefined;
}

class FederatedSession implements CoreSessionHandle {
  readonly id: string;
  private readonly inner: CoreSessionHandle;
  private readonly principal: Principal;
  private initParams: JsonObject;
  private readonly subs = new Map<string, Promise<Sub>>();
  private readonly names: Record<Kind, NameMap> = { tools: new NameMap(), prompts: new NameMap() };
  private readonly lists = new Map<Kind, Promise<RemoteItem[]>>();
  /** The scopes served elsewhere as this caller may use them; recomputed after a change. */
  private scopeList: readonly FederatedScope[] | undefined;
  /** Prefixes the local aggregate listed in the listing under way (a scope served here stays local). */
  private readonly localPrefixes: Record<Kind, Set<string>> = { tools: new Set(), prompts: new Set() };
  /** Server-to-client requests a remote scope's core sent: their answers go back there. */
  private readonly asked = new Map<JsonRpcId, Sub>();
  /** Client requests under way on a remote scope (for their cancellation). */
  private readonly running = new Map<JsonRpcId, Sub>();
  private readonly pendingChange = new Set<Kind>();
  private nextId = 0;
  private closed = false;

  constructor(
    private readonly fed: FederatedAggregate,
    private readonly opts: OpenSessionOptions,
    private readonly forget: () => void,
  ) {
    this.id = opts.id;
    this.principal = opts.identity ?? anonymousOf(opts.principal);
    this.inner = fed.o.inner.openSession(opts);
    const r = opts.restore;
    this.initParams = {
      protocolVersion: r?.protocolVersion ?? '2025-06-18',
      capabilities: r?.clientCapabilities ?? {},
      clientInfo: r?.clientInfo ?? { name: 'mcpgw-federation', version: '1' },
    };
  }

  async request(request: JsonRpcRequest, related: MessageSink): Promise<JsonRpcResponse | undefined> {
    if (request.method === 'initialize') {
      if (request.params) this.initParams = request.params;
      return this.inner.request(request, related);
    }
    const listKind = LIST[request.method];
    if (listKind) return this.list(listKind, request, related);
    const useKind = USE[request.method];
    const name = (request.params as { name?: unknown } | undefined)?.name;
    if (useKind && typeof name === 'string') {
      const target = this.resolve(useKind, name);
      if (target) return this.use(useKind, target, request, related);
    }
    return this.inner.request(request, related);
  }

  /** The local page as the core answers it; the last page also carries the remote scopes' items. */
  private async list(
    kind: Kind,
    request: JsonRpcRequest,
    related: MessageSink,
  ): Promise<JsonRpcResponse | undefined> {
    const first = request.params?.cursor === undefined;
    if (first) this.localPrefixes[kind].clear();
    const res = await this.inner.request(request, related);
    if (!res || !('result' in res)) return res;
    const items = res.result[kind];
    if (!Array.isArray(items)) return res;
    for (const it of items as Array<{ name?: unknown }>) {
      const split = typeof it.name === 'string' ? splitExposedName(it.name) : undefined;
      if (split) this.localPrefixes[kind].add(split.server);
    }
    if (res.result.nextCursor !== undefined) return res;
    // A scope this region lists itself stays local (a core of this region whose info lapsed).
    const merged = (await this.remoteItems(kind)).flatMap(({ item, scope }) =>
      this.localPrefixes[kind].has(scope)
        ? []
        : [{ ...item, name: this.names[kind].assign(scope, String(item.name)) }],
    );
    if (merged.length === 0) return res;
    return { ...res, result: { ...res.result, [kind]: [...items, ...merged] } };
  }

  /** Every allowed remote scope's items under their aggregate names (cached until a change). */
  private remoteItems(kind: Kind): Promise<RemoteItem[]> {
    let p = this.lists.get(kind);
    if (!p) {
      p = this.readRemote(kind);
      this.lists.set(kind, p);
      p.catch(() => this.lists.delete(kind));
    }
    return p;
  }

  private scopes(): readonly FederatedScope[] {
    return (this.scopeList ??= this.fed.o.scopes(this.principal));
  }

  private async readRemote(kind: Kind): Promise<RemoteItem[]> {
    const scopes = this.scopes().filter((s) => s.allowed);
    const parts = await Promise.all(
      scopes.map(async ({ scope }) => {
        try {
          const sub = await this.sub(scope);
          if (!sub.init || 'error' in sub.init) return [];
          const caps = (sub.init.result.capabilities ?? {}) as Record<string, unknown>;
          if (caps[kind] === undefined) return [];
          const out: JsonObject[] = [];
          let cursor: unknown;
          for (let page = 0; page < MAX_PAGES; page++) {
            const r = await sub.handle.request(
              this.own(`${kind}/list`, cursor === undefined ? {} : { cursor }),
              { send: (m) => this.fromRemote(sub, m) },
            );
            if (!r || 'error' in r) break;
            const got = r.result[kind];
            if (Array.isArray(got)) out.push(...(got as JsonObject[]));
            cursor = r.result.nextCursor;
            if (typeof cursor !== 'string') break;
          }
          return out.flatMap((item): RemoteItem[] => {
            if (typeof item.name !== 'string') return [];
            if (this.fed.o.visible && !this.fed.o.visible(this.principal, kind, scope, item.name)) return [];
            return [{ item, scope }];
          });
        } catch (err) {
          this.fed.o.log.warn(
            { scope, sessionId: this.id, err: (err as Error).message },
            'federation: a remote scope could not be listed; its items are left out',
          );
          return [];
        }
      }),
    );
    return parts.flat();
  }

  /**
   * The remote scope and backend-side name behind an exposed name: from this session's lists, else
   * by the separator when the prefix is a scope served elsewhere (a caller may call what it has not
   * listed; residency then refuses it clearly rather than as an unknown tool).
   */
  private resolve(kind: Kind, exposed: string): { scope: string; name: string } | undefined {
    const known = this.names[kind].resolve(exposed);
    if (known && !this.localPrefixes[kind].has(known.server))
      return { scope: known.server, name: known.name };
    const split = splitExposedName(exposed);
    if (!split || this.localPrefixes[kind].has(split.server)) return undefined;
    const s = this.scopes().find((x) => x.scope === split.server);
    return s && { scope: s.scope, name: split.name };
  }

  private async use(
    kind: Kind,
    target: { scope: string; name: string },
    request: JsonRpcRequest,
    related: MessageSink,
  ): Promise<JsonRpcResponse | undefined> {
    const exposed = String((request.params as { name?: unknown }).name);
    if (this.fed.o.visible && !this.fed.o.visible(this.principal, kind, target.scope, target.name)) {
      const code = kind === 'tools' ? 'GW_UNKNOWN_TOOL' : 'GW_UNKNOWN_PROMPT';
      return toRpcError(
        request.id,
        new GatewayError(code, `Unknown ${kind === 'tools' ? 'tool' : 'prompt'}: ${exposed}`),
      );
    }
    const sub = await this.sub(target.scope);
    if (!sub.init || 'error' in sub.init)
      return sub.init && 'error' in sub.init
        ? { jsonrpc: '2.0', id: request.id, error: sub.init.error }
        : toRpcError(request.id, new GatewayError('GW_CORE_UNAVAILABLE'));
    this.running.set(request.id, sub);
    try {
      return await sub.handle.request(
        { ...request, params: { ...request.params, name: target.name } },
        { send: (m) => (this.noteAsk(sub, m), related.send(m)) },
      );
    } finally {
      this.running.delete(request.id);
    }
  }

  /** The session on `scope`'s core for this client session, initialized as the client was. */
  private sub(scope: string): Promise<Sub> {
    let p = this.subs.get(scope);
    if (!p) {
      p = (async () => {
        const sub: Sub = {
          handle: undefined as unknown as CoreSessionHandle,
          init: undefined,
        };
        sub.handle = this.fed.o.remote.openSession({
          id: randomUUID(),
          principal: this.opts.principal,
          ...(this.opts.identity && { identity: this.opts.identity }),
          scope,
          unrelated: { send: (m) => this.fromRemote(sub, m) },
        });
        try {
          sub.init = await sub.handle.request(this.own('initialize', this.initParams), {
            send: (m) => this.fromRemote(sub, m),
          });
        } catch (err) {
          this.subs.delete(scope);
          await sub.handle.close().catch(() => {});
          throw err;
        }
        if (sub.init && !('error' in sub.init))
          sub.handle.notify({ jsonrpc: '2.0', method: 'notifications/initialized' });
        else this.subs.delete(scope); // not there for this caller now; asked again next time
        return sub;
      })();
      this.subs.set(scope, p);
    }
    return p;
  }

  /** A message a remote scope's core sent outside a call of ours: lists changed, or for the client. */
  private fromRemote(sub: Sub, m: JsonRpcMessage): void {
    const method = (m as { method?: unknown }).method;
    if (method === CHANGED.tools) return this.changed(['tools']);
    if (method === CHANGED.prompts) return this.changed(['prompts']);
    this.noteAsk(sub, m);
    this.opts.unrelated.send(m);
  }

  private noteAsk(sub: Sub, m: JsonRpcMessage): void {
    if ('method' in m && 'id' in m) this.asked.set(m.id, sub);
  }

  /** Forgets the cached remote lists and tells the client once (several changes at once: one notice). */
  changed(kinds: readonly Kind[]): void {
    if (this.closed) return;
    const fresh = kinds.filter((k) => !this.pendingChange.has(k));
    if (fresh.length === 0) return;
    this.scopeList = undefined;
    for (const k of fresh) {
      this.lists.delete(k);
      this.pendingChange.add(k);
    }
    setTimeout(() => {
      for (const k of fresh) {
        this.pendingChange.delete(k);
        this.lists.delete(k);
        if (!this.closed) this.opts.unrelated.send({ jsonrpc: '2.0', method: CHANGED[k] });
      }
    }, 20).unref();
  }

  notify(notification: JsonRpcNotification): void {
    if (notification.method === 'notifications/cancelled') {
      const id = (notification.params as { requestId?: JsonRpcId } | undefined)?.requestId;
      const sub = id === undefined ? undefined : this.running.get(id);
      if (sub) return sub.handle.notify(notification);
    }
    this.inner.notify(notification);
    // What the client announces about itself (roots changed...) concerns every scope it uses.
    if (
      notification.method !== 'notifications/cancelled' &&
      notification.method !== 'notifications/initialized'
    )
      for (const p of this.subs.values())
        void p.then((s) => s.init && !('error' in s.init) && s.handle.notify(notification)).catch(() => {});
  }

  respond(response: JsonRpcResponse): boolean {
    const id = response.id;
    const sub = id === null ? undefined : this.asked.get(id);
    if (sub) {
      this.asked.delete(id!);
      return sub.handle.respond(response);
    }
    return this.inner.respond(response);
  }

  async close(): Promise<void> {
    await this.end((h) => h.close());
  }

  /**
   * Lets go here. The remote scopes' sessions are this edge's own (another edge continuing the client
   * session opens its own), so they are closed rather than left to expire.
   */
  async detach(): Promise<void> {
    await this.end(
      (h) => h.close(),
      (h) => h.detach(),
    );
  }

  private async end(
    sub: (h: CoreSessionHandle) => Promise<void>,
    inner: (h: CoreSessionHandle) => Promise<void> = sub,
  ): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.forget();
    const subs = [...this.subs.values()];
    this.subs.clear();
    await Promise.all([inner(this.inner), ...subs.map((p) => p.then((s) => sub(s.handle)).catch(() => {}))]);
  }

  /** A request of the gateway's own on a remote scope's session. */
  private own(method: string, params: JsonObject): JsonRpcRequest {
    return { jsonrpc: '2.0', id: `mcpgw-fed-${++this.nextId}`, method, params };
  }
}

function anonymousOf(key: string): Principal {
  if (key === 'anonymous') return ANONYMOUS;
  const i = key.indexOf(':');
  return Object.freeze({
    subject: i >= 0 ? key.slice(i + 1) : key,
    tenant: i >= 0 ? key.slice(0, i) : 'default',
    roles: Object.freeze([]) as readonly string[],
    scopes: Object.freeze([]) as readonly string[],
    authMethod: 'internal',
  });
}
