/**
 * A BackendClient toward a 2026-07-28 server: `server/discover` instead of initialize (its answer
 * stands in as the InitializeResult the rest of the core reads), and the 2026 envelope on every
 * request, built from the client the call is made for (capabilities, client info, log level) or, for
 * the gateway's own calls (catalogs, probes), from the gateway itself.
 */
import { GatewayError } from '../../shared/errors.js';
import { RpcCode, type JsonObject, type JsonRpcResponse } from '../../shared/mcp/jsonrpc.js';
import {
  META_SERVER_INFO,
  MODERN_CODES,
  MODERN_VERSION,
  withEnvelope,
  type EnvelopeOwner,
} from '../../shared/mcp/eras.js';
import {
  BackendClient,
  type BackendClientHandlers,
  type CallOptions,
  type InitializeResult,
} from './backend-client.js';
import type { UpstreamTransport } from './transport.js';

/**
 * Answers no 2026 server gives to a well-formed 2026 request: the version refused (-32022), or a 2025
 * server's "no session" (-32000) and "session not found" (-32001).
 */
const ERA_MISMATCH = new Set<number>([
  MODERN_CODES.UnsupportedVersion,
  RpcCode.ConnectionClosed,
  RpcCode.SessionNotFound,
]);

export class ModernBackendClient extends BackendClient {
  /** Called when the backend answers as if it no longer spoke 2026-07-28: time to re-probe. */
  onEraMismatch?: () => void;

  constructor(
    server: string,
    private readonly upstream: UpstreamTransport,
    handlers: BackendClientHandlers,
    private readonly gateway: EnvelopeOwner,
  ) {
    super(server, upstream, handlers);
  }

  /** Starts the transport and asks `server/discover`; the arguments of a 2025 initialize are unused. */
  override async connect(_init: unknown, timeoutMs: number): Promise<InitializeResult> {
    await this.upstream.start();
    const res = await this.call('server/discover', {}, { timeoutMs });
    if ('error' in res)
      throw new GatewayError(
        'GW_BACKEND_UNAVAILABLE',
        `backend "${this.server}" refused server/discover: ${res.error.message}`,
        { server: this.server, backendError: res.error },
      );
    const r = res.result;
    const versions = Array.isArray(r.supportedVersions) ? r.supportedVersions : [];
    if (!versions.includes(MODERN_VERSION) || typeof r.capabilities !== 'object' || r.capabilities === null)
      throw new GatewayError(
        'GW_BACKEND_PROTOCOL_ERROR',
        `backend "${this.server}" sent a DiscoverResult without ${MODERN_VERSION} or capabilities`,
        { server: this.server },
      );
    const meta = r._meta as JsonObject | undefined;
    const info = meta?.[META_SERVER_INFO];
    const init: InitializeResult = {
      protocolVersion: MODERN_VERSION,
      capabilities: r.capabilities as JsonObject,
      serverInfo:
        typeof info === 'object' && info !== null ? (info as JsonObject) : { name: this.server, version: '' },
    };
    if (typeof r.instructions === 'string') init.instructions = r.instructions;
    this.initializeResult = init;
    return init;
  }

  override call(method: string, params: JsonObject | undefined, opts: CallOptions): Promise<JsonRpcResponse> {
    const answer = super.call(method, withEnvelope(params, opts.owner ?? this.gateway), opts);
    if (!this.onEraMismatch) return answer;
    return answer.then((res) => {
      if ('error' in res && ERA_MISMATCH.has(res.error.code)) this.onEraMismatch?.();
      return res;
    });
  }
}
