/**
 * Many MCP servers in one process, for the aggregate benchmarks: `--servers N` Streamable HTTP endpoints
 * (`/s/0/mcp` ... `/s/{N-1}/mcp`) on one node:http listener, each with `--tools M` tools (`tool_0` ...,
 * each with a small input schema, the size of a typical tool definition). Raw JSON-RPC, JSON answers only.
 *
 *   node dist/bench/backends/many-servers.js [--servers 100] [--tools 50] [--port N] [--host 127.0.0.1]
 *
 * prints `listening http://127.0.0.1:N/s` on stdout when ready (append `/{i}/mcp`). Answers initialize
 * (with an `Mcp-Session-Id`, tools capability), ping, tools/list (one page of every tool) and tools/call of
 * any of its tools (echoes `message`); counts tools/list calls, readable at `GET /stats`.
 */
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { errorBody, flag, handle, type JsonRpcMessage } from './surface.js';

function toolsOf(server: number, count: number): object[] {
  return Array.from({ length: count }, (_, t) => ({
    name: `tool_${t}`,
    description: `Tool ${t} of server ${server}: looks a record up by id and returns it as text.`,
    inputSchema: {
      type: 'object',
      properties: {
        id: { type: 'string', description: 'The record id' },
        verbose: { type: 'boolean', description: 'Include every field' },
      },
      required: ['id'],
    },
    annotations: { readOnlyHint: true },
  }));
}

function send(res: http.ServerResponse, status: number, body?: object, headers?: object): void {
  const buf = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  res.writeHead(status, {
    ...(buf && { 'content-type': 'application/json', 'content-length': buf.length }),
    ...(headers as http.OutgoingHttpHeaders | undefined),
  });
  res.end(buf);
}

const argv = process.argv.slice(2);
const servers = Number(flag(argv, 'servers') ?? 100);
const tools = Number(flag(argv, 'tools') ?? 50);
if (!Number.isInteger(servers) || servers < 1 || !Number.isInteger(tools) || tools < 1) {
  process.stderr.write('--servers and --tools must be positive integers\n');
  process.exit(2);
}
const lists = Array.from({ length: servers }, (_, i) => JSON.stringify({ tools: toolsOf(i, tools) }));
const sessions = new Set<string>();
let listCalls = 0;
const PATH = /^\/s\/(\d+)\/mcp(?:\?.*)?$/;

const server = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/stats') return send(res, 200, { listCalls });
  const m = PATH.exec(req.url ?? '');
  const index = m ? Number(m[1]) : -1;
  if (!(index >= 0 && index < servers)) return send(res, 404, errorBody(null, -32600, 'Not found'));
  const sid = req.headers['mcp-session-id'];
  if (req.method === 'DELETE') {
    if (typeof sid === 'string' && sessions.delete(sid)) send(res, 200);
    else send(res, 404, errorBody(null, -32001, 'Session not found'));
    return;
  }
  if (req.method !== 'POST') {
    req.resume();
    return send(res, 405, undefined, { allow: 'POST, DELETE' });
  }
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    let msg: JsonRpcMessage;
    try {
      msg = JSON.parse(Buffer.concat(chunks).toString()) as JsonRpcMessage;
    } catch {
      return send(res, 400, errorBody(null, -32700, 'Parse error'));
    }
    if (msg === null || typeof msg !== 'object' || Array.isArray(msg))
      return send(res, 400, errorBody(null, -32600, 'Invalid Request: one JSON-RPC object per POST'));
    if (msg.method !== 'initialize' && (typeof sid !== 'string' || !sessions.has(sid)))
      return send(res, 404, errorBody(null, -32001, 'Session not found'));
    if (msg.method === 'tools/list' && msg.id !== undefined && msg.id !== null) {
      listCalls++;
      const buf = Buffer.from(`{"jsonrpc":"2.0","id":${JSON.stringify(msg.id)},"result":${lists[index]}}`);
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': buf.length });
      return void res.end(buf);
    }
    if (msg.method === 'tools/call') {
      // Any of this server's tools answers like echo.
      const p = msg.params as { name?: unknown } | undefined;
      if (typeof p?.name === 'string' && /^tool_\d+$/.test(p.name) && Number(p.name.slice(5)) < tools)
        msg = { ...msg, params: { ...(msg.params as object), name: 'echo' } };
    }
    const reply = handle(msg, `bench-${index}`);
    if (reply === undefined) return send(res, 202);
    if (reply.initialized !== undefined) {
      const id = randomUUID();
      sessions.add(id);
      return send(res, 200, reply.body, { 'mcp-session-id': id });
    }
    send(res, 200, reply.body);
  });
});
server.keepAliveTimeout = 65_000;
server.listen(Number(flag(argv, 'port') ?? 0), flag(argv, 'host') ?? '127.0.0.1', () => {
  const { address, port } = server.address() as AddressInfo;
  process.stdout.write(`listening http://${address}:${port}/s\n`);
});
const stop = (): void => {
  server.closeAllConnections();
  server.close(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
