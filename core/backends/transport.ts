/**
 * The seam between the core and one backend MCP server: a framed, bidirectional JSON-RPC channel.
 *
 * An UpstreamTransport knows framing (stdio lines, Streamable HTTP POST/GET/SSE, legacy HTTP+SSE) and
 * nothing of MCP semantics: the caller performs `initialize`, id rewriting and routing. It mirrors the
 * SDK's `Transport` so either can stand in, and adds the one fact a gateway needs that the SDK hides:
 * which of our requests a server message was delivered in relation to (the POST stream it came on).
 */
import type { JsonRpcId, JsonRpcMessage } from '../../shared/mcp/jsonrpc.js';

export interface UpstreamMessageContext {
  /** Id of the request (as sent upstream) whose response stream carried this message, if any. */
  relatedRequestId?: JsonRpcId;
}

export interface UpstreamTransport {
  /** Connects (spawns, opens streams as the framing requires). Rejects with a clear error on failure. */
  start(): Promise<void>;
  /**
   * Sends one message. For a request, the response arrives through `onmessage`; a transport that cannot
   * deliver (HTTP error status, connection refused, non-JSON body) reports it by delivering a JSON-RPC
   * error response for that request id through `onmessage`, never by hanging.
   */
  send(message: JsonRpcMessage): Promise<void>;
  /**
   * Closes the channel: DELETE the HTTP session, or close stdin then SIGTERM then SIGKILL. Idempotent.
   * With `keepSession`, an HTTP transport only lets go of its connections and leaves the backend session
   * open for another gateway replica to continue.
   */
  close(options?: { keepSession?: boolean }): Promise<void>;
  /**
   * Continues a backend session another replica opened (Streamable HTTP only): no initialize, the next
   * request carries `sessionId`. Absent on transports whose sessions cannot outlive their connection.
   */
  adoptSession?(sessionId: string, protocolVersion: string): void;
  /** Tells an HTTP transport the negotiated version, to send as `MCP-Protocol-Version` from now on. */
  setProtocolVersion(version: string): void;
  /** Backend session id (Streamable HTTP `Mcp-Session-Id`), if the server issued one. */
  readonly sessionId: string | undefined;

  onmessage?: (message: JsonRpcMessage, context: UpstreamMessageContext) => void;
  onerror?: (error: Error) => void;
  /** Called once when the channel is gone for good (process exited, session ended). */
  onclose?: (reason?: Error) => void;
}
