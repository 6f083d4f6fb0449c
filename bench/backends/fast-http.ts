/**
 * A minimal, fast Streamable HTTP MCP backend on node:http (raw JSON-RPC, no SDK, JSON responses only).
 *
 *   node dist/bench/backends/fast-http.js [--port N] [--host 127.0.0.1]
 *
 * prints `listening http://127.0.0.1:N/mcp` on stdout when ready. POST /mcp answers initialize (with an
 * `Mcp-Session-Id`), ping, tools/list and tools/call echo; notifications and responses get 202; GET is 405;
 * DELETE ends the session. Requests after initialize must carry a known session id (400 / 404 otherwise),
 * which keeps load generators and gateways honest at the cost of one Set lookup.
 */
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { pathToFileURL } from 'node:url';
import { errorBody, flag, handle, type JsonRpcMessage } from './surface.js';

export interface RunningServer {
  url: string;
  close(): Promise<void>;
}

const ENDPOINT = '/mcp';

function send(res: http.ServerResponse, status: number, body: object | undefined, headers?: object): void {
  if (body === undefined) {
    res.writeHead(status, headers as http.OutgoingHttpHeaders | undefined);
    res.end();
    return;
  }
  const buf = Buffer.from(JSON.stringify(body));
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': buf.length,
    ...(headers as http.OutgoingHttpHeaders | undefined),
  });
  res.end(buf);
}

export function startFastHttp(opts: { port?: number; host?: string } = {}): Promise<RunningServer> {
  const host = opts.host ?? '127.0.0.1';
  const sessions = new Set<string>();

  const server = http.createServer((req, res) => {
    const path = req.url ?? '/';
    if (path !== ENDPOINT && !path.startsWith(`${ENDPOINT}?`)) {
      send(res, 404, errorBody(null, -32600, 'Not found'));
      return;
    }
    const sid = req.headers['mcp-session-id'];
    if (req.method === 'DELETE') {
      if (typeof sid === 'string' && sessions.delete(sid)) send(res, 200, undefined);
      else send(res, 404, errorBody(null, -32001, 'Session not found'));
      return;
    }
    if (req.method !== 'POST') {
      req.resume();
      send(res, 405, undefined, { allow: 'POST, DELETE' });
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      let msg: JsonRpcMessage;
      try {
        msg = JSON.parse(chunks.length === 1 ? chunks[0]!.toString() : Buffer.concat(chunks).toString());
      } catch {
        send(res, 400, errorBody(null, -32700, 'Parse error'));
        return;
      }
      if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) {
        send(res, 400, errorBody(null, -32600, 'Invalid Request: one JSON-RPC object per POST'));
        return;
      }
      if (msg.method !== 'initialize') {
        if (typeof sid !== 'string') {
          send(res, 400, errorBody(null, -32000, 'Bad Request: Mcp-Session-Id header is required'));
          return;
        }
        if (!sessions.has(sid)) {
          send(res, 404, errorBody(null, -32001, 'Session not found'));
          return;
        }
      }
      const reply = handle(msg, 'fast-http');
      if (reply === undefined) {
        send(res, 202, undefined);
        return;
      }
      if (reply.initialized !== undefined) {
        const id = randomUUID();
        sessions.add(id);
        send(res, 200, reply.body, { 'mcp-session-id': id });
        return;
      }
      send(res, 200, reply.body);
    });
  });
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;

  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, host, () => {
      const { port } = server.address() as AddressInfo;
      resolve({
        url: `http://${host}:${port}${ENDPOINT}`,
        close: () =>
          new Promise<void>((done) => {
            server.closeAllConnections();
            server.close(() => done());
          }),
      });
    });
  });
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const argv = process.argv.slice(2);
  const running = await startFastHttp({
    port: Number(flag(argv, 'port') ?? 0),
    host: flag(argv, 'host') ?? '127.0.0.1',
  });
  process.stdout.write(`listening ${running.url}\n`);
  const stop = (): void => {
    void running.close().then(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
