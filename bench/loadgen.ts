/**
 * Load generator: raw JSON-RPC over keep-alive HTTP (undici Pool, one connection per virtual client).
 *
 * Each virtual client performs the MCP handshake (initialize, read Mcp-Session-Id, notifications/initialized),
 * then sends `tools/call echo` back to back with `MCP-Protocol-Version` and `Mcp-Session-Id`, accepting
 * `application/json` and `text/event-stream` answers alike. After a warm-up, each request's latency (hrtime,
 * from send until its JSON-RPC response has been read and checked) is recorded for a fixed duration or a
 * fixed count. Every response is checked (status, id, echoed text); a virtual client stops at its first
 * error, and the result carries the count and the first messages.
 *
 *   node dist/bench/loadgen.js --url http://127.0.0.1:N/mcp [--concurrency 16] [--duration 5 | --requests N]
 *                              [--warmup 1] [--protocol-version 2025-11-25]
 */
import { pathToFileURL } from 'node:url';
import { Pool } from 'undici';

export interface LoadOptions {
  /** The MCP endpoint, e.g. http://127.0.0.1:8080/mcp */
  url: string;
  concurrency: number;
  /** Measured duration (ms); ignored when `requests` is set. */
  durationMs?: number;
  /** Measure a fixed number of requests (across all virtual clients) instead of a duration. */
  requests?: number;
  warmupMs: number;
  protocolVersion?: string;
  /** Headers every request carries (e.g. `authorization` toward an authenticating gateway). */
  headers?: Record<string, string>;
  /** Per-request limit before it counts as an error (ms). */
  timeoutMs?: number;
  /** Called when the measured window opens and closes (e.g. to sample CPU time of the processes under test). */
  onMeasureStart?: () => void;
  onMeasureEnd?: () => void;
}

export interface LoadResult {
  url: string;
  concurrency: number;
  /** Requests completed and recorded in the measured window. */
  requests: number;
  /** Length of the measured window, ms. */
  windowMs: number;
  rps: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
  errors: number;
  errorSamples: string[];
  /** How the answers came: counts of application/json and text/event-stream bodies (measured window). */
  json: number;
  sse: number;
  protocolVersion: string | undefined;
}

const ACCEPT = 'application/json, text/event-stream';

class LoadError extends Error {}

interface RpcResponse {
  jsonrpc?: unknown;
  id?: unknown;
  result?: unknown;
  error?: { code?: unknown; message?: unknown };
}

/** Finds the JSON-RPC response with `id` among the events of an SSE text; returns undefined if absent. */
function findInSse(events: string, id: number): RpcResponse | undefined {
  for (const block of events.split(/\r?\n\r?\n/)) {
    let data = '';
    for (const line of block.split(/\r?\n/)) {
      if (line.startsWith('data:')) {
        const v = line.charCodeAt(5) === 32 ? line.slice(6) : line.slice(5);
        data = data.length === 0 ? v : `${data}\n${v}`;
      }
    }
    if (data.length === 0) continue; // priming event, comment or retry-only block
    let msg: RpcResponse;
    try {
      msg = JSON.parse(data) as RpcResponse;
    } catch {
      throw new LoadError(`unparseable SSE data: ${data.slice(0, 200)}`);
    }
    if (msg.id === id && (msg.result !== undefined || msg.error !== undefined)) return msg;
  }
  return undefined;
}

interface Exchange {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  response: RpcResponse | undefined;
  /** hrtime (ns) when the response was available. */
  doneAt: bigint;
  kind: 'json' | 'sse' | 'none';
}

async function post(
  pool: Pool,
  path: string,
  headers: Record<string, string>,
  body: object,
  id: number | undefined,
  timeoutMs: number,
): Promise<Exchange> {
  const res = await pool.request({
    path,
    method: 'POST',
    headers,
    body: JSON.stringify(body),
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
  });
  const ct = String(res.headers['content-type'] ?? '');
  if (id === undefined || res.statusCode !== 200) {
    const text = await res.body.text();
    if (id !== undefined || res.statusCode >= 300) {
      throw new LoadError(`HTTP ${res.statusCode} (${ct}) ${text.slice(0, 300)}`);
    }
    return { status: res.statusCode, headers: res.headers, response: undefined, doneAt: 0n, kind: 'none' };
  }
  if (ct.startsWith('application/json')) {
    const text = await res.body.text();
    const doneAt = process.hrtime.bigint();
    let msg: RpcResponse;
    try {
      msg = JSON.parse(text) as RpcResponse;
    } catch {
      throw new LoadError(`unparseable JSON body: ${text.slice(0, 300)}`);
    }
    return { status: 200, headers: res.headers, response: msg, doneAt, kind: 'json' };
  }
  if (ct.startsWith('text/event-stream')) {
    // Read incrementally: the response is available once its event is complete, but we drain the stream
    // to its end so the connection can be reused (a well-behaved server ends it after the response).
    let buf = '';
    let scanned = 0;
    let found: RpcResponse | undefined;
    let doneAt = 0n;
    res.body.setEncoding('utf8');
    for await (const chunk of res.body as AsyncIterable<string>) {
      if (found !== undefined) continue;
      buf += chunk;
      const lastBreak = Math.max(buf.lastIndexOf('\n\n'), buf.lastIndexOf('\r\n\r\n'));
      if (lastBreak < scanned) continue;
      found = findInSse(buf.slice(scanned, lastBreak), id);
      scanned = lastBreak;
      if (found !== undefined) doneAt = process.hrtime.bigint();
    }
    if (found === undefined) {
      found = findInSse(buf.slice(scanned), id);
      doneAt = process.hrtime.bigint();
    }
    if (found === undefined)
      throw new LoadError(`SSE stream ended without response id ${id}: ${buf.slice(0, 300)}`);
    return { status: 200, headers: res.headers, response: found, doneAt, kind: 'sse' };
  }
  const text = await res.body.text();
  throw new LoadError(`unexpected content-type "${ct}": ${text.slice(0, 200)}`);
}

function quantile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i]!;
}

export async function runLoad(opts: LoadOptions): Promise<LoadResult> {
  const target = new URL(opts.url);
  const path = target.pathname + target.search;
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const wantVersion = opts.protocolVersion ?? '2025-11-25';
  const pool = new Pool(target.origin, {
    connections: opts.concurrency,
    pipelining: 1,
    keepAliveTimeout: 30_000,
    keepAliveMaxTimeout: 600_000,
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
  });

  let errors = 0;
  const errorSamples: string[] = [];
  const fail = (who: string, err: unknown): void => {
    errors++;
    if (errorSamples.length < 8) {
      errorSamples.push(`${who}: ${err instanceof Error ? err.message : String(err)}`);
    }
  };

  // Latencies of the measured window (ms), preallocated and grown as needed.
  let lat = new Float64Array(1 << 16);
  let n = 0;
  let json = 0;
  let sse = 0;
  type Phase = 'warmup' | 'measure' | 'done';
  let phase: Phase = 'warmup';
  let measureStart = 0n;
  let lastDone = 0n;
  let negotiated: string | undefined;

  const sessions: (string | undefined)[] = [];

  async function handshake(c: number): Promise<Record<string, string> | undefined> {
    const base: Record<string, string> = {
      ...opts.headers,
      'content-type': 'application/json',
      accept: ACCEPT,
    };
    const init = await post(
      pool,
      path,
      base,
      {
        jsonrpc: '2.0',
        id: 0,
        method: 'initialize',
        params: {
          protocolVersion: wantVersion,
          capabilities: {},
          clientInfo: { name: 'mcpgw-bench', version: '1.0.0' },
        },
      },
      0,
      timeoutMs,
    );
    const r = init.response;
    if (r?.error !== undefined || r?.result === undefined) {
      throw new LoadError(`initialize failed: ${JSON.stringify(r).slice(0, 300)}`);
    }
    const version = (r.result as { protocolVersion?: unknown }).protocolVersion;
    if (typeof version !== 'string') throw new LoadError('initialize result has no protocolVersion');
    negotiated = version;
    const sid = init.headers['mcp-session-id'];
    const headers: Record<string, string> = { ...base, 'mcp-protocol-version': version };
    if (typeof sid === 'string') headers['mcp-session-id'] = sid;
    sessions[c] = typeof sid === 'string' ? sid : undefined;
    const ack = await post(
      pool,
      path,
      headers,
      { jsonrpc: '2.0', method: 'notifications/initialized' },
      undefined,
      timeoutMs,
    );
    if (ack.status !== 202 && ack.status !== 200 && ack.status !== 204) {
      throw new LoadError(`notifications/initialized answered HTTP ${ack.status}`);
    }
    return headers;
  }

  async function client(c: number, headers: Record<string, string>): Promise<void> {
    let id = 1;
    while (phase !== 'done') {
      const reqId = id++;
      const text = `hello ${c}:${reqId}`;
      const startPhase = phase;
      const t0 = process.hrtime.bigint();
      const ex = await post(
        pool,
        path,
        headers,
        {
          jsonrpc: '2.0',
          id: reqId,
          method: 'tools/call',
          params: { name: 'echo', arguments: { message: text } },
        },
        reqId,
        timeoutMs,
      );
      const r = ex.response;
      if (r === undefined) throw new LoadError('no response');
      if (r.error !== undefined)
        throw new LoadError(`JSON-RPC error ${JSON.stringify(r.error).slice(0, 300)}`);
      const got = (r.result as { content?: { text?: unknown }[] } | undefined)?.content?.[0]?.text;
      if (got !== text) throw new LoadError(`echo mismatch: sent "${text}", got ${JSON.stringify(got)}`);
      if (startPhase === 'measure' && phase !== 'warmup') {
        if (n === lat.length) {
          const bigger = new Float64Array(lat.length * 2);
          bigger.set(lat);
          lat = bigger;
        }
        lat[n++] = Number(ex.doneAt - t0) / 1e6;
        if (ex.doneAt > lastDone) lastDone = ex.doneAt;
        if (ex.kind === 'json') json++;
        else sse++;
        if (opts.requests !== undefined && n >= opts.requests) phase = 'done';
      }
    }
  }

  const clients = Array.from({ length: opts.concurrency }, (_, c) => c);
  const ready = await Promise.all(
    clients.map((c) =>
      handshake(c).catch((err: unknown) => {
        fail(`client ${c} handshake`, err);
        return undefined;
      }),
    ),
  );

  let timer: NodeJS.Timeout | undefined;
  if (errors === 0) {
    const running = clients.map((c) =>
      client(c, ready[c]!).catch((err: unknown) => fail(`client ${c}`, err)),
    );
    const all = Promise.all(running);
    await Promise.race([all, new Promise((r) => (timer = setTimeout(r, opts.warmupMs)))]);
    clearTimeout(timer);
    if (phase === 'warmup') {
      opts.onMeasureStart?.();
      measureStart = process.hrtime.bigint();
      lastDone = measureStart;
      phase = 'measure';
      if (opts.requests === undefined) {
        const durationMs = opts.durationMs ?? 5000;
        await Promise.race([all, new Promise((r) => (timer = setTimeout(r, durationMs)))]);
        clearTimeout(timer);
        phase = 'done';
      }
    }
    await all;
    opts.onMeasureEnd?.();
  }

  // End the sessions (best effort: a server may answer 405 if it does not support DELETE).
  await Promise.all(
    sessions.map(async (sid) => {
      if (sid === undefined) return;
      try {
        const res = await pool.request({
          path,
          method: 'DELETE',
          headers: {
            ...opts.headers,
            'mcp-session-id': sid,
            'mcp-protocol-version': negotiated ?? wantVersion,
          },
          headersTimeout: 2000,
          bodyTimeout: 2000,
        });
        await res.body.dump();
      } catch {
        // ignored
      }
    }),
  );
  await pool.close();

  const sorted = lat.slice(0, n).sort();
  const windowMs = measureStart === 0n ? 0 : Number(lastDone - measureStart) / 1e6;
  let sum = 0;
  for (const v of sorted) sum += v;
  return {
    url: opts.url,
    concurrency: opts.concurrency,
    requests: n,
    windowMs,
    rps: windowMs > 0 ? (n * 1000) / windowMs : 0,
    p50: quantile(sorted, 0.5),
    p90: quantile(sorted, 0.9),
    p99: quantile(sorted, 0.99),
    max: n > 0 ? sorted[n - 1]! : NaN,
    mean: n > 0 ? sum / n : NaN,
    errors,
    errorSamples,
    json,
    sse,
    protocolVersion: negotiated,
  };
}

function arg(argv: readonly string[], name: string): string | undefined {
  const i = argv.indexOf(`--${name}`);
  if (i !== -1) return argv[i + 1];
  const eq = argv.find((a) => a.startsWith(`--${name}=`));
  return eq?.slice(name.length + 3);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const argv = process.argv.slice(2);
  const url = arg(argv, 'url');
  if (!url) {
    process.stderr.write(
      'usage: loadgen --url URL [--concurrency C] [--duration S | --requests N] [--warmup S] [--protocol-version V]\n',
    );
    process.exit(2);
  }
  const requests = arg(argv, 'requests');
  const result = await runLoad({
    url,
    concurrency: Number(arg(argv, 'concurrency') ?? 1),
    durationMs: Number(arg(argv, 'duration') ?? 5) * 1000,
    requests: requests === undefined ? undefined : Number(requests),
    warmupMs: Number(arg(argv, 'warmup') ?? 1) * 1000,
    protocolVersion: arg(argv, 'protocol-version'),
  });
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  if (result.errors > 0 || result.requests === 0) {
    process.stderr.write(`LOAD FAILED: ${result.errors} error(s)\n${result.errorSamples.join('\n')}\n`);
    process.exit(1);
  }
}
