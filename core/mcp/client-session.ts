/**
 * One client session as the core sees it: initialize, the aggregate view of /mcp (merged, namespaced,
 * paginated lists and routing back by name or URI) or the pass-through view of /servers/{name}/mcp, and
 * the relay of calls, cancellations, progress and server-to-client requests in both directions.
 */
import { GatewayError, toRpcError } from '../../shared/errors.js';
import { paginate } from '../../shared/mcp/cursor.js';
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
import { CallAbortedError, type BackendClient, type CallHandle } from '../backends/backend-client.js';
import type { ServerBackend, SessionOwner } from '../backends/server-backend.js';
import { LIST_METHOD, type ListKind } from './catalog.js';
import type { GatewayCore } from './gateway-core.js';
import { matchUriTemplate } from './uri-template.js';

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

export class ClientSession implements CoreSessionHandle, SessionOwner {
  protocolVersion = '2025-03-26';
  clientCapabilities: JsonObject = {};
  clientInfo: JsonObject = {};
  initialized = false;
  /** Level set with logging/setLevel, applied to log messages of shared backends. */
  logLevel: string | undefined;
  readonly subscriptions = new Map<string, { server: string; uri: string }>();

  private readonly inflight = new Map<JsonRpcId, CallHandle>();
  private readonly outgoing = new Map<string, (r: JsonRpcResponse) => void>();
  private nextOutgoing = 0;
  private readonly tools = new NameMap();
  private readonly prompts = new NameMap();
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
  ) {}

  get isAggregate(): boolean {
    return this.scope === AGGREGATE;
  }

  uses(server: string): boolean {
    return this.isAggregate || this.scope === server;
  }

  /** Backends this session can see, in config order. */
  private backends(): ServerBackend[] {
    return this.isAggregate ? this.core.backendList() : [this.core.backend(this.scope)!];
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
        if (!target)
          throw new GatewayError(
            kind === 'tools' ? 'GW_UNKNOWN_TOOL' : 'GW_UNKNOWN_PROMPT',
            `Unknown ${kind === 'tools' ? 'tool' : 'prompt'}: ${params.name}`,
            { name: params.name },
          );
        return this.forward(target.server, req, { ...params, name: target.name }, sink);
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
      return {
        jsonrpc: '2.0',
        id: req.id,
        result: {
          protocolVersion: this.protocolVersion,
          capabilities: AGGREGATE_CAPABILITIES,
          serverInfo: this.core.serverInfo,
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
    return this.forward(backend.name, req, req.params, sink);
  }

  // ---------------------------------------------------------------- the aggregate view

  private async listAggregate(req: JsonRpcRequest, kind: ListKind): Promise<JsonRpcResponse> {
    const items = await this.collect(kind);
    const page = paginate(`${this.id}:${kind}`, items, req.params?.cursor, this.core.pageSize);
    if (!page) throw new GatewayError('GW_INVALID_CURSOR', `Invalid cursor for ${LIST_METHOD[kind]}`);
    const result: JsonObject = { [kind]: page.page };
    if (page.nextCursor) result.nextCursor = page.nextCursor;
    return { jsonrpc: '2.0', id: req.id, result };
  }

  /** Every item of `kind` across the servers this session sees, renamed for the aggregate. */
  private async collect(kind: ListKind): Promise<JsonObject[]> {
    const perServer = await Promise.all(
      this.backends().map(async (b) => {
        try {
          const client = await b.clientFor(this);
          if (!this.core.catalog.declares(client, kind)) return { server: b.name, items: [] };
          return { server: b.name, items: await this.core.catalog.list(client, kind) };
        } catch (err) {
          this.core.log.debug(
            { server: b.name, err: (err as Error).message },
            'server left out of the aggregate list',
          );
          return { server: b.name, items: [] };
        }
      }),
    );
    if (kind === 'tools' || kind === 'prompts') {
      const names = kind === 'tools' ? this.tools : this.prompts;
      return perServer.flatMap(({ server, items }) =>
        items.map((it) => ({ ...it, name: names.assign(server, String(it.name)) })),
      );
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
    const names = kind === 'tools' ? this.tools : this.prompts;
    const known = names.resolve(exposed);
    if (known) return known;
    // Fast path: a plain `{server}__{name}` needs no catalog.
    const split = splitExposedName(exposed);
    if (
      split &&
      this.core.backend(split.server) &&
      isClientSafeName(exposed) &&
      exposedName(split.server, split.name) === exposed
    )
      return split;
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
    const fromGateway = parseGatewayUri(uri);
    if (fromGateway && this.core.backend(fromGateway.server)) return fromGateway;
    if (!this.resources.has(uri)) await this.collect('resources').catch(() => {});
    const listed = this.resources.get(uri);
    if (listed) return listed;
    if (this.templates.size === 0) await this.collect('resourceTemplates').catch(() => {});
    for (const [server, tpls] of this.templates)
      if (tpls.some((t) => matchUriTemplate(t, uri))) return { server, uri };
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
      if (req.method !== 'resources/read')
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
      return res && req.method === 'resources/read' ? this.renameContents(res, target.server) : res;
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
      const client = await b.clientFor(this).catch(() => undefined);
      if (!client || !this.core.catalog.declares(client, 'resources')) continue;
      const res = await this.forward(b.name, req, params, sink);
      if (!res || !('error' in res)) return res && this.renameContents(res, b.name);
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
      if (!t) throw new GatewayError('GW_UNKNOWN_PROMPT', `Unknown prompt: ${ref.name}`, { name: ref.name });
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
    const client = backend.existingClientFor(this) ?? (await backend.clientFor(this));
    const ctx: CallContext = { session: this, sink, server, clientRequestId: req.id };
    const handle: CallHandle = {};
    this.inflight.set(req.id, handle);
    const progress = this.core.mapProgress(params, ctx, client);
    const untrack = this.core.trackCall(ctx);
    try {
      const res = await client.call(req.method, progress.params, {
        context: ctx,
        handle,
        timeoutMs: this.core.timeoutMs(server),
      });
      return { ...res, id: req.id } as JsonRpcResponse;
    } catch (err) {
      if (err instanceof CallAbortedError) return undefined;
      throw err;
    } finally {
      untrack();
      this.inflight.delete(req.id);
      progress.release();
    }
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
        for (const b of this.backends()) {
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
    await Promise.all(this.restoring);
    await this.core.endSession(this, { keepBackendSessions });
  }

  /** The backend client this session holds for `server`, if already open. */
  clientOf(server: string): BackendClient | undefined {
    return this.core.backend(server)?.existingClientFor(this);
  }
}

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
