/**
 * One client session as the core sees it: initialize, the aggregate view of /mcp (merged, namespaced,
 * paginated lists and routing back by name or URI) or the pass-through view of /servers/{name}/mcp, and
 * the relay of calls, cancellations, progress and server-to-client requests in both directions.
 */
import { createHash } from 'node:crypto';
import { GatewayError, toRpcError } from '../../shared/errors.js';
import { decodeCursor, paginate } from '../../shared/mcp/cursor.js';
import {
  rpcError,
  RpcCode,
  type JsonObject,
  type JsonRpcId,
  type JsonRpcNotification,
  type JsonRpcRequest,
  type JsonRpcResponse,
} from '../../shared/mcp/jsonrpc.js';
import { isClientSafeName, NameMap, splitExposedName, exposedName } from '../../shared/mcp/names.js';
import { serverRequestId } from '../../shared/mcp/request-ids.js';
import { negotiateVersion } from '../../shared/mcp/versions.js';
import type { CoreSessionHandle, MessageSink } from '../../shared/ports/core-service.js';
import type { SessionRecord } from '../../shared/ports/session-store.js';
import {
  CallAbortedError,
  type BackendClient,
  type CallHandle,
  type CallOptions,
} from '../backends/backend-client.js';
import { ModernBackendClient } from '../backends/modern-client.js';
import { legacyResult } from '../../shared/mcp/eras.js';
import { isInputRequired, serveInputRounds } from './input-rounds.js';
import type { ServerBackend, SessionOwner } from '../backends/server-backend.js';
import { ANONYMOUS, type Principal } from '../../shared/identity/principal.js';
import type { CallerAccess, ItemKind } from '../policy/access-control.js';
import {
  maskPromptResult,
  maskResourceContents,
  maskToolResult,
  type MaskedKind,
} from '../policy/pii-mask.js';
import type { ServerConfig } from '../../shared/config/schema.js';
import { GOVERNANCE_META, PREVIEW_CAPABILITY, type GovernanceCaller } from '../governance/tool-governance.js';
import { LIST_METHOD, type ListKind } from './catalog.js';
import { sameDeps, type MergedList, type MergedListSlot } from './merged-lists.js';
import type { GatewayCore } from './gateway-core.js';
import {
  endStage,
  inStage,
  SpanKind,
  STAGE,
  startStage,
  withTraceMeta,
  type StageSpan,
} from '../../shared/telemetry/tracing.js';
import { matchUriTemplate } from './uri-template.js';
import { unknownScope, VIRTUAL_SCOPE_PREFIX, type VirtualView } from './virtual-view.js';

/** A forwarded client request, as the backend events see it. */
export interface CallContext {
  readonly session: ClientSession;
  readonly sink: MessageSink;
  readonly server: string;
  readonly clientRequestId: JsonRpcId;
}

const AGGREGATE = 'aggregate';
const GATEWAY_RESOURCE_SCHEME = 'mcpgw://resource/';

export const AGGREGATE_CAPABILITIES: JsonObject = {
  tools: { listChanged: true },
  prompts: { listChanged: true },
  resources: { subscribe: true, listChanged: true },
  logging: {},
  completions: {},
};

/** A merged list as its first page saw it; later pages of the same listing are cut from it. */
interface ListSnapshot {
  id: string;
  items: JsonObject[];
  hints: number[];
  at: number;
}
/** How long a listing's later pages stay available, and how many listings a session pages at once. */
/** A server's part of a merged list: its cached catalog of one kind (or none, when it failed). */
interface ListSource {
  b: ServerBackend;
  client?: BackendClient;
  items: readonly JsonObject[];
  failed?: boolean;
}

type KeptList = MergedList & MergedListSlot;

/** One empty list for servers that offer none (the same object each time: see merged-lists.ts). */
const NO_ITEMS: readonly JsonObject[] = Object.freeze([]);

const SNAPSHOT_TTL_MS = 5 * 60_000;
const MAX_SNAPSHOTS = 8;

export class ClientSession implements CoreSessionHandle, SessionOwner {
  protocolVersion = '2025-03-26';
  clientCapabilities: JsonObject = {};
  clientInfo: JsonObject = {};
  initialized = false;
  /** A 2026-07-28 client (the edge's per-caller context): it reads 2026 result fields itself. */
  modern = false;
  /** Level set with logging/setLevel, applied to log messages of shared backends. */
  logLevel: string | undefined;
  readonly subscriptions = new Map<string, { server: string; uri: string }>();

  private readonly inflight = new Map<JsonRpcId, CallHandle>();
  private readonly outgoing = new Map<string, (r: JsonRpcResponse) => void>();
  private nextOutgoing = 0;
  private readonly snapshots = new Map<string, ListSnapshot>();
  private readonly tools = new NameMap();
  private readonly prompts = new NameMap();
  /** Merged tools and prompts kept between listings (merged-lists.ts). */
  private readonly merged = new Map<'tools' | 'prompts', KeptList>();
  /** Exposed resource URI -> owning server and backend URI (collisions get gateway URIs). */
  private resources = new Map<string, { server: string; uri: string }>();
  private readonly templates = new Map<string, string[]>();
  private closed = false;
  /** Backend sessions being continued from another replica; requests wait for them. */
  private restoring: Promise<boolean>[] = [];

  constructor(
    readonly id: string,
    readonly principal: string,
    readonly scope: string,
    readonly unrelated: MessageSink,
    private readonly core: GatewayCore,
    /** The caller in full: what it may see and use follows the policies in force (see `access`). */
    readonly identity: Principal = ANONYMOUS,
  ) {
    this.view = core.access.forPrincipal(identity);
    this.virtualName = scope.startsWith(VIRTUAL_SCOPE_PREFIX)
      ? scope.slice(VIRTUAL_SCOPE_PREFIX.length)
      : undefined;
  }

  private view: CallerAccess;

  /** The caller's view, renewed when policies or server tenants changed since it was made. */
  private get access(): CallerAccess {
    if (this.view.generation !== this.core.access.generation)
      this.view = this.core.access.forPrincipal(this.identity);
    return this.view;
  }

  /** A merged view: /mcp, or a virtual server's /v/{name}/mcp. */
  get isAggregate(): boolean {
    return this.scope === AGGREGATE || this.virtualName !== undefined;
  }

  /** The name of the virtual server this session is on (scope `v/{name}`). */
  private readonly virtualName: string | undefined;

  /** The session's virtual server as it is now; it may have been deleted since the session opened. */
  private virtual(): VirtualView | undefined {
    const name = this.virtualName;
    if (name === undefined) return undefined;
    const v = this.core.virtualServer(name);
    if (!v || (v.tenant !== undefined && v.tenant !== this.identity.tenant)) throw unknownScope(this.scope);
    return v;
  }

  /** The server ids a virtual server's references stand for now (a plain name: its default version). */
  private virtualServerIds(v: VirtualView): Set<string> {
    const ids = new Set<string>();
    for (const ref of v.refs()) {
      const id = this.core.resolveServer(ref);
      if (id !== undefined) ids.add(id);
    }
    return ids;
  }

  /** Whether this session hears about `server` (log messages, list changes): never another tenant's. */
  uses(server: string): boolean {
    if (this.virtualName !== undefined) {
      const v = this.core.virtualServer(this.virtualName);
      return v !== undefined && this.virtualServerIds(v).has(server) && this.access.serverVisible(server);
    }
    return this.isAggregate ? this.access.serverVisible(server) : this.scope === server;
  }

  /** Backends this session can see, in config order. */
  private backends(): ServerBackend[] {
    const v = this.virtual();
    if (v) {
      const ids = this.virtualServerIds(v);
      return this.core.backendList().filter((b) => ids.has(b.name) && this.access.serverVisible(b.name));
    }
    if (this.isAggregate) return this.core.backendList().filter((b) => this.access.serverVisible(b.name));
    const own = this.core.backend(this.scope);
    // The registry may have removed the server since this session opened.
    if (!own)
      throw new GatewayError('GW_UNKNOWN_SERVER', `Unknown server: ${this.scope}`, { server: this.scope });
    return [own];
  }

  request(request: JsonRpcRequest, related: MessageSink): Promise<JsonRpcResponse | undefined> {
    if (this.restoring.length > 0) return this.afterRestore(request, related);
    return this.core.runPipeline(this, request, (req) => this.dispatch(req, related));
  }

  private async afterRestore(request: JsonRpcRequest, related: MessageSink) {
    await Promise.all(this.restoring);
    this.restoring = [];
    return this.request(request, related);
  }

  private async dispatch(req: JsonRpcRequest, sink: MessageSink): Promise<JsonRpcResponse | undefined> {
    const params = req.params ?? {};
    switch (req.method) {
      case 'initialize':
        return this.initialize(req);
      case 'ping':
        return { jsonrpc: '2.0', id: req.id, result: {} };
    }
    if (!this.isAggregate) return this.forwardScoped(req, sink);
    switch (req.method) {
      case 'tools/list':
        return this.listAggregate(req, 'tools');
      case 'prompts/list':
        return this.listAggregate(req, 'prompts');
      case 'resources/list':
        return this.listAggregate(req, 'resources');
      case 'resources/templates/list':
        return this.listAggregate(req, 'resourceTemplates');
      case 'tools/call':
      case 'prompts/get': {
        const kind = req.method === 'tools/call' ? 'tools' : 'prompts';
        if (typeof params.name !== 'string')
          throw new GatewayError('GW_INVALID_PARAMS', `${req.method}: "name" must be a string`);
        const target = await this.resolveName(kind, params.name);
        const unknown = () =>
          new GatewayError(
            kind === 'tools' ? 'GW_UNKNOWN_TOOL' : 'GW_UNKNOWN_PROMPT',
            `Unknown ${kind === 'tools' ? 'tool' : 'prompt'}: ${params.name}`,
            { name: params.name },
          );
        if (!target || !this.access.itemVisible(kind, target.server, target.name)) throw unknown();
        if (kind === 'prompts')
          return this.maskResult(
            target.server,
            target.name,
            await this.forward(target.server, req, { ...params, name: target.name }, sink),
            'prompts',
          );
        const notice = await inStage(
          STAGE.authorize,
          this.core.noteOf(req)?.trace,
          () => this.admitToolCall(target.server, target.name, params.arguments, unknown),
          () => ({ 'mcpgw.server': target.server, 'mcp.tool.name': target.name }),
        );
        return this.withNotice(
          this.maskResult(
            target.server,
            target.name,
            await this.forward(target.server, req, { ...params, name: target.name }, sink),
          ),
          notice,
        );
      }
      case 'resources/read':
      case 'resources/subscribe':
      case 'resources/unsubscribe': {
        if (typeof params.uri !== 'string')
          throw new GatewayError('GW_INVALID_PARAMS', `${req.method}: "uri" must be a string`);
        return this.resourceRequest(req, params.uri, sink);
      }
      case 'completion/complete':
        return this.complete(req, sink);
      case 'logging/setLevel':
        return this.setLevel(req, this.backends());
      default:
        throw new GatewayError('GW_METHOD_NOT_FOUND', `Method not found: ${req.method}`, {
          method: req.method,
        });
    }
  }

  private async initialize(req: JsonRpcRequest): Promise<JsonRpcResponse> {
    const p = req.params ?? {};
    if (typeof p.protocolVersion !== 'string')
      throw new GatewayError('GW_INVALID_PARAMS', 'initialize: "protocolVersion" must be a string');
    if (p.capabilities !== undefined && (typeof p.capabilities !== 'object' || p.capabilities === null))
      throw new GatewayError('GW_INVALID_PARAMS', 'initialize: "capabilities" must be an object');
    this.protocolVersion = negotiateVersion(p.protocolVersion);
    this.clientCapabilities = (p.capabilities as JsonObject | undefined) ?? {};
    this.clientInfo = (p.clientInfo as JsonObject | undefined) ?? { name: 'unknown', version: '0' };
    if (this.isAggregate) {
      const v = this.virtual();
      return {
        jsonrpc: '2.0',
        id: req.id,
        result: {
          protocolVersion: this.protocolVersion,
          capabilities: AGGREGATE_CAPABILITIES,
          serverInfo: v ? { ...this.core.serverInfo, name: v.name } : this.core.serverInfo,
          ...(v?.description !== undefined && { instructions: v.description }),
        },
      };
    }
    // One server: the client sees that server's own identity and capabilities.
    const client = await this.backends()[0]!.clientFor(this);
    const init = client.initializeResult!;
    const result: JsonObject = {
      protocolVersion: this.protocolVersion,
      capabilities: init.capabilities,
      serverInfo: init.serverInfo,
    };
    if (init.instructions !== undefined) result.instructions = init.instructions;
    return { jsonrpc: '2.0', id: req.id, result };
  }

  // ---------------------------------------------------------------- one server, its own names

  private async forwardScoped(req: JsonRpcRequest, sink: MessageSink): Promise<JsonRpcResponse | undefined> {
    const backend = this.backends()[0]!;
    if (this.access.filtersItems) {
      const unknown = this.hiddenScopedItem(backend.name, req);
      if (unknown) throw unknown;
    }
    if (backend.shared) {
      // Per-client state of a shared process is kept by the gateway (see docs/architecture.md).
      if (req.method === 'logging/setLevel') return this.setLevel(req, [backend]);
      if (req.method === 'resources/subscribe' || req.method === 'resources/unsubscribe') {
        const uri = req.params?.uri;
        if (typeof uri !== 'string')
          throw new GatewayError('GW_INVALID_PARAMS', `${req.method}: "uri" must be a string`);
        return this.resourceRequest(req, uri, sink, backend.name);
      }
    }
    if (req.method === 'tools/call' && typeof req.params?.name === 'string') {
      const name = req.params.name;
      const notice = await this.admitToolCall(
        backend.name,
        name,
        req.params.arguments,
        () => new GatewayError('GW_UNKNOWN_TOOL', `Unknown tool: ${name}`, { name }),
      );
      return this.withNotice(
        this.maskResult(backend.name, name, await this.forward(backend.name, req, req.params, sink)),
        notice,
      );
    }
    const res = await this.forward(backend.name, req, req.params, sink);
    if (req.method === 'prompts/get' && typeof req.params?.name === 'string')
      return this.maskResult(backend.name, req.params.name, res, 'prompts');
    if (req.method === 'resources/read' && typeof req.params?.uri === 'string')
      return this.maskResult(backend.name, req.params.uri, res, 'resources');
    const listed = SCOPED_LISTS[req.method];
    const page = listed && this.access.filtersItems ? this.filterPage(res, backend.name, listed) : res;
    return req.method === 'tools/list' ? this.governPage(page, backend.config) : page;
  }

  /** Who governance decides for: the caller, and whether its client opted in to preview tools. */
  private governanceCaller(): GovernanceCaller {
    const experimental = this.clientCapabilities.experimental as JsonObject | undefined;
    return { identity: this.identity, previewOptIn: experimental?.[PREVIEW_CAPABILITY] !== undefined };
  }

  /** A backend's tools/list page on /servers/{name}/mcp as governance lets this caller see it. */
  private async governPage(
    res: JsonRpcResponse | undefined,
    server: ServerConfig,
  ): Promise<JsonRpcResponse | undefined> {
    if (!res || 'error' in res || !Array.isArray(res.result.tools) || !this.core.governance.applies(server))
      return res;
    const tools = await this.core.governance.list(
      server,
      res.result.tools as JsonObject[],
      this.governanceCaller(),
    );
    return { ...res, result: { ...res.result, tools } };
  }

  /** On /servers/{name}/mcp, what the policy hides gets the answer of what does not exist. */
  private hiddenScopedItem(server: string, req: JsonRpcRequest): GatewayError | undefined {
    const p = req.params ?? {};
    if (
      req.method === 'prompts/get' &&
      typeof p.name === 'string' &&
      !this.access.itemVisible('prompts', server, p.name)
    )
      return new GatewayError('GW_UNKNOWN_PROMPT', `Unknown prompt: ${p.name}`, { name: p.name });
    if (
      (req.method === 'resources/read' || req.method === 'resources/subscribe') &&
      typeof p.uri === 'string' &&
      !this.access.itemVisible('resources', server, p.uri)
    )
      return new GatewayError('GW_UNKNOWN_RESOURCE', `Resource not found: ${p.uri}`, { uri: p.uri });
    return undefined;
  }

  /** A backend's list page on /servers/{name}/mcp without what this caller may not see. */
  private filterPage(
    res: JsonRpcResponse | undefined,
    server: string,
    listed: { kind: ListKind; key: string },
  ): JsonRpcResponse | undefined {
    if (!res || 'error' in res || !Array.isArray(res.result[listed.kind])) return res;
    const items = (res.result[listed.kind] as JsonObject[]).filter((it) =>
      this.visible(listed.kind, server, it),
    );
    return { ...res, result: { ...res.result, [listed.kind]: items } };
  }

  private visible(kind: ListKind, server: string, item: JsonObject): boolean {
    const itemKind: ItemKind = kind === 'resourceTemplates' ? 'resources' : kind;
    const key = kind === 'resources' ? item.uri : kind === 'resourceTemplates' ? item.uriTemplate : item.name;
    return this.access.itemVisible(itemKind, server, String(key));
  }

  /**
   * Before a tools/call leaves the gateway: the tool must exist for this caller (hidden = unknown, the same
   * error), its arguments must satisfy the caller's policy constraints and the tool's inputSchema.
   */
  private async admitToolCall(
    server: string,
    name: string,
    args: unknown,
    unknown: () => GatewayError,
  ): Promise<JsonObject | undefined> {
    if (!this.access.itemVisible('tools', server, name)) throw unknown();
    const validator = this.core.argumentValidator;
    const backend = this.core.backend(server)!;
    const governed = this.core.governance.applies(backend.config);
    if (!validator && !this.access.filtersItems && !governed) return undefined;
    let def: JsonObject | undefined;
    let unreachable = false;
    try {
      const client = backend.existingClientFor(this) ?? (await backend.clientFor(this));
      def = this.core.catalog.declares(client, 'tools')
        ? await this.core.catalog.find(client, 'tools', name)
        : undefined;
    } catch (err) {
      // No replica can give its catalog now: the pool answers the call (a result cached for exactly these
      // arguments, or its own clear error). The caller's argument constraints still apply below.
      if (!(err instanceof GatewayError)) throw err;
      unreachable = true;
    }
    const notice = governed
      ? await this.core.governance.admit(backend.config, name, def, this.governanceCaller(), unknown)
      : undefined;
    if (!def && !unreachable) {
      // On /servers/{name}/mcp without a policy the backend answers for names it does not know.
      if (this.isAggregate || this.access.filtersItems) throw unknown();
      return notice;
    }
    const denied = this.access.checkArguments(server, name, args);
    if (denied.length > 0)
      throw new GatewayError(
        'GW_ARGUMENT_DENIED',
        `Invalid params: ${denied.map((v) => `${v.path} ${v.message}`).join('; ')}`,
        { violations: denied },
      );
    const violations = def ? (validator?.check(def.inputSchema, args) ?? []) : [];
    if (violations.length > 0)
      throw new GatewayError(
        'GW_INVALID_ARGUMENTS',
        `Invalid arguments for tool ${name}: ${violations.map((v) => `${v.path} ${v.message}`).join('; ')}`,
        { violations },
      );
    return notice;
  }

  /** A governance notice (preview, deprecated, held back) in the result's `_meta`. */
  private withNotice(
    res: JsonRpcResponse | undefined,
    notice: JsonObject | undefined,
  ): JsonRpcResponse | undefined {
    if (!notice || !res || 'error' in res) return res;
    const meta = { ...(res.result._meta as JsonObject | undefined), [GOVERNANCE_META]: notice };
    return { ...res, result: { ...res.result, _meta: meta } };
  }

  /** A result with the personal data the caller's tenant's rules name for this item masked. */
  private maskResult(
    server: string,
    name: string,
    res: JsonRpcResponse | undefined,
    kind: MaskedKind = 'tools',
  ): JsonRpcResponse | undefined {
    if (!res || 'error' in res || !this.core.pii.enabled) return res;
    const mask = this.core.pii.maskerFor(this.identity.tenant, server, name, kind);
    if (!mask) return res;
    const masked =
      kind === 'tools'
        ? maskToolResult(res.result, mask)
        : kind === 'prompts'
          ? maskPromptResult(res.result, mask)
          : maskResourceContents(res.result, mask);
    return { ...res, result: masked };
  }

  // ---------------------------------------------------------------- the aggregate view

  private async listAggregate(req: JsonRpcRequest, kind: ListKind): Promise<JsonRpcResponse> {
    // Pages after the first come from the snapshot the first page was cut from, so that a registry or
    // catalog change between pages never mixes two versions of the list (docs/governance.md).
    const cursor = req.params?.cursor;
    let snap: ListSnapshot | undefined;
    if (cursor !== undefined) snap = this.snapshotOf(kind, cursor);
    if (!snap) {
      const hints: number[] = [];
      const items = await this.collect(kind, hints);
      // A snapshot is named by its content: another replica of this session (or this one after the
      // snapshot was dropped) pages on as long as the list is still the same version.
      const id = items.length > this.core.pageSize || cursor !== undefined ? listVersion(kind, items) : kind;
      snap = { id, items, hints, at: Date.now() };
      if (cursor !== undefined && decodeCursor(`${this.id}:${id}`, cursor) === undefined)
        throw new GatewayError(
          'GW_INVALID_CURSOR',
          `Invalid or expired cursor for ${LIST_METHOD[kind]}: list again without a cursor`,
        );
    }
    const { hints } = snap;
    const page = paginate(`${this.id}:${snap.id}`, snap.items, cursor, this.core.pageSize);
    if (!page) throw new GatewayError('GW_INVALID_CURSOR', `Invalid cursor for ${LIST_METHOD[kind]}`);
    if (page.nextCursor) this.keepSnapshot(snap);
    const result: JsonObject = { [kind]: page.page };
    if (page.nextCursor) result.nextCursor = page.nextCursor;
    if (this.modern) {
      // The least of the contributing servers' hints (aggregate.listTtlMs for 2025 servers, 0 for one
      // left out); the aggregate depends on the caller, so it is never for shared caches.
      result.ttlMs = hints.length > 0 ? Math.min(...hints) : 0;
      result.cacheScope = 'private';
    }
    return { jsonrpc: '2.0', id: req.id, result };
  }

  /** The snapshot a cursor of this session pages, while it is kept. */
  private snapshotOf(kind: ListKind, cursor: unknown): ListSnapshot | undefined {
    const now = Date.now();
    for (const [id, snap] of this.snapshots) {
      if (now - snap.at > SNAPSHOT_TTL_MS) this.snapshots.delete(id);
      else if (id.startsWith(`${kind}:`) && decodeCursor(`${this.id}:${id}`, cursor) !== undefined)
        return snap;
    }
    return undefined;
  }

  private keepSnapshot(snap: ListSnapshot): void {
    this.snapshots.set(snap.id, snap);
    // A few listings paged at once per session; the oldest goes first.
    while (this.snapshots.size > MAX_SNAPSHOTS) this.snapshots.delete(this.snapshots.keys().next().value!);
  }

  /** Every item of `kind` across the servers this session sees, renamed for the aggregate. */
  private async collect(kind: ListKind, hints?: number[]): Promise<JsonObject[]> {
    const sources = await Promise.all(
      this.backends().map(async (b): Promise<ListSource> => {
        try {
          const client = await b.clientFor(this);
          if (!this.core.catalog.declares(client, kind)) return { b, client, items: NO_ITEMS };
          const items = await this.core.catalog.list(client, kind);
          hints?.push(this.core.catalog.ttlOf(client, kind) ?? this.core.listTtlMs);
          return { b, client, items };
        } catch (err) {
          hints?.push(0);
          this.leftOut(b.name, err);
          return { b, items: NO_ITEMS, failed: true };
        }
      }),
    );
    const v = this.virtual();
    if (kind === 'tools' || kind === 'prompts') return this.merge(kind, sources, v);
    const perServer = sources.map(({ b, items }) => ({
      server: b.name,
      items: this.access.filtersItems ? items.filter((it) => this.visible(kind, b.name, it)) : items,
    }));
    if (v) {
      // A virtual server: only the chosen items (no gateway URIs).
      if (kind === 'resourceTemplates') {
        this.templates.clear();
        for (const [ref, tpls] of v.templates()) {
          const id = this.core.resolveServer(ref);
          if (id !== undefined) this.templates.set(id, tpls);
        }
      }
      return v.select(kind, perServer, (ref) => this.core.resolveServer(ref));
    }
    if (kind === 'resourceTemplates') {
      for (const { server, items } of perServer)
        this.templates.set(
          server,
          items.map((t) => String(t.uriTemplate)),
        );
      return perServer.flatMap(({ items }) => items);
    }
    // Resources keep their URI unless two servers share it; then each gets a gateway URI.
    const owners = new Map<string, number>();
    for (const { items } of perServer)
      for (const it of items) owners.set(String(it.uri), (owners.get(String(it.uri)) ?? 0) + 1);
    const map = new Map<string, { server: string; uri: string }>();
    const out = perServer.flatMap(({ server, items }) =>
      items.map((it) => {
        const uri = String(it.uri);
        const exposed = (owners.get(uri) ?? 0) > 1 ? gatewayUri(server, uri) : uri;
        map.set(exposed, { server, uri });
        return exposed === uri ? it : { ...it, uri: exposed };
      }),
    );
    this.resources = map;
    return out;
  }

  /**
   * Tools or prompts of the session's servers, filtered for the caller, governed and renamed (or chosen
   * by the virtual server): the list kept from last time while nothing it was made from changed.
   */
  private async merge(
    kind: 'tools' | 'prompts',
    sources: ListSource[],
    v: VirtualView | undefined,
  ): Promise<JsonObject[]> {
    const budget = this.core.mergedLists;
    // A family's default version is listed under the plain name; when the default moves, names follow.
    const prefixes = sources.map((s) => this.core.prefixOf(s.b.name));
    const deps: unknown[] = [this.access, v, this.core.governance.generation];
    sources.forEach((s, i) => deps.push(s.b, prefixes[i], s.client, s.items));
    const kept = this.merged.get(kind);
    if (kept && sameDeps(kept.deps, deps)) {
      budget.touch(kept);
      return kept.items;
    }
    let complete = sources.every((s) => !s.failed);
    const governance = this.governanceCaller();
    const perServer = await Promise.all(
      sources.map(async ({ b, items }) => {
        const visible = this.access.filtersItems
          ? items.filter((it) => this.visible(kind, b.name, it))
          : items;
        if (kind !== 'tools') return { server: b.name, items: visible };
        try {
          return { server: b.name, items: await this.core.governance.list(b.config, visible, governance) };
        } catch (err) {
          complete = false;
          this.leftOut(b.name, err);
          return { server: b.name, items: NO_ITEMS };
        }
      }),
    );
    let items: JsonObject[];
    if (v) {
      // A virtual server: only the chosen items, under their aliases (no prefixes).
      items = v.select(kind, perServer, (ref) => this.core.resolveServer(ref));
    } else {
      const names = kind === 'tools' ? this.tools : this.prompts;
      perServer.forEach(({ server }, i) => names.keepPrefix(server, prefixes[i]!));
      items = [];
      const origins: JsonObject[] = [];
      perServer.forEach(({ server, items: own }, i) => {
        for (const it of own) {
          origins.push(it);
          items.push({ ...it, name: names.assign(server, String(it.name), prefixes[i]) });
        }
      });
      listOrigins.set(items, origins);
    }
    if (kept) {
      budget.forget(kept);
      this.merged.delete(kind);
    }
    // A list missing a server that failed is not kept: the next listing tries that server again.
    if (complete && budget.fits(items.length)) {
      const slot: KeptList = {
        deps,
        items,
        size: items.length,
        drop: () => this.dropMerged(kind, slot),
      };
      this.merged.set(kind, slot);
      budget.touch(slot);
    }
    return items;
  }

  private dropMerged(kind: 'tools' | 'prompts', slot: KeptList): void {
    if (this.merged.get(kind) === slot) this.merged.delete(kind);
  }

  private leftOut(server: string, err: unknown): void {
    this.core.log.debug({ server, err: (err as Error).message }, 'server left out of the aggregate list');
  }

  /**
   * The backend server (and backend tool name) a request will go to, for the quota and admission stages;
   * undefined for requests the gateway answers or fans out (lists, initialize, ping). An unknown name is
   * undefined too: dispatch then gives the precise error.
   */
  async targetOf(req: JsonRpcRequest): Promise<{ server: string; tool?: string } | undefined> {
    const params = req.params ?? {};
    if (req.method === 'initialize' || req.method === 'ping') return undefined;
    if (!this.isAggregate) {
      if (req.method === 'tools/call' && typeof params.name === 'string')
        return { server: this.scope, tool: params.name };
      return { server: this.scope };
    }
    switch (req.method) {
      case 'tools/call':
      case 'prompts/get': {
        if (typeof params.name !== 'string') return undefined;
        const t = await this.resolveName(req.method === 'tools/call' ? 'tools' : 'prompts', params.name);
        if (!t) return undefined;
        return req.method === 'tools/call' ? { server: t.server, tool: t.name } : { server: t.server };
      }
      case 'resources/read': {
        if (typeof params.uri !== 'string') return undefined;
        const t = await this.resolveUri(params.uri);
        return t && { server: t.server };
      }
      default:
        return undefined;
    }
  }

  private async resolveName(
    kind: 'tools' | 'prompts',
    exposed: string,
  ): Promise<{ server: string; name: string } | undefined> {
    const v = this.virtual();
    if (v) {
      const chosen = v.resolve(kind, exposed);
      const id = chosen && this.core.resolveServer(chosen.server);
      return id !== undefined && this.access.serverVisible(id)
        ? { server: id, name: chosen!.name }
        : undefined;
    }
    const names = kind === 'tools' ? this.tools : this.prompts;
    const known = names.resolve(exposed);
    if (known) return known;
    // Fast path: a plain `{server}__{name}` needs no catalog. `{family}__{name}` is the default version;
    // `{id}__{name}` reaches any version, the default too (listed under the family name only).
    const split = splitExposedName(exposed);
    const id = split && this.core.resolveServer(split.server);
    if (
      split &&
      id !== undefined &&
      this.access.serverVisible(id) &&
      isClientSafeName(exposed) &&
      exposedName(split.server, split.name) === exposed
    )
      return { server: id, name: split.name };
    await this.collect(kind);
    return names.resolve(exposed);
  }

  /** The exposed URI of a backend's resource in this session (for notifications). */
  exposedUri(server: string, uri: string): string {
    for (const [exposed, v] of this.resources) if (v.server === server && v.uri === uri) return exposed;
    return uri;
  }

  private async resolveUri(uri: string): Promise<{ server: string; uri: string } | undefined> {
    if (!this.isAggregate) return { server: this.scope, uri };
    const v = this.virtual();
    if (v) {
      const ref = v.resolveUri(uri);
      const id = ref === undefined ? undefined : this.core.resolveServer(ref);
      return id !== undefined &&
        this.access.serverVisible(id) &&
        this.access.itemVisible('resources', id, uri)
        ? { server: id, uri }
        : undefined;
    }
    const fromGateway = parseGatewayUri(uri);
    if (fromGateway && this.core.backend(fromGateway.server) && this.access.serverVisible(fromGateway.server))
      return this.access.itemVisible('resources', fromGateway.server, fromGateway.uri)
        ? fromGateway
        : undefined;
    if (!this.resources.has(uri)) await this.collect('resources').catch(() => {});
    const listed = this.resources.get(uri);
    if (listed) return listed;
    if (this.templates.size === 0) await this.collect('resourceTemplates').catch(() => {});
    for (const [server, tpls] of this.templates)
      if (tpls.some((t) => matchUriTemplate(t, uri)) && this.access.itemVisible('resources', server, uri))
        return { server, uri };
    return undefined;
  }

  private async resourceRequest(
    req: JsonRpcRequest,
    exposedUri: string,
    sink: MessageSink,
    scoped?: string,
  ): Promise<JsonRpcResponse | undefined> {
    const target = scoped ? { server: scoped, uri: exposedUri } : await this.resolveUri(exposedUri);
    const params = { ...req.params, uri: target?.uri ?? exposedUri };
    if (!target) {
      if (req.method !== 'resources/read' || this.virtualName !== undefined)
        throw new GatewayError('GW_UNKNOWN_RESOURCE', `Resource not found: ${exposedUri}`, {
          uri: exposedUri,
        });
      return this.readFromAny(req, params, sink, exposedUri);
    }
    const backend = this.core.backend(target.server)!;
    if (req.method === 'resources/read' || !backend.shared) {
      const res = await this.forward(target.server, req, params, sink);
      if (res && !('error' in res)) {
        if (req.method === 'resources/subscribe') this.subscriptions.set(exposedUri, target);
        if (req.method === 'resources/unsubscribe') this.subscriptions.delete(exposedUri);
      }
      return res && req.method === 'resources/read'
        ? this.maskResult(target.server, target.uri, this.renameContents(res, target.server), 'resources')
        : res;
    }
    // A shared backend holds one subscription per URI for every session; the gateway fans out updates.
    if (req.method === 'resources/subscribe') {
      const res = await this.core.subscribeShared(this, target.server, target.uri);
      if (!('error' in res)) this.subscriptions.set(exposedUri, target);
      return { ...res, id: req.id };
    }
    this.subscriptions.delete(exposedUri);
    const res = await this.core.unsubscribeShared(this, target.server, target.uri);
    return { ...res, id: req.id };
  }

  /** No server claims the URI: ask each resource server in turn until one knows it. */
  private async readFromAny(
    req: JsonRpcRequest,
    params: JsonObject,
    sink: MessageSink,
    uri: string,
  ): Promise<JsonRpcResponse | undefined> {
    for (const b of this.backends()) {
      if (!this.access.itemVisible('resources', b.name, uri)) continue;
      const client = await b.clientFor(this).catch(() => undefined);
      if (!client || !this.core.catalog.declares(client, 'resources')) continue;
      const res = await this.forward(b.name, req, params, sink);
      if (!res || !('error' in res))
        return res && this.maskResult(b.name, uri, this.renameContents(res, b.name), 'resources');
      if (res.error.code !== RpcCode.ResourceNotFound && res.error.code !== RpcCode.InvalidParams) return res;
    }
    throw new GatewayError('GW_UNKNOWN_RESOURCE', `Resource not found: ${uri}`, { uri });
  }

  private renameContents(res: JsonRpcResponse, server: string): JsonRpcResponse {
    if ('error' in res || !Array.isArray(res.result.contents)) return res;
    let changed = false;
    const contents = (res.result.contents as JsonObject[]).map((c) => {
      const exposed = typeof c.uri === 'string' ? this.exposedUri(server, c.uri) : undefined;
      if (exposed === undefined || exposed === c.uri) return c;
      changed = true;
      return { ...c, uri: exposed };
    });
    return changed ? { ...res, result: { ...res.result, contents } } : res;
  }

  private async complete(req: JsonRpcRequest, sink: MessageSink): Promise<JsonRpcResponse | undefined> {
    const params = req.params ?? {};
    const ref = params.ref as JsonObject | undefined;
    if (!ref || typeof ref !== 'object')
      throw new GatewayError('GW_INVALID_PARAMS', 'completion/complete: "ref" is required');
    if (ref.type === 'ref/prompt' && typeof ref.name === 'string') {
      const t = await this.resolveName('prompts', ref.name);
      if (!t || !this.access.itemVisible('prompts', t.server, t.name))
        throw new GatewayError('GW_UNKNOWN_PROMPT', `Unknown prompt: ${ref.name}`, { name: ref.name });
      return this.forward(t.server, req, { ...params, ref: { ...ref, name: t.name } }, sink);
    }
    if (ref.type === 'ref/resource' && typeof ref.uri === 'string') {
      const fromGateway = parseGatewayUri(ref.uri);
      if (this.templates.size === 0) await this.collect('resourceTemplates').catch(() => {});
      let server = fromGateway?.server;
      for (const [s, tpls] of this.templates) if (!server && tpls.includes(ref.uri as string)) server = s;
      server ??= (await this.resolveUri(ref.uri))?.server;
      if (!server)
        throw new GatewayError('GW_UNKNOWN_RESOURCE', `Resource not found: ${ref.uri}`, { uri: ref.uri });
      return this.forward(
        server,
        req,
        { ...params, ref: { ...ref, uri: fromGateway?.uri ?? ref.uri } },
        sink,
      );
    }
    throw new GatewayError(
      'GW_INVALID_PARAMS',
      'completion/complete: "ref" must be a ref/prompt with a name or a ref/resource with a uri',
    );
  }

  private async setLevel(req: JsonRpcRequest, backends: ServerBackend[]): Promise<JsonRpcResponse> {
    const level = req.params?.level;
    if (typeof level !== 'string' || !LOG_LEVELS.includes(level))
      throw new GatewayError(
        'GW_INVALID_PARAMS',
        `logging/setLevel: "level" must be one of ${LOG_LEVELS.join(', ')}`,
      );
    this.logLevel = level;
    const results = await Promise.all(
      backends.map(async (b) => {
        const client = await b.clientFor(this).catch(() => undefined);
        if (!client || !(client.initializeResult?.capabilities as JsonObject | undefined)?.logging)
          return undefined;
        if (b.shared) return this.core.applySharedLogLevel(b.name);
        return client.call('logging/setLevel', { level }, { timeoutMs: this.core.timeoutMs(b.name) });
      }),
    );
    if (!this.isAggregate) {
      const r = results[0];
      if (r && 'error' in r) return { ...r, id: req.id };
    }
    return { jsonrpc: '2.0', id: req.id, result: {} };
  }

  // ---------------------------------------------------------------- relay

  /** Forwards a request to `server` and restores the client's id; undefined when the client cancelled. */
  async forward(
    server: string,
    req: JsonRpcRequest,
    params: JsonObject | undefined,
    sink: MessageSink,
  ): Promise<JsonRpcResponse | undefined> {
    const backend = this.core.backend(server);
    if (!backend) throw new GatewayError('GW_UNKNOWN_SERVER', `Unknown server: ${server}`, { server });
    this.core.beforeForward(this, req, server);
    const note = this.core.noteOf(req);
    const trace = note?.trace;
    const ctx: CallContext = { session: this, sink, server, clientRequestId: req.id };
    const handle: CallHandle = {};
    this.inflight.set(req.id, handle);
    const untrack = this.core.trackCall(ctx);
    if (note) note.server = server;
    // select_backend lasts until the pool hands an attempt a client; backend_call from then on.
    let select = trace
      ? startStage(STAGE.selectBackend, trace, { attributes: () => ({ 'mcpgw.server': server }) })
      : undefined;
    let stage: StageSpan | undefined;
    const callStage = (): StageSpan | undefined => {
      if (!trace) return undefined;
      if (select) {
        endStage(select);
        select = undefined;
      }
      return (stage ??= startStage(STAGE.backendCall, trace, {
        kind: SpanKind.CLIENT,
        attributes: () => ({
          'rpc.method': req.method,
          'mcpgw.server': server,
          'mcpgw.backend.transport': backend.config.transport,
        }),
      }));
    };
    const t0 = note ? performance.now() : 0;
    try {
      // The pool picks the replica, retries where safe, and may answer from its cache.
      const res = await backend.call({
        owner: this,
        method: req.method,
        params,
        context: ctx,
        trace,
        request: req,
        handle,
        prepare: (client, p) => this.core.mapProgress(p, ctx, client),
        attempt: (client, p, options) =>
          this.attempt(client, req.method, p, options, { stage: callStage(), sink, handle, params }),
      });
      endStage(select);
      if (stage)
        endStage(
          stage,
          'error' in res
            ? { code: (res.error.data as { code?: string } | undefined)?.code, message: res.error.message }
            : undefined,
        );
      return { ...res, id: req.id } as JsonRpcResponse;
    } catch (err) {
      endStage(select, { message: (err as Error).message });
      endStage(stage, { message: (err as Error).message });
      if (err instanceof CallAbortedError) return undefined;
      throw err;
    } finally {
      if (note) note.backendMs = (note.backendMs ?? 0) + (performance.now() - t0);
      untrack();
      this.inflight.delete(req.id);
    }
  }

  /** One attempt on the replica the pool chose: trace context on every send, a 2026 backend's rounds. */
  private async attempt(
    client: BackendClient,
    method: string,
    params: JsonObject | undefined,
    options: CallOptions,
    call: {
      stage: StageSpan | undefined;
      sink: MessageSink;
      handle: CallHandle;
      params: JsonObject | undefined;
    },
  ): Promise<JsonRpcResponse> {
    // The backend continues the trace: W3C context in _meta (and, for HTTP, in headers).
    const send = (p: JsonObject | undefined) =>
      client.call(method, withTraceMeta(p, call.stage), { ...options, owner: this });
    if (!(client instanceof ModernBackendClient)) return send(params);
    let res: JsonRpcResponse | undefined = await send(this.modern ? backendState(params) : params);
    if (this.modern && isInputRequired(res)) res = withOwnState(res!);
    // A 2026 client reads input_required itself; a 2025 one is asked for real (input-rounds.ts).
    if (!this.modern && isInputRequired(res))
      res = await this.serveRounds(
        res,
        method,
        params,
        call.sink,
        call.handle,
        send,
        clientToken(call.params),
      );
    if (!res) throw new CallAbortedError();
    if (!this.modern && 'result' in res) res = { ...res, result: legacyResult(res.result) };
    return res;
  }

  /** The rounds of a 2026 backend's input_required answer, asked of this 2025 client on `sink`. */
  private async serveRounds(
    first: JsonRpcResponse,
    method: string,
    params: JsonObject | undefined,
    sink: MessageSink,
    handle: CallHandle,
    send: (p: JsonObject | undefined) => Promise<JsonRpcResponse>,
    progressToken: unknown,
  ): Promise<JsonRpcResponse | undefined> {
    const ctrl = new AbortController();
    // Between backend requests a cancellation has no POST to abort: it stops the rounds instead.
    const cancelBetween = (reason: string) => ctrl.abort(reason);
    handle.cancel = cancelBetween;
    return serveInputRounds(first, {
      // A client that asked for progress hears that the call waits on it.
      ...(progressToken !== undefined && {
        onRound: (round: number) =>
          sink.send({
            jsonrpc: '2.0',
            method: 'notifications/progress',
            params: {
              progressToken,
              progress: round,
              message: `waiting for the client's input (round ${round})`,
            },
          }),
      }),
      method,
      params,
      clientCapabilities: this.clientCapabilities,
      clientVersion: this.protocolVersion,
      maxRounds: this.core.maxInputRounds,
      signal: ctrl.signal,
      ask: (m, p, signal) => this.requestClient(m, p, sink, signal),
      resend: async (p) => {
        if (ctrl.signal.aborted) return undefined;
        try {
          return await send(p);
        } finally {
          handle.cancel = cancelBetween;
        }
      },
    });
  }

  notify(n: JsonRpcNotification): void {
    switch (n.method) {
      case 'notifications/initialized':
        this.initialized = true;
        return;
      case 'notifications/cancelled': {
        const id = n.params?.requestId as JsonRpcId | undefined;
        if (id !== undefined)
          this.inflight.get(id)?.cancel?.(String(n.params?.reason ?? 'cancelled by client'));
        return;
      }
      case 'notifications/roots/list_changed':
        // A virtual server deleted since: no backend to tell.
        for (const b of this.virtualName === undefined || this.core.virtualServer(this.virtualName)
          ? this.backends()
          : []) {
          b.existingClientFor(this)?.notify(n.method);
          if (b.shared) this.core.noteRootsSession(b.name, this);
        }
        return;
      default:
        return; // other client notifications have no backend meaning through a gateway
    }
  }

  respond(res: JsonRpcResponse): boolean {
    const resolve = res.id === null ? undefined : this.outgoing.get(String(res.id));
    if (!resolve) return false;
    this.outgoing.delete(String(res.id));
    resolve(res);
    return true;
  }

  /** Sends a server-to-client request on `sink` and resolves to the client's answer. */
  requestClient(
    method: string,
    params: JsonObject | undefined,
    sink: MessageSink,
    signal: AbortSignal,
  ): Promise<JsonRpcResponse> {
    if (this.closed) return Promise.resolve(toRpcError(0, new GatewayError('GW_CLIENT_GONE')));
    const id = serverRequestId(this.core.replicaId, ++this.nextOutgoing);
    return new Promise((resolve) => {
      const onAbort = () => {
        if (!this.outgoing.delete(id)) return;
        sink.send({
          jsonrpc: '2.0',
          method: 'notifications/cancelled',
          params: { requestId: id, reason: String(signal.reason ?? 'cancelled by server') },
        });
        resolve(rpcError(id, RpcCode.InternalError, 'cancelled by the server'));
      };
      this.outgoing.set(id, (r) => {
        signal.removeEventListener('abort', onAbort);
        resolve(r);
      });
      signal.addEventListener('abort', onAbort, { once: true });
      sink.send(
        params === undefined ? { jsonrpc: '2.0', id, method } : { jsonrpc: '2.0', id, method, params },
      );
    });
  }

  /** Sends an unrelated notification once the session is initialized. */
  sendUnrelated(n: JsonRpcNotification): void {
    if (!this.closed && this.initialized) this.unrelated.send(n);
  }

  /**
   * Continues a session another replica initialized: what initialize negotiated, and the backend
   * sessions it opened (continued where the transport allows, reopened lazily otherwise).
   */
  restore(record: SessionRecord): void {
    this.protocolVersion = record.protocolVersion;
    this.clientCapabilities = record.clientCapabilities as JsonObject;
    this.clientInfo = record.clientInfo as JsonObject;
    this.initialized = true;
    for (const [server, backend] of Object.entries(record.backendSessions))
      this.restoring.push(
        this.core
          .backend(server)
          ?.adopt(this, backend)
          .catch(() => false) ?? Promise.resolve(false),
      );
  }

  async close(): Promise<void> {
    await this.end(false);
  }

  async detach(): Promise<void> {
    await this.end(true);
  }

  private async end(keepBackendSessions: boolean): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const c of this.inflight.values()) c.cancel?.('client session ended');
    this.inflight.clear();
    for (const [id, resolve] of this.outgoing) resolve(toRpcError(id, new GatewayError('GW_CLIENT_GONE')));
    this.outgoing.clear();
    for (const kept of this.merged.values()) this.core.mergedLists.forget(kept);
    this.merged.clear();
    await Promise.all(this.restoring);
    await this.core.endSession(this, { keepBackendSessions });
  }

  /** The backend client this session holds for `server`, if already open. */
  clientOf(server: string): BackendClient | undefined {
    return this.core.backend(server)?.existingClientFor(this);
  }
}

/**
 * A 2026 backend's requestState travels to the client under a prefix of its own, so that it is never
 * taken for one of the gateway's (`mcpgw1.`), and reaches the backend again byte for byte.
 */
const BACKEND_STATE = 'mcpgw-b.';

function withOwnState(res: JsonRpcResponse): JsonRpcResponse {
  const state = (res as { result: JsonObject }).result.requestState;
  if (typeof state !== 'string') return res;
  return {
    ...res,
    result: { ...(res as { result: JsonObject }).result, requestState: `${BACKEND_STATE}${state}` },
  };
}

function backendState(params: JsonObject | undefined): JsonObject | undefined {
  const state = params?.requestState;
  if (typeof state !== 'string' || !state.startsWith(BACKEND_STATE)) return params;
  return { ...params, requestState: state.slice(BACKEND_STATE.length) };
}

function clientToken(params: JsonObject | undefined): unknown {
  return (params?._meta as JsonObject | undefined)?.progressToken;
}
/** The list methods whose pages /servers/{name}/mcp filters per caller, and where each page's items are. */
const SCOPED_LISTS: Record<string, { kind: ListKind; key: string }> = {
  'tools/list': { kind: 'tools', key: 'name' },
  'prompts/list': { kind: 'prompts', key: 'name' },
  'resources/list': { kind: 'resources', key: 'uri' },
  'resources/templates/list': { kind: 'resourceTemplates', key: 'uriTemplate' },
};

export const LOG_LEVELS = ['debug', 'info', 'notice', 'warning', 'error', 'critical', 'alert', 'emergency'];

function gatewayUri(server: string, uri: string): string {
  return `${GATEWAY_RESOURCE_SCHEME}${server}/${encodeURIComponent(uri)}`;
}

function parseGatewayUri(uri: string): { server: string; uri: string } | undefined {
  if (!uri.startsWith(GATEWAY_RESOURCE_SCHEME)) return undefined;
  const rest = uri.slice(GATEWAY_RESOURCE_SCHEME.length);
  const slash = rest.indexOf('/');
  if (slash <= 0) return undefined;
  try {
    return { server: rest.slice(0, slash), uri: decodeURIComponent(rest.slice(slash + 1)) };
  } catch {
    return undefined;
  }
}

/** The hash of an item's JSON, once per item object: cached catalogs hand out the same objects. */
const itemHashes = new WeakMap<JsonObject, string>();

function itemHash(item: JsonObject): string {
  let h = itemHashes.get(item);
  if (h === undefined)
    itemHashes.set(item, (h = createHash('sha256').update(JSON.stringify(item)).digest('base64url')));
  return h;
}

/** The backend definitions of a renamed list's items (same order), by the list. */
const listOrigins = new WeakMap<JsonObject[], JsonObject[]>();
/** Version names of lists computed already (a kept merged list is the same array). */
const listVersions = new WeakMap<JsonObject[], string>();

/**
 * The name of a list's version: its kind and a hash of its items (the order included). A renamed item
 * (its original the same but for the name) is its new name and its original's hash, so a cached catalog
 * is not serialised again on every listing (5,000 tools: most of a cached tools/list).
 */
function listVersion(kind: ListKind, items: JsonObject[]): string {
  const known = listVersions.get(items);
  if (known !== undefined) return known;
  const origins = listOrigins.get(items);
  const parts = items.map((it, i) =>
    origins ? `${String(it.name)}\0${itemHash(origins[i]!)}` : itemHash(it),
  );
  const id = `${kind}:${createHash('sha256').update(parts.join('\n')).digest('base64url').slice(0, 22)}`;
  listVersions.set(items, id);
  return id;
}
