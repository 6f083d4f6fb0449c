/**
 * A round-robin HTTP balancer written for the tests: each request goes to the next upstream in turn (the
 * worst case for session affinity), with the response streamed back as it arrives. An upstream that
 * refuses the connection is skipped, as a health-checked balancer would. It records which upstream served
 * each request and every JSON-RPC method and session id it saw.
 */
import { request as httpRequest, createServer, type IncomingMessage, type Server } from 'node:http';

export interface Routed {
  upstream: number;
  method: string;
  rpcMethod?: string;
  sessionId?: string;
}

export interface RoundRobinProxy {
  url: string;
  routed: Routed[];
  close(): Promise<void>;
}

export async function startRoundRobinProxy(upstreams: string[]): Promise<RoundRobinProxy> {
  let next = 0;
  const routed: Routed[] = [];
  const server: Server = createServer(async (req, res) => {
    const body = await readBody(req);
    let rpcMethod: string | undefined;
    try {
      rpcMethod = body.length > 0 ? (JSON.parse(body.toString()) as { method?: string }).method : undefined;
    } catch {
      rpcMethod = undefined;
    }
    const sessionId = req.headers['mcp-session-id'] as string | undefined;
    for (let tries = 0; tries < upstreams.length; tries++) {
      const i = next++ % upstreams.length;
      const target = new URL(req.url ?? '/', upstreams[i]);
      const ok = await new Promise<boolean>((resolve) => {
        const up = httpRequest(
          target,
          { method: req.method, headers: { ...req.headers, host: target.host } },
          (upRes) => {
            routed.push({ upstream: i, method: req.method ?? '', rpcMethod, sessionId });
            res.writeHead(upRes.statusCode ?? 502, upRes.headers);
            upRes.pipe(res);
            // The upstream died mid-response: the client sees its connection drop, as behind a real balancer.
            upRes.on('error', () => res.destroy());
            upRes.on('aborted', () => res.destroy());
            resolve(true);
          },
        );
        up.on('error', () => resolve(false));
        res.on('close', () => up.destroy());
        up.end(body);
      });
      if (ok) return;
    }
    res.writeHead(502).end('no upstream');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    routed,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** A request's whole body. */
export function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}
