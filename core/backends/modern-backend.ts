/**
 * Backends of the 2026-07-28 era, and the `protocol: auto` choice between eras.
 *
 * - `ModernHttpBackend`: one ModernBackendClient over a StatelessHttpTransport per replica serves every
 *   client session (a 2026 server keeps no session; each request's envelope says who asks), so it is a
 *   shared backend like stdio, without the multiplexing compromises: capabilities and client info are
 *   each caller's own. Change notifications come from one upstream `subscriptions/listen` per replica
 *   whose filter is the union of what the gateway needs (every list the server can announce, and the
 *   resource URIs some session subscribed to); it is reopened (new first) when that set changes, and
 *   after a drop every list counts as changed, since events may have been lost.
 * - `AutoEraBackend`: probes the server (era-probe.ts) at start and serves it through a 2026 backend or
 *   the 2025 one; the verdict is kept, and probed again when a 2026 backend answers -32022 or a 2025
 *   backend refuses initialize with HTTP 400 (the server was replaced by one of the other era).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { GatewayError } from '../../shared/errors.js';
import type { HttpServerConfig } from '../../shared/config/schema.js';
import type { Logger } from '../../shared/log.js';
import type { JsonObject, JsonRpcMessage, JsonRpcNotification } from '../../shared/mcp/jsonrpc.js';
import { META_SUBSCRIPTION_ID, withEnvelope, type EnvelopeOwner } from '../../shared/mcp/eras.js';
import type { BackendSessionRecord } from '../../shared/ports/session-store.js';
import type { BackendClient } from './backend-client.js';
import { probeEra, type Era } from './era-probe.js';
import { ModernBackendClient } from './modern-client.js';
import type { BackendEvents, BackendState, ServerBackend, SessionOwner } from './server-backend.js';
import { StatelessHttpTransport } from './stateless-http.js';

const LISTEN_RETRY_MS = 1000;
const LISTEN_RETRY_MAX_MS = 30_000;
const LIST_CHANGES = [
  'notifications/tools/list_changed',
  'notifications/prompts/list_changed',
  'notifications/resources/list_changed',
];

export class ModernHttpBackend implements ServerBackend {
  readonly shared = true;
  /** Called when the backend answers as if it no longer spoke 2026-07-28. */
  onEraMismatch?: () => void;
  private client: ModernBackendClient | undefined;
  private transport: StatelessHttpTransport | undefined;
  private connecting: Promise<ModernBackendClient> | undefined;
  private state: BackendState = 'starting';
  private lastError: string | undefined;
  private stopping = false;
  private watched: string[] = [];
  /** The newest upstream listen; an older one is aborted once the newer one is acknowledged. */
  private listenGeneration = 0;
  private readonly listens = new Map<number, AbortController>();
  private readonly gateway: EnvelopeOwner;

  constructor(
    readonly config: HttpServerConfig,
    private readonly events: BackendEvents,
    private readonly log: Logger,
    gatewayInfo: JsonObject,
  ) {
    this.gateway = { clientCapabilities: {}, clientInfo: gatewayInfo };
  }

  get name(): string {
    return this.config.name;
  }

  status() {
    return this.lastError && this.state !== 'ready'
      ? { state: this.state, error: this.lastError }
      : { state: this.state };
  }

  async start(): Promise<void> {
    await this.connect().catch(() => {});
  }

  async clientFor(_owner: SessionOwner): Promise<BackendClient> {
    if (this.client && !this.client.isClosed) return this.client;
    return this.connect();
  }

  existingClientFor(): BackendClient | undefined {
    return this.client && !this.client.isClosed ? this.client : undefined;
  }

  async adopt(_owner: SessionOwner, _record: BackendSessionRecord): Promise<boolean> {
    return false; // nothing of a client session lives in a 2026 server
  }

  async release(): Promise<void> {}

  async close(): Promise<void> {
    this.stopping = true;
    this.state = 'stopped';
    for (const c of this.listens.values()) c.abort('closing');
    this.listens.clear();
    await this.connecting?.catch(() => {});
    const c = this.client;
    this.client = undefined;
    await c?.close();
  }

  /** The resource URIs some session subscribed to: the upstream listen is reopened with them. */
  watchResources(uris: readonly string[]): void {
    const next = [...new Set(uris)].sort();
    if (next.length === this.watched.length && next.every((u, i) => u === this.watched[i])) return;
    this.watched = next;
    if (this.client && !this.stopping) this.openListen();
  }

  private connect(): Promise<ModernBackendClient> {
    return (this.connecting ??= this.open().finally(() => (this.connecting = undefined)));
  }

  private async open(): Promise<ModernBackendClient> {
    if (this.stopping)
      throw new GatewayError('GW_BACKEND_UNAVAILABLE', `backend "${this.name}" is stopped`, {
        server: this.name,
      });
    const c = this.config;
    const transport = new StatelessHttpTransport({
      url: c.url,
      headers: c.headers,
      log: this.log,
      requestTimeoutMs: c.timeouts.requestMs,
    });
    const client: ModernBackendClient = new ModernBackendClient(
      c.name,
      transport,
      {
        onRequest: (req, related, signal) => this.events.request(c.name, undefined, req, related, signal),
        onNotification: (n, related) => this.events.notification(c.name, undefined, n, related, client),
        onClose: () => {},
      },
      this.gateway,
    );
    client.onEraMismatch = () => this.onEraMismatch?.();
    try {
      await client.connect(undefined, c.timeouts.connectMs);
    } catch (err) {
      await client.close();
      const message = (err as Error).message;
      this.lastError = message;
      if (this.state !== 'failed') {
        this.state = 'failed';
        this.log.warn({ server: this.name, error: message }, '2026 backend unavailable');
        this.events.availabilityChanged(this.name);
      }
      throw err instanceof GatewayError
        ? err
        : new GatewayError('GW_BACKEND_UNAVAILABLE', `backend "${this.name}" is unavailable: ${message}`, {
            server: this.name,
          });
    }
    if (this.stopping) {
      await client.close();
      throw new GatewayError('GW_BACKEND_UNAVAILABLE', `backend "${this.name}" is stopped`);
    }
    this.client = client;
    this.transport = transport;
    this.state = 'ready';
    this.lastError = undefined;
    this.log.info({ server: c.name, backend: client.initializeResult?.serverInfo }, '2026 backend ready');
    this.events.availabilityChanged(c.name);
    this.openListen();
    return client;
  }

  /** What the upstream listen asks for: every list the server announces, and the watched URIs. */
  private filter(): JsonObject | undefined {
    const caps = (this.client?.initializeResult?.capabilities ?? {}) as Record<
      string,
      JsonObject | undefined
    >;
    const f: JsonObject = {};
    if (caps.tools?.listChanged) f.toolsListChanged = true;
    if (caps.prompts?.listChanged) f.promptsListChanged = true;
    if (caps.resources?.listChanged) f.resourcesListChanged = true;
    if (caps.resources?.subscribe && this.watched.length > 0) f.resourceSubscriptions = [...this.watched];
    return Object.keys(f).length > 0 ? f : undefined;
  }

  private openListen(): void {
    const filter = this.filter();
    const generation = ++this.listenGeneration;
    if (!filter) {
      for (const c of this.listens.values()) c.abort('nothing to listen for');
      this.listens.clear();
      return;
    }
    const ctrl = new AbortController();
    this.listens.set(generation, ctrl);
    void this.runListen(generation, filter, ctrl);
  }

  private async runListen(generation: number, filter: JsonObject, ctrl: AbortController): Promise<void> {
    let failures = 0;
    let acknowledged = false;
    while (!ctrl.signal.aborted && !this.stopping) {
      const transport = this.transport;
      const client = this.client;
      if (!transport || !client) return;
      const onMessage = (m: JsonRpcMessage) => {
        const n = m as JsonRpcNotification;
        if (n.method === 'notifications/subscriptions/acknowledged') {
          acknowledged = true;
          failures = 0;
          // New first: the older listen goes only once this one holds.
          for (const [g, c] of this.listens)
            if (g < generation) {
              c.abort('replaced');
              this.listens.delete(g);
            }
          return;
        }
        const meta = n.params?._meta as JsonObject | undefined;
        let params = n.params;
        if (meta && META_SUBSCRIPTION_ID in meta) {
          const { [META_SUBSCRIPTION_ID]: _id, ...rest } = meta;
          params = { ...n.params };
          if (Object.keys(rest).length > 0) params._meta = rest;
          else delete params._meta;
        }
        const out: JsonRpcNotification =
          params === undefined || Object.keys(params).length === 0
            ? { jsonrpc: '2.0', method: n.method }
            : { jsonrpc: '2.0', method: n.method, params };
        this.events.notification(this.name, undefined, out, undefined, client);
      };
      const end = await transport.listen(
        {
          jsonrpc: '2.0',
          id: `mcpgw-listen-${generation}`,
          method: 'subscriptions/listen',
          params: withEnvelope({ notifications: filter }, this.gateway),
        },
        onMessage,
        ctrl.signal,
      );
      if (ctrl.signal.aborted || this.stopping) return;
      if (end.kind === 'refused') {
        this.log.warn(
          { server: this.name, error: end.error, status: end.status },
          'backend refused subscriptions/listen; its change notifications will be missed',
        );
        return;
      }
      if (acknowledged)
        // Events between the drop and the reopen are lost: every list may have changed.
        for (const method of LIST_CHANGES)
          this.events.notification(this.name, undefined, { jsonrpc: '2.0', method }, undefined, client);
      acknowledged = false;
      failures++;
      this.log.debug({ server: this.name, end, failures }, 'upstream listen ended; reopening');
      await sleep(Math.min(LISTEN_RETRY_MS * 2 ** (failures - 1), LISTEN_RETRY_MAX_MS), undefined, {
        signal: ctrl.signal,
      }).catch(() => {});
    }
  }
}

/** The 2026 backend behind `b`, if it is one (directly or through `protocol: auto`). */
export function modernBackend(b: ServerBackend | undefined): ModernHttpBackend | undefined {
  if (b instanceof ModernHttpBackend) return b;
  if (b instanceof AutoEraBackend) return b.modern;
  return undefined;
}

export class AutoEraBackend implements ServerBackend {
  private current: ServerBackend | undefined;
  private era: Era | undefined;
  private resolving: Promise<ServerBackend> | undefined;
  private reprobing = false;
  private stopped = false;
  private lastError: string | undefined;

  constructor(
    readonly config: HttpServerConfig,
    private readonly events: BackendEvents,
    private readonly log: Logger,
    private readonly gatewayInfo: JsonObject,
    private readonly legacy: () => ServerBackend,
  ) {}

  get name(): string {
    return this.config.name;
  }

  get shared(): boolean {
    return this.current?.shared ?? false;
  }

  get modern(): ModernHttpBackend | undefined {
    return this.current instanceof ModernHttpBackend ? this.current : undefined;
  }

  status() {
    if (this.current) return this.current.status();
    if (this.stopped) return { state: 'stopped' as const };
    return this.lastError
      ? { state: 'failed' as const, error: this.lastError }
      : { state: 'starting' as const };
  }

  async start(): Promise<void> {
    await this.resolve().catch(() => {});
  }

  async clientFor(owner: SessionOwner): Promise<BackendClient> {
    const b = await this.resolve();
    try {
      return await b.clientFor(owner);
    } catch (err) {
      if (this.era === '2025' && initializeRefusedWith400(err)) void this.reprobe();
      throw err;
    }
  }

  existingClientFor(owner: SessionOwner): BackendClient | undefined {
    return this.current?.existingClientFor(owner);
  }

  async adopt(owner: SessionOwner, record: BackendSessionRecord): Promise<boolean> {
    const b = await this.resolve().catch(() => undefined);
    return b ? b.adopt(owner, record) : false;
  }

  async release(owner: SessionOwner, options?: { keepSession?: boolean }): Promise<void> {
    await this.current?.release(owner, options);
  }

  async close(): Promise<void> {
    this.stopped = true;
    await this.resolving?.catch(() => {});
    await this.current?.close();
  }

  private resolve(): Promise<ServerBackend> {
    if (this.current) return Promise.resolve(this.current);
    return (this.resolving ??= this.decide().finally(() => (this.resolving = undefined)));
  }

  /** Probes, builds the backend of that era and starts it. No verdict (a connect error): throws. */
  private async decide(): Promise<ServerBackend> {
    let era: Era;
    try {
      era = await probeEra(
        this.config,
        { clientCapabilities: {}, clientInfo: this.gatewayInfo },
        this.events.identityHeaders?.(this.name, undefined),
      );
    } catch (err) {
      this.lastError = (err as Error).message;
      this.log.warn({ server: this.name, error: this.lastError }, 'era probe failed');
      throw err;
    }
    if (this.stopped) throw new GatewayError('GW_BACKEND_UNAVAILABLE', `backend "${this.name}" is stopped`);
    const b = this.build(era);
    this.log.info({ server: this.name, era }, 'backend era decided');
    this.current = b;
    this.era = era;
    await b.start();
    return b;
  }

  private build(era: Era): ServerBackend {
    if (era === '2025') return this.legacy();
    const m = new ModernHttpBackend(this.config, this.events, this.log, this.gatewayInfo);
    m.onEraMismatch = () => void this.reprobe();
    return m;
  }

  /** Calls started failing as if the server changed era: probe again, and switch if it did. */
  private async reprobe(): Promise<void> {
    if (this.reprobing || this.stopped) return;
    this.reprobing = true;
    try {
      const era = await probeEra(
        this.config,
        { clientCapabilities: {}, clientInfo: this.gatewayInfo },
        this.events.identityHeaders?.(this.name, undefined),
      );
      if (era === this.era || this.stopped) return;
      this.log.warn({ server: this.name, from: this.era, to: era }, 'backend changed era; switching');
      const old = this.current;
      const next = this.build(era);
      this.current = next;
      this.era = era;
      await next.start();
      await old?.close();
      (this.events.catalogChanged ?? this.events.availabilityChanged).call(this.events, this.name);
    } catch (err) {
      this.log.warn({ server: this.name, error: (err as Error).message }, 'era re-probe failed');
    } finally {
      this.reprobing = false;
    }
  }
}

function initializeRefusedWith400(err: unknown): boolean {
  const detail = (err as GatewayError | undefined)?.detail as
    { backendError?: { data?: { status?: unknown } } } | undefined;
  return detail?.backendError?.data?.status === 400;
}
