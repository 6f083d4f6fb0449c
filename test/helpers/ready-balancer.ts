/**
 * A loopback HTTP load balancer for the tests, behaving like a Kubernetes Service with readiness probes in
 * front of the edges: it polls each upstream's GET /readyz and sends each request (round robin) only to
 * those answering 200. It is honest about retries: only a refused connection (nothing was sent) is tried
 * on the next upstream; a request that reached a gateway and failed there, or lost its connection, fails
 * for the client (502 or a dropped response). Connections to the upstreams are pooled (keep-alive).
 */
import {
  Agent,
  createServer,
  request as httpRequest,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { readBody } from './round-robin-proxy.js';

export interface Forwarded {
  upstream: number;
  method: string;
  rpcMethod?: string;
  status: number;
}

export interface ReadyBalancer {
  url: string;
  /** Every request that got an answer from an upstream. */
  forwarded: Forwarded[];
  /** Requests the balancer itself failed (no upstream ready, an upstream lost mid-request). */
  failed: { method: string; rpcMethod?: string; reason: string }[];
  /** Refused connections tried again on another upstream. */
  retriedRefused: number;
  /** Which upstreams the balancer currently sees ready. */
  ready(): boolean[];
  close(): Promise<void>;
}

export async function startReadyBalancer(upstreams: string[], probeMs = 100): Promise<ReadyBalancer> {
  const ready = upstreams.map(() => false);
  const agents = upstreams.map(() => new Agent({ keepAlive: true }));
  const forwarded: Forwarded[] = [];
  const failed: ReadyBalancer['failed'] = [];
  let retriedRefused = 0;
  let next = 0;
  let closed = false;

  const probe = async (i: number) => {
    ready[i] = await fetch(`${upstreams[i]}/readyz`, { signal: AbortSignal.timeout(2_000) }).then(
      (r) => {
        void r.body?.cancel();
        return r.status === 200;
      },
      () => false,
    );
  };
  await Promise.all(upstreams.map((_u, i) => probe(i)));
  const prober = setInterval(() => {
    if (!closed) for (let i = 0; i < upstreams.length; i++) void probe(i);
  }, probeMs);

  const pick = (skip: Set<number>): number | undefined => {
    for (let k = 0; k < upstreams.length; k++) {
      const i = next++ % upstreams.length;
      if (ready[i] && !skip.has(i)) return i;
    }
    return undefined;
  };

  const server: Server = createServer(async (req, res) => {
    const body = await readBody(req);
    let rpcMethod: string | undefined;
    try {
      rpcMethod = body.length > 0 ? (JSON.parse(body.toString()) as { method?: string }).method : undefined;
    } catch {
      rpcMethod = undefined;
    }
    const method = req.method ?? '';
    const refused = new Set<number>();
    for (;;) {
      const i = pick(refused);
      if (i === undefined) {
        failed.push({ method, ...(rpcMethod && { rpcMethod }), reason: 'no upstream ready' });
        return void res.writeHead(503).end('no upstream ready');
      }
      const outcome = await forward(i, req, res, body, rpcMethod);
      if (outcome !== 'refused') return;
      // The connection was refused: nothing reached the gateway, another upstream may take it.
      refused.add(i);
      ready[i] = false;
      retriedRefused++;
    }
  });

  function forward(
    i: number,
    req: IncomingMessage,
    res: ServerResponse,
    body: Buffer,
    rpcMethod: string | undefined,
  ): Promise<'done' | 'refused'> {
    const target = new URL(req.url ?? '/', upstreams[i]);
    const method = req.method ?? '';
    return new Promise((resolve) => {
      const headers = { ...req.headers, host: target.host };
      delete headers.connection;
      const up = httpRequest(target, { method, headers, agent: agents[i] }, (upRes) => {
        forwarded.push({
          upstream: i,
          method,
          ...(rpcMethod && { rpcMethod }),
          status: upRes.statusCode ?? 0,
        });
        const h = { ...upRes.headers };
        delete h.connection;
        delete h['keep-alive'];
        res.writeHead(upRes.statusCode ?? 502, h);
        res.flushHeaders();
        upRes.pipe(res);
        // Lost mid-response: the client sees its connection drop, as behind a real balancer.
        const lost = () => {
          if (!upRes.complete) {
            failed.push({ method, ...(rpcMethod && { rpcMethod }), reason: 'upstream lost mid-response' });
            res.destroy();
          }
        };
        upRes.on('error', lost);
        upRes.on('aborted', lost);
        resolve('done');
      });
      up.on('error', (err: Error & { code?: string }) => {
        if (err.code === 'ECONNREFUSED') return resolve('refused');
        if (!res.headersSent) {
          failed.push({ method, ...(rpcMethod && { rpcMethod }), reason: `${err.code ?? err.message}` });
          res.writeHead(502).end(`upstream failed: ${err.code ?? err.message}`);
        } else res.destroy();
        resolve('done');
      });
      res.on('close', () => {
        if (!res.writableFinished) up.destroy();
      });
      up.end(body);
    });
  }

  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    forwarded,
    failed,
    get retriedRefused() {
      return retriedRefused;
    },
    ready: () => [...ready],
    close: () =>
      new Promise<void>((r) => {
        closed = true;
        clearInterval(prober);
        for (const a of agents) a.destroy();
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
