/**
 * The MCP surface the benchmark backends share: raw JSON-RPC, no SDK, as little work per message as we can
 * manage, so that what the benchmark measures is the transport and whatever sits in front of it.
 *
 * Methods: initialize, ping, tools/list (one tool, `echo`), tools/call echo; notifications and responses
 * are accepted and ignored; anything else is -32601.
 */

export const SUPPORTED_VERSIONS = ['2025-11-25', '2025-06-18', '2025-03-26'] as const;
export const LATEST_VERSION = SUPPORTED_VERSIONS[0];

export type JsonRpcId = string | number;

export interface JsonRpcMessage {
  jsonrpc?: unknown;
  id?: JsonRpcId | null;
  method?: unknown;
  params?: unknown;
  result?: unknown;
  error?: unknown;
}

export const ECHO_TOOL = {
  name: 'echo',
  title: 'Echo',
  description: 'Returns its message unchanged.',
  inputSchema: {
    type: 'object',
    properties: { message: { type: 'string', description: 'The text to send back' } },
    required: ['message'],
  },
  annotations: { readOnlyHint: true, openWorldHint: false },
} as const;

const TOOLS_LIST_RESULT = { tools: [ECHO_TOOL] };

function negotiate(params: unknown): string {
  const requested = (params as { protocolVersion?: unknown } | undefined)?.protocolVersion;
  return typeof requested === 'string' && (SUPPORTED_VERSIONS as readonly string[]).includes(requested)
    ? requested
    : LATEST_VERSION;
}

export interface Reply {
  /** The JSON-RPC response object. */
  body: object;
  /** Set when this answered `initialize`: the protocol version negotiated. */
  initialized?: string;
}

/**
 * Answers one parsed message. Returns undefined for notifications and responses (nothing to send).
 */
export function handle(msg: JsonRpcMessage, serverName: string): Reply | undefined {
  const id = msg.id;
  if (id === undefined || id === null || typeof msg.method !== 'string') return undefined;
  switch (msg.method) {
    case 'tools/call': {
      const p = msg.params as { name?: unknown; arguments?: { message?: unknown } } | undefined;
      if (p?.name !== 'echo') {
        return { body: errorBody(id, -32602, `Unknown tool: ${String(p?.name)}`) };
      }
      const message = p.arguments?.message;
      if (typeof message !== 'string') {
        return { body: errorBody(id, -32602, 'echo: "message" must be a string') };
      }
      return { body: { jsonrpc: '2.0', id, result: { content: [{ type: 'text', text: message }] } } };
    }
    case 'ping':
      return { body: { jsonrpc: '2.0', id, result: {} } };
    case 'tools/list':
      return { body: { jsonrpc: '2.0', id, result: TOOLS_LIST_RESULT } };
    case 'initialize': {
      const version = negotiate(msg.params);
      return {
        initialized: version,
        body: {
          jsonrpc: '2.0',
          id,
          result: {
            protocolVersion: version,
            capabilities: { tools: { listChanged: false } },
            serverInfo: { name: serverName, version: '1.0.0' },
          },
        },
      };
    }
    default:
      return { body: errorBody(id, -32601, `Method not found: ${msg.method}`) };
  }
}

export function errorBody(id: JsonRpcId | null, code: number, message: string): object {
  return { jsonrpc: '2.0', id, error: { code, message } };
}

/** `--port 1234` / `--port=1234` style flags; returns undefined when absent. */
export function flag(argv: readonly string[], name: string): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === `--${name}`) return argv[i + 1];
    if (a?.startsWith(`--${name}=`)) return a.slice(name.length + 3);
  }
  return undefined;
}
