/**
 * One configured backend server and how client sessions reach it:
 * - stdio: ONE supervised process shared by every client session (never a process per session),
 *   restarted with exponential backoff when it dies; the core multiplexes sessions over it.
 * - Streamable HTTP and legacy SSE: one backend session per client session, opened lazily on first
 *   use with exactly the client's declared capabilities, closed with the client session.
 */
import { GatewayError } from '../../shared/errors.js';
import type { HttpServerConfig, ServerConfig, StdioServerConfig } from '../../shared/config/schema.js';
import type {
  JsonObject,
  JsonRpcNotification,
  JsonRpcRequest,
  JsonRpcResponse,
} from '../../shared/mcp/jsonrpc.js';
import type { Logger } from '../../shared/log.js';
import type { Principal } from '../../shared/identity/principal.js';
import type { CredentialVault } from '../../shared/ports/credential-vault.js';
import type { TokenRefresher } from '../../shared/vault/token-refresher.js';
import type { BackendSessionRecord } from '../../shared/ports/session-store.js';
import { LATEST_PROTOCOL_VERSION } from '../../shared/mcp/versions.js';
import { BackendClient, type CallContext, type InitializeResult } from './backend-client.js';
import { AutoEraBackend, ModernHttpBackend } from './modern-backend.js';
import { ModernBackendClient } from './modern-client.js';
import { LegacySseTransport } from './sse.js';
import { StdioTransport } from './stdio.js';
import { StreamableHttpTransport } from './streamable-http.js';
import type { UpstreamTransport } from './transport.js';
import { RestBackend } from '../rest/rest-backend.js';

export const GATEWAY_CLIENT_INFO = { name: 'mcpgw', version: '0.1.0' };

/** What a backend reports to the core; `owner` is the client session of a per-session backend. */
export interface BackendEvents {
  request(
    server: string,
    owner: SessionOwner | undefined,
    req: JsonRpcRequest,
    related: CallContext | undefined,
    signal: AbortSignal,
  ): Promise<JsonObject | JsonRpcResponse>;
  notification(
    server: string,
    owner: SessionOwner | undefined,
    n: JsonRpcNotification,
    related: CallContext | undefined,
    client: BackendClient,
  ): void;
  /** The shared backend came up, restarted or went down: its catalog may have changed. */
  availabilityChanged(server: string): void;
  /**
   * The backend now serves another catalog while staying up (it changed protocol era): sessions list
   * again. Absent: availabilityChanged is told instead.
   */
  catalogChanged?(server: string): void;
  /**
   * Who is calling, as headers for this HTTP backend (`identity: headers | delegation`), per request;
   * undefined sends none.
   */
  identityHeaders?(
    server: string,
    owner: SessionOwner | undefined,
  ): Readonly<Record<string, string>> | undefined;
  /** The vault and its refresher, for backends that present upstream credentials (`http` servers). */
  credentials?: BackendCredentials;
  /** A per-session backend session opened (info) or ended (undefined): the session record keeps it. */
  backendSessionChanged(server: string, owner: SessionOwner, info: BackendSessionRecord | undefined): void;
}

/** The part of a client session a backend needs to open its own session for it. */
export interface SessionOwner {
  readonly id: string;
  readonly protocolVersion: string;
  readonly clientCapabilities: JsonObject;
  readonly clientInfo: JsonObject;
  /** Who the session acts for (a client session has it; probes do not). */
  readonly identity?: Principal;
}

export interface BackendCredentials {
  vault: CredentialVault;
  tokens: TokenRefresher;
}

export type BackendState = 'starting' | 'ready' | 'restarting' | 'failed' | 'stopped';

export interface ServerBackend {
  readonly name: string;
  readonly config: ServerConfig;
  /** True when one backend session serves every client session (stdio). */
  readonly shared: boolean;
  status(): { state: BackendState; error?: string };
  /** Starts the process (stdio) or probes the server (HTTP); resolves after the first attempt either way. */
  start(): Promise<void>;
  /** The backend client that `owner` must use; opens it if needed. Throws GW_BACKEND_UNAVAILABLE. */
  clientFor(owner: SessionOwner): Promise<BackendClient>;
  /** The client already open for `owner`, if any (never opens one). */
  existingClientFor(owner: SessionOwner): BackendClient | undefined;
  /** Continues a backend session that `owner` opened on another replica (HTTP); false if it cannot. */
  adopt(owner: SessionOwner, record: BackendSessionRecord): Promise<boolean>;
  /**
   * Closes what `owner` holds (its backend session, for HTTP). With `keepSession`, only this replica's
   * connections go: the backend session stays open for the replica that continues the client session.
   */
  release(owner: SessionOwner, options?: { keepSession?: boolean }): Promise<void>;
  close(): Promise<void>;
}

/** Capabilities the gateway can relay to some client; offered to shared (stdio) backends. */
const RELAY_CAPABILITIES: JsonObject = {
  sampling: {},
  elicitation: { form: {}, url: {} },
  roots: { listChanged: true },
};

export function createBackend(config: ServerConfig, events: BackendEvents, log: Logger): ServerBackend {
  if (config.transport === 'stdio') return new StdioBackend(config, events, log);
  if (config.transport === 'http') return new RestBackend(config, events, log);
  // Streamable HTTP servers may be of either era (modern-backend.ts); legacy SSE ones are 2024-11-05.
  if (config.transport === 'streamable-http' && config.protocol === '2026')
    return new ModernHttpBackend(config, events, log, GATEWAY_CLIENT_INFO);
  if (config.transport === 'streamable-http' && config.protocol === 'auto')
    return new AutoEraBackend(
      config,
      events,
      log,
      GATEWAY_CLIENT_INFO,
      () => new HttpBackend(config, events, log),
    );
  return new HttpBackend(config, events, log);
}

class StdioBackend implements ServerBackend {
  readonly shared = true;
  private client: BackendClient | undefined;
  private state: BackendState = 'starting';
  private lastError: string | undefined;
  private failures = 0;
  private startedAt = 0;
  private restartTimer: NodeJS.Timeout | undefined;
  private stopping = false;
  private connecting: Promise<void> | undefined;

  constructor(
    readonly config: StdioServerConfig,
    private readonly events: BackendEvents,
    private readonly log: Logger,
  ) {}

  get name(): string {
    return this.config.name;
  }

  status() {
    return this.lastError && this.state !== 'ready'
      ? { state: this.state, error: this.lastError }
      : { state: this.state };
  }

  start(): Promise<void> {
    return (this.connecting ??= this.spawn().finally(() => (this.connecting = undefined)));
  }

  async clientFor(_owner: SessionOwner): Promise<BackendClient> {
    if (this.client && !this.client.isClosed) return this.client;
    throw new GatewayError(
      'GW_BACKEND_UNAVAILABLE',
      `backend "${this.name}" is ${this.state}${this.lastError ? `: ${this.lastError}` : ''}`,
      { server: this.name, state: this.state },
    );
  }

  existingClientFor(): BackendClient | undefined {
    return this.client && !this.client.isClosed ? this.client : undefined;
  }

  async adopt(): Promise<boolean> {
    return false; // one process per replica: nothing of the client session lives in it
  }

  async release(): Promise<void> {}

  async close(): Promise<void> {
    this.stopping = true;
    this.state = 'stopped';
    clearTimeout(this.restartTimer);
    await this.connecting?.catch(() => {});
    const c = this.client;
    this.client = undefined;
    await c?.close();
  }

  private async spawn(): Promise<void> {
    if (this.stopping) return;
    const c = this.config;
    const transport = new StdioTransport({
      command: c.command,
      args: c.args,
      env: c.env,
      cwd: c.cwd,
      log: this.log,
      serverName: c.name,
      shutdownGraceMs: c.shutdownGraceMs,
    });
    const handlers = {
      onRequest: (req: JsonRpcRequest, related: CallContext | undefined, signal: AbortSignal) =>
        this.events.request(c.name, undefined, req, related, signal),
      onNotification: (n: JsonRpcNotification, related: CallContext | undefined) => {
        // The acknowledgement of our own listen (2026) concerns no client.
        if (n.method !== 'notifications/subscriptions/acknowledged')
          this.events.notification(c.name, undefined, n, related, client);
      },
      onClose: (reason?: Error) => this.onClosed(client, reason),
    };
    // A 2026 process gets server/discover and an envelope per request with the caller's own capabilities.
    const client: BackendClient =
      c.protocol === '2026'
        ? new ModernBackendClient(c.name, transport, handlers, {
            clientCapabilities: {},
            clientInfo: GATEWAY_CLIENT_INFO,
          })
        : new BackendClient(c.name, transport, handlers);
    try {
      this.startedAt = Date.now();
      await client.connect(
        {
          protocolVersion: LATEST_PROTOCOL_VERSION,
          capabilities: RELAY_CAPABILITIES,
          clientInfo: GATEWAY_CLIENT_INFO,
        },
        c.timeouts.connectMs,
      );
      if (this.stopping) return void (await client.close());
      this.client = client;
      this.state = 'ready';
      this.lastError = undefined;
      this.log.info({ server: c.name, backend: client.initializeResult?.serverInfo }, 'stdio backend ready');
      this.events.availabilityChanged(c.name);
      if (client instanceof ModernBackendClient) listenOverStdio(client, this.log);
    } catch (err) {
      await client.close();
      this.failed((err as Error).message);
    }
  }

  private onClosed(client: BackendClient, reason?: Error): void {
    if (client !== this.client) return;
    this.client = undefined;
    if (this.stopping) return;
    // A process that lived a while before dying starts the backoff afresh; one that dies at once climbs it.
    if (Date.now() - this.startedAt > 10_000) this.failures = 0;
    this.log.warn({ server: this.name, reason: reason?.message }, 'stdio backend exited');
    this.failed(reason?.message ?? 'process exited');
    this.events.availabilityChanged(this.name);
  }

  private failed(message: string): void {
    if (this.stopping) return;
    this.failures++;
    this.lastError = message;
    this.state = this.failures >= this.config.restart.failedAfter ? 'failed' : 'restarting';
    const delay = Math.min(
      this.config.restart.initialDelayMs * 2 ** (this.failures - 1),
      this.config.restart.maxDelayMs,
    );
    this.log.warn(
      { server: this.name, error: message, failures: this.failures, retryInMs: delay },
      'stdio backend unavailable; restarting',
    );
    clearTimeout(this.restartTimer);
    this.restartTimer = setTimeout(() => void this.start(), delay);
    this.restartTimer.unref();
  }
}

/**
 * A 2026 process announces list changes only to a `subscriptions/listen` request, held open for the
 * life of the process; its notifications arrive unrelated to any call, as a 2025 process's do.
 */
function listenOverStdio(client: ModernBackendClient, log: Logger): void {
  const caps = (client.initializeResult?.capabilities ?? {}) as Record<
    string,
    { listChanged?: unknown } | undefined
  >;
  const notifications: JsonObject = {};
  if (caps.tools?.listChanged) notifications.toolsListChanged = true;
  if (caps.prompts?.listChanged) notifications.promptsListChanged = true;
  if (caps.resources?.listChanged) notifications.resourcesListChanged = true;
  if (Object.keys(notifications).length === 0) return;
  void client.call('subscriptions/listen', { notifications }, { timeoutMs: 2 ** 31 - 1 }).then((res) => {
    if ('error' in res && !client.isClosed)
      log.warn(
        { server: client.server, error: res.error.message },
        'stdio backend refused subscriptions/listen',
      );
  });
}

class HttpBackend implements ServerBackend {
  readonly shared = false;
  private readonly sessions = new Map<string, Promise<BackendClient>>();
  private readonly open = new Map<string, BackendClient>();
  private state: BackendState = 'starting';
  private lastError: string | undefined;

  constructor(
    readonly config: HttpServerConfig,
    private readonly events: BackendEvents,
    private readonly log: Logger,
  ) {}

  get name(): string {
    return this.config.name;
  }

  status() {
    return this.lastError && this.state !== 'ready'
      ? { state: this.state, error: this.lastError }
      : { state: this.state };
  }

  /** Probes the server with a throw-away session so that /readyz can tell connected from failed. */
  async start(): Promise<void> {
    const client = new BackendClient(this.name, this.transport(), {
      onRequest: async () => ({}),
      onNotification: () => {},
      onClose: () => {},
    });
    try {
      await client.connect(
        { protocolVersion: LATEST_PROTOCOL_VERSION, capabilities: {}, clientInfo: GATEWAY_CLIENT_INFO },
        this.config.timeouts.connectMs,
      );
      this.markUp();
    } catch (err) {
      this.markDown((err as Error).message);
    } finally {
      await client.close();
    }
  }

  clientFor(owner: SessionOwner): Promise<BackendClient> {
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

  async adopt(owner: SessionOwner, record: BackendSessionRecord): Promise<boolean> {
    if (this.sessions.has(owner.id) || record.sessionId === undefined || !record.initializeResult)
      return false;
    const client = this.newClient(owner);
    const init = { ...record.initializeResult, protocolVersion: record.protocolVersion };
    if (!(await client.adopt(record.sessionId, init as unknown as InitializeResult))) return false;
    this.open.set(owner.id, client);
    this.sessions.set(owner.id, Promise.resolve(client));
    return true;
  }

  async release(owner: SessionOwner, options?: { keepSession?: boolean }): Promise<void> {
    const p = this.sessions.get(owner.id);
    this.sessions.delete(owner.id);
    this.open.delete(owner.id);
    const c = await p?.catch(() => undefined);
    await c?.close(options);
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

  private transport(owner?: SessionOwner): UpstreamTransport {
    const c = this.config;
    const identity = this.events.identityHeaders;
    const opts = {
      url: c.url,
      headers: c.headers,
      log: this.log,
      requestTimeoutMs: c.timeouts.requestMs,
      // Without an owner (the start-up probe) the gateway acts for itself.
      ...(identity &&
        c.identity !== 'none' && {
          identityHeaders: () => identity.call(this.events, this.name, owner),
        }),
    };
    return c.transport === 'sse' ? new LegacySseTransport(opts) : new StreamableHttpTransport(opts);
  }

  private newClient(owner: SessionOwner): BackendClient {
    const client: BackendClient = new BackendClient(this.name, this.transport(owner), {
      onRequest: (req, related, signal) => this.events.request(this.name, owner, req, related, signal),
      onNotification: (n, related) => this.events.notification(this.name, owner, n, related, client),
      onClose: () => {
        // The backend session is gone (expired, server restarted): the next use opens a new one.
        if (this.open.get(owner.id) === client) {
          this.open.delete(owner.id);
          this.sessions.delete(owner.id);
          this.events.backendSessionChanged(this.name, owner, undefined);
        }
      },
    });
    return client;
  }

  private async openFor(owner: SessionOwner): Promise<BackendClient> {
    const client = this.newClient(owner);
    const version = this.config.transport === 'sse' ? '2024-11-05' : owner.protocolVersion;
    try {
      await client.connect(
        { protocolVersion: version, capabilities: owner.clientCapabilities, clientInfo: owner.clientInfo },
        this.config.timeouts.connectMs,
      );
    } catch (err) {
      await client.close();
      this.markDown((err as Error).message);
      throw err instanceof GatewayError
        ? err
        : new GatewayError(
            'GW_BACKEND_UNAVAILABLE',
            `backend "${this.name}" is unavailable: ${(err as Error).message}`,
            { server: this.name },
          );
    }
    this.markUp();
    this.open.set(owner.id, client);
    const init = client.initializeResult!;
    this.events.backendSessionChanged(this.name, owner, {
      ...(client.sessionId !== undefined && { sessionId: client.sessionId }),
      protocolVersion: init.protocolVersion,
      initializeResult: init,
    });
    return client;
  }

  private markUp(): void {
    if (this.state !== 'ready') {
      this.state = 'ready';
      this.lastError = undefined;
      this.events.availabilityChanged(this.name);
    }
  }

  private markDown(message: string): void {
    this.lastError = message;
    if (this.state !== 'failed') {
      this.state = 'failed';
      this.log.warn({ server: this.name, error: message }, 'http backend unavailable');
      this.events.availabilityChanged(this.name);
    }
  }
}
