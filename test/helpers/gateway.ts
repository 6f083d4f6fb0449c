import { validateConfig } from '../../shared/config/load.js';
import { createLogger } from '../../shared/log.js';
import { startSingleNode, type RunningNode } from '../../cli/single.js';

/** Starts a single node in-process on a free loopback port with the given servers and settings. */
export async function startGateway(doc: Record<string, unknown>): Promise<RunningNode> {
  const config = validateConfig(
    {
      role: 'single',
      listen: { host: '127.0.0.1', port: 0 },
      log: { level: process.env.MCPGW_TEST_LOG ?? 'silent' },
      // Nodes of protocol tests keep nothing: the embedded store's start-up (seconds of WASM) is for
      // the store tests, which ask for it.
      store: { kind: 'memory' },
      ...doc,
    },
    'test',
    {},
  );
  return startSingleNode(config, { log: createLogger(config.log.level) });
}

export interface RawReply {
  status: number;
  headers: Headers;
  text: string;
  json: any;
}

/** One raw HTTP request against the gateway, for tests that check the transport itself. */
export async function raw(
  url: string,
  init: { method?: string; headers?: Record<string, string>; body?: unknown },
): Promise<RawReply> {
  const body =
    init.body === undefined
      ? undefined
      : typeof init.body === 'string'
        ? init.body
        : JSON.stringify(init.body);
  const res = await fetch(url, { method: init.method ?? 'POST', headers: init.headers, body });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

export const MCP_HEADERS = {
  'content-type': 'application/json',
  accept: 'application/json, text/event-stream',
};

/**
 * Performs initialize + initialized over raw HTTP and returns the session id. `headers` go on both
 * requests (a test caller's identity, say); the notification must be accepted (202).
 */
export async function rawSession(
  url: string,
  capabilities: Record<string, unknown> = {},
  headers: Record<string, string> = {},
): Promise<string> {
  const r = await raw(url, {
    headers: { ...MCP_HEADERS, ...headers },
    body: {
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: { protocolVersion: '2025-11-25', capabilities, clientInfo: { name: 'raw-test', version: '1' } },
    },
  });
  const sid = r.headers.get('mcp-session-id');
  if (r.status !== 200 || !sid) throw new Error(`initialize failed: ${r.status} ${r.text}`);
  const n = await raw(url, {
    headers: { ...MCP_HEADERS, ...headers, 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' },
    body: { jsonrpc: '2.0', method: 'notifications/initialized' },
  });
  if (n.status !== 202) throw new Error(`notifications/initialized refused: ${n.status} ${n.text}`);
  return sid;
}

/** Reads the JSON-RPC messages out of an SSE body. */
export function sseMessages(text: string): any[] {
  return text
    .split('\n\n')
    .map((ev) =>
      ev
        .split('\n')
        .filter((l) => l.startsWith('data:'))
        .map((l) => l.slice(5).trim())
        .join('\n'),
    )
    .filter((d) => d.length > 0)
    .map((d) => JSON.parse(d));
}
