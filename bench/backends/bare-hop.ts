/**
 * The bare hop: the thinnest HTTP reverse proxy we can write with node:http in front and an undici Pool
 * behind, i.e. the floor under any gateway. It buffers the request body (as any JSON-RPC gateway must),
 * drops hop-by-hop headers, and streams the response back (JSON or SSE alike). No parsing, no auth.
 *
 *   node dist/bench/backends/bare-hop.js --target http://127.0.0.1:M [--port N] [--connections 128]
 *
 * prints `listening http://127.0.0.1:N` on stdout when ready; the path of each request is forwarded as is.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { pathToFileURL } from 'node:url';
import { Pool } from 'undici';
import { flag } from './surface.js';

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'host',
]);

export interface RunningHop {
  url: string;
  close(): Promise<void>;
}

export function startBareHop(opts: {
  target: string;
  port?: number;
  host?: string;
  connections?: number;
}): Promise<RunningHop> {
  const host = opts.host ?? '127.0.0.1';
  const pool = new Pool(new URL(opts.target).origin, {
    connections: opts.connections ?? 128,
    keepAliveTimeout: 60_000,
    keepAliveMaxTimeout: 600_000,
  });

  const server = http.createServer((req, res) => {
    const headers: Record<string, string | string[]> = {};
    for (const [k, v] of Object.entries(req.headers)) {
      if (v !== undefined && !HOP_BY_HOP.has(k)) headers[k] = v;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = chunks.length === 0 ? null : chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
      pool.request(
        {
          path: req.url ?? '/',
          method: (req.method ?? 'GET') as 'POST',
          headers,
          body,
        },
        (err, data) => {
          if (err) {
            if (!res.headersSent) {
              res.writeHead(502, { 'content-type': 'text/plain' });
              res.end(`bad gateway: ${err.message}\n`);
            } else res.destroy(err);
            return;
          }
          const out: http.OutgoingHttpHeaders = {};
          for (const [k, v] of Object.entries(data.headers)) {
            if (v !== undefined && !HOP_BY_HOP.has(k)) out[k] = v;
          }
          res.writeHead(data.statusCode, out);
          // pipe, not stream.pipeline: pipeline aborts an AbortController when it finishes, and the
          // DOMException that makes (with its stack) cost this hop about a tenth of its CPU.
          data.body.on('error', (e) => res.destroy(e));
          res.on('close', () => data.body.destroy());
          data.body.pipe(res);
        },
      );
    });
  });
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;

  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, host, () => {
      const { port } = server.address() as AddressInfo;
      resolve({
        url: `http://${host}:${port}`,
        close: async () => {
          server.closeAllConnections();
          await new Promise<void>((done) => server.close(() => done()));
          await pool.close();
        },
      });
    });
  });
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const argv = process.argv.slice(2);
  const target = flag(argv, 'target');
  if (!target) {
    process.stderr.write('usage: bare-hop --target http://127.0.0.1:M [--port N] [--connections C]\n');
    process.exit(2);
  }
  const running = await startBareHop({
    target,
    port: Number(flag(argv, 'port') ?? 0),
    host: flag(argv, 'host') ?? '127.0.0.1',
    connections: Number(flag(argv, 'connections') ?? 128),
  });
  process.stdout.write(`listening ${running.url}\n`);
  const stop = (): void => {
    void running.close().then(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
