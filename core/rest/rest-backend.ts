/**
 * An `http` server: a REST API the gateway itself serves as an MCP server. Each client session gets an
 * in-process BackendClient whose transport answers initialize, ping, tools/list and tools/call here, so
 * the core treats it like any per-session backend (pools, policies, audit, caching all apply), and each
 * call knows its caller: per-user credentials and token exchange need it.
 */
import { GatewayError, toRpcError } from '../../shared/errors.js';
import type { RestServerConfig } from '../../shared/config/schema.js';
import {
  rpcError,
  rpcResult,
  RpcCode,
  type JsonObject,
  type JsonRpcMessage,
  type JsonRpcRequest,
  type JsonRpcResponse,
} from '../../shared/mcp/jsonrpc.js';
import type { Logger } from '../../shared/log.js';
import { BackendClient } from '../backends/backend-client.js';
import type { BackendEvents, BackendState, ServerBackend, SessionOwner } from '../backends/server-backend.js';
import type { UpstreamTransport, UpstreamMessageContext } from '../backends/transport.js';
import { LATEST_PROTOCOL_VERSION } from '../../shared/mcp/versions.js';
import { compileTools, type CompiledTool } from './rest-tools.js';
import { callEndpoint } from './rest-call.js';
import { TokenExchanger } from './token-exchange.js';
import { loadTokenizer, TokenCounter } from './token-budget.js';
import { serverId } from '../../shared/mcp/server-versions.js';

/** One counter for every REST server of the process: identical answers are counted once. */
export const resultTokens = new TokenCounter();

export class RestBackend implements ServerBackend {
  readonly shared = false;
  private tools = new Map<string, CompiledTool>();
  private state: BackendState = 'starting';
  private lastError: string | undefined;
  private readonly sessions = new Map<string, Promise<BackendClient>>();
  private readonly open = new Map<string, BackendClient>();
  private readonly exchanger: TokenExchanger | undefined;

  constructor(
    readonly config: RestServerConfig,
    private readonly events: BackendEvents,
    private readonly log: Logger,
  ) {
    // Every REST result has its tokens counted: the encoding is loaded now, not by the first call.
    loadTokenizer();
    const a = config.auth;
    if (a?.kind === 'token-exchange')
      this.exchanger = new TokenExchanger({
        server: serverId(config),
        tokenUrl: a.tokenUrl,
        audience: a.audience,
        resource: a.resource,
        scope: a.scope,
        refreshBeforeMs: a.refreshBeforeMs,
        timeoutMs: config.timeouts.requestMs,
        ...(a.credential && { client: () => this.exchangeClient(a.credential!) }),
      });
  }

  get name(): string {
    return serverId(this.config);
  }

  status() {
    return this.lastError && this.state !== 'ready'
      ? { state: this.state, error: this.lastError }
      : { state: this.state };
  }

  /** Compiles the tools (reading the OpenAPI document): a server whose tools cannot be made is failed. */
  async start(): Promise<void> {
    try {
      this.tools = new Map((await compileTools(this.config)).map((t) => [t.endpoint.name, t]));
      this.state = 'ready';
      this.lastError = undefined;
      this.log.info({ server: this.name, tools: this.tools.size }, 'rest backend ready');
    } catch (err) {
      this.state = 'failed';
      this.lastError = (err as Error).message;
      this.log.warn({ server: this.name, error: this.lastError }, 'rest backend unavailable');
    }
    this.events.availabilityChanged(this.name);
  }

  clientFor(owner: SessionOwner): Promise<BackendClient> {
    if (this.state !== 'ready')
      return Promise.reject(
        new GatewayError(
          'GW_BACKEND_UNAVAILABLE',
          `backend "${this.name}" is ${this.state}${this.lastError ? `: ${this.lastError}` : ''}`,
          { server: this.name, state: this.state },
        ),
      );
    let p = this.sessions.get(owner.id);
    if (!p) {
      p = this.openFor(owner);
      this.sessions.set(owner.id, p);
      p.catch(() => this.sessions.delete(owner.id));
    }
    return p;
  }

  existingClientFor(owner: SessionOwner): BackendClient | undefined {
    return this.open.get(owner.id);
  }

  async adopt(): Promise<boolean> {
    return false; // nothing lives upstream: the next call opens a client here
  }

  async release(owner: SessionOwner): Promise<void> {
    const p = this.sessions.get(owner.id);
    this.sessions.delete(owner.id);
    this.open.delete(owner.id);
    await (await p?.catch(() => undefined))?.close();
  }

  async close(): Promise<void> {
    this.state = 'stopped';
    const all = [...this.sessions.values()];
    this.sessions.clear();
    this.open.clear();
    await Promise.all(
      all.map((p) =>
        p.then(
          (c) => c.close(),
          () => {},
        ),
      ),
    );
  }

  private async openFor(owner: SessionOwner): Promise<BackendClient> {
    const client = new BackendClient(
      this.name,
      new RestTransport((req, signal) => this.handle(req, owner, signal)),
      {
        onRequest: async () => ({}),
        onNotification: () => {},
        onClose: () => {
          if (this.open.get(owner.id) === client) {
            this.open.delete(owner.id);
            this.sessions.delete(owner.id);
          }
        },
      },
    );
    await client.connect(
      { protocolVersion: owner.protocolVersion, capabilities: {}, clientInfo: owner.clientInfo },
      this.config.timeouts.connectMs,
    );
    this.open.set(owner.id, client);
    return client;
  }

  /** One MCP request of `owner`'s session, answered from the REST API. */
  private async handle(
    req: JsonRpcRequest,
    owner: SessionOwner,
    signal: AbortSignal,
  ): Promise<JsonRpcResponse> {
    const params = (req.params ?? {}) as JsonObject;
    switch (req.method) {
      case 'initialize':
        return rpcResult(req.id, {
          protocolVersion:
            typeof params.protocolVersion === 'string' ? params.protocolVersion : LATEST_PROTOCOL_VERSION,
          capabilities: { tools: { listChanged: false } },
          serverInfo: { name: this.name, version: '1' },
          ...(this.config.description !== undefined && { instructions: this.config.description }),
        });
      case 'ping':
        return rpcResult(req.id, {});
      case 'tools/list':
        return rpcResult(req.id, { tools: [...this.tools.values()].map((t) => t.definition) });
      case 'tools/call': {
        const tool = typeof params.name === 'string' ? this.tools.get(params.name) : undefined;
        if (!tool) return rpcError(req.id, RpcCode.InvalidParams, `Unknown tool: ${String(params.name)}`);
        const args = (params.arguments ?? {}) as JsonObject;
        if (typeof args !== 'object' || Array.isArray(args))
          return rpcError(req.id, RpcCode.InvalidParams, 'arguments must be an object');
        try {
          const auth = await this.authHeaders(owner);
          const result = await callEndpoint(this.config, tool, args, auth, signal, resultTokens);
          return rpcResult(req.id, result);
        } catch (err) {
          return toRpcError(req.id, err);
        }
      }
      default:
        return rpcError(req.id, RpcCode.MethodNotFound, `Method not found: ${req.method}`);
    }
  }

  /** The credential headers of a call; their values are never logged nor put in any answer. */
  private async authHeaders(owner: SessionOwner): Promise<Record<string, string>> {
    const a = this.config.auth;
    if (!a) return {};
    if (a.kind === 'token-exchange') {
      const authz = this.events.identityHeaders?.(this.name, owner)?.authorization;
      const subject = authz?.startsWith('Bearer ') ? authz.slice(7) : undefined;
      if (!subject)
        throw new GatewayError(
          'GW_CREDENTIAL_UNAVAILABLE',
          `Token exchange for ${this.name}: no delegation token for this caller (identity "delegation" needs backendIdentity.delegationKey on a core)`,
          { server: this.name },
        );
      return { authorization: `Bearer ${await this.exchanger!.tokenFor(subject)}` };
    }
    const creds = this.events.credentials;
    if (!creds)
      throw new GatewayError(
        'GW_CREDENTIAL_UNAVAILABLE',
        `Server ${this.name} needs the credential vault (a database store and a vault key)`,
        { server: this.name },
      );
    if (a.kind === 'api-key')
      return { [a.header.toLowerCase()]: `${a.prefix}${await creds.tokens.accessToken(a.credential)}` };
    if (a.kind === 'bearer')
      return { authorization: `Bearer ${await creds.tokens.accessToken(a.credential)}` };
    const subject = owner.identity?.subject;
    const mine = subject
      ? await creds.vault.list({ server: this.name, owner: subject, kind: 'oauth-token' })
      : [];
    if (!mine[0])
      throw new GatewayError(
        'GW_CREDENTIAL_UNAVAILABLE',
        `Server ${this.name} needs your own OAuth token, and the vault holds none for ${subject ?? 'an anonymous caller'}`,
        { server: this.name },
      );
    return { authorization: `Bearer ${await creds.tokens.accessToken(mine[0].id)}` };
  }

  private async exchangeClient(id: string) {
    const c = await this.events.credentials?.vault.get(id);
    if (!c || c.kind !== 'oauth-client')
      throw new GatewayError('GW_CREDENTIAL_UNAVAILABLE', `No oauth-client credential ${id}`, {
        credential: id,
      });
    const s = c.secret as { clientId: string; clientSecret: string };
    return { clientId: s.clientId, clientSecret: s.clientSecret };
  }
}

/** The in-process channel between a BackendClient and the REST server it talks to. */
class RestTransport implements UpstreamTransport {
  readonly sessionId = undefined;
  onmessage?: (message: JsonRpcMessage, context: UpstreamMessageContext) => void;
  onclose?: (reason?: Error) => void;
  private readonly inflight = new Map<string | number, AbortController>();
  private closed = false;

  constructor(
    private readonly handle: (req: JsonRpcRequest, signal: AbortSignal) => Promise<JsonRpcResponse>,
  ) {}

  async start(): Promise<void> {}

  setProtocolVersion(): void {}

  async send(message: JsonRpcMessage): Promise<void> {
    if (this.closed) throw new Error('closed');
    if (!('method' in message)) return; // answers to requests we never make
    if (!('id' in message)) {
      if (message.method === 'notifications/cancelled') {
        const id = (message.params as { requestId?: string | number } | undefined)?.requestId;
        if (id !== undefined) this.inflight.get(id)?.abort();
      }
      return;
    }
    const ac = new AbortController();
    this.inflight.set(message.id, ac);
    void this.handle(message, ac.signal)
      .catch((err: unknown) => toRpcError(message.id, err))
      .then((res) => {
        this.inflight.delete(message.id);
        if (!this.closed) this.onmessage?.(res, { relatedRequestId: message.id });
      });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const ac of this.inflight.values()) ac.abort();
    this.onclose?.();
  }
}
