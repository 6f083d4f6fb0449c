/**
 * The edge's forward stage and a draining core, over real sockets: two stand-in cores speak the internal
 * API (info, events, session requests). A core that refuses a request as draining (503 with
 * x-mcpgw-draining: nothing ran) sees it once and the call is answered by the other core; a core that
 * announces its drain on its events stream gets no new calls while the other can take them; when every
 * core refuses, the caller gets GW_CORE_UNAVAILABLE.
 */
import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { createServer, type Server, type ServerResponse } from 'node:http';
import { Writable } from 'node:stream';
import { after, afterEach, before, beforeEach, test } from 'node:test';
import { GatewayError } from '../../shared/errors.js';
import { createLogger } from '../../shared/log.js';
import { RemoteCore } from '../../edge/forward/remote-core.js';

interface StandInCore {
  id: string;
  url: string;
  /** Session requests received. */
  requests: number;
  /** Refuse session requests as a core that no longer accepts does. */
  refusing: boolean;
  /** Draining: its answers say so (x-mcpgw-draining), as a real core's do. */
  draining: boolean;
  /** Writes the drain announcement on every open events stream and marks answers from now on. */
  announceDrain(): void;
  close(): Promise<void>;
}

async function startCore(id: string): Promise<StandInCore> {
  const events = new Set<ServerResponse>();
  const core = { id, url: '', requests: 0, refusing: false, draining: false } as StandInCore;
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      if (req.url === '/internal/v1/info') {
        const info = { coreId: id, region: 'eu', servers: ['s'], readiness: { ready: true, servers: {} } };
        return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(info));
      }
      if (req.url === '/internal/v1/events') {
        res.writeHead(200, { 'content-type': 'application/x-ndjson' });
        res.flushHeaders();
        events.add(res);
        return void res.on('close', () => events.delete(res));
      }
      if (/\/request$/.test(req.url ?? '')) {
        core.requests++;
        if (core.refusing) {
          const err = {
            jsonrpc: '2.0',
            id: null,
            error: { code: -32603, message: 'The gateway is shutting down' },
          };
          return void res
            .writeHead(503, { 'content-type': 'application/json', 'x-mcpgw-draining': '1' })
            .end(JSON.stringify(err));
        }
        const { message } = JSON.parse(body) as { message: { id: number } };
        const line = `${JSON.stringify({ r: { jsonrpc: '2.0', id: message.id, result: { core: id } } })}\n`;
        return void res
          .writeHead(200, {
            'content-type': 'application/x-ndjson',
            'content-length': Buffer.byteLength(line),
            ...(core.draining && { 'x-mcpgw-draining': '1' }),
          })
          .end(line);
      }
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address();
  core.url = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
  core.announceDrain = () => {
    core.draining = true;
    for (const res of events) res.write('{"d":1}\n');
  };
  core.close = () =>
    new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    });
  return core;
}

/** A session id whose preferred core (rendezvous hash, as the edge ranks them) is `core`. */
function sessionPreferring(core: StandInCore, other: StandInCore): string {
  const score = (c: StandInCore, id: string) =>
    createHash('sha1').update(`${c.id}\u0000${id}`).digest().readUInt32BE(0);
  for (;;) {
    const id = randomUUID();
    if (score(core, id) > score(other, id)) return id;
  }
}

let a: StandInCore;
let b: StandInCore;
let remote: RemoteCore;
const logged = logLines();

/** What the forward stage logs, and a promise for the first line matching a pattern. */
function logLines() {
  const waiters: { re: RegExp; resolve: () => void }[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      const text = chunk.toString();
      for (const w of [...waiters])
        if (w.re.test(text)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve();
        }
      done();
    },
  });
  return {
    stream,
    waitFor: (re: RegExp, timeoutMs = 10_000) =>
      new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`nothing logged matched ${re}`)), timeoutMs);
        waiters.push({
          re,
          resolve: () => {
            clearTimeout(timer);
            resolve();
          },
        });
      }),
  };
}

before(async () => {
  a = await startCore('core-a');
  b = await startCore('core-b');
});

after(async () => {
  await Promise.all([a.close(), b.close()]);
});

/** Each test with a fresh forward stage (nothing learned before) and cores that serve. */
beforeEach(async () => {
  for (const c of [a, b]) {
    c.refusing = false;
    c.draining = false;
    c.requests = 0;
  }
  remote = new RemoteCore({
    cores: [a, b].map((c) => ({ id: c.id, region: 'eu', url: c.url })),
    region: 'eu',
    instance: 'edge-test',
    tokens: undefined,
    log: createLogger('info', logged.stream),
  });
  await remote.start();
});

afterEach(() => remote.close());

const call = (sid: string, n: number) =>
  remote
    .openSession({ id: sid, principal: 'anonymous', scope: 's', unrelated: { send: () => {} } })
    .request({ jsonrpc: '2.0', id: n, method: 'tools/call', params: { name: 't' } }, { send: () => {} });

const servedBy = async (sid: string, n: number) =>
  ((await call(sid, n)) as unknown as { result: { core: string } }).result.core;

test('a call refused as draining goes to the other core; the draining core gets no more', async () => {
  a.refusing = true;
  const r = await call(sessionPreferring(a, b), 1);
  assert.deepEqual(r, { jsonrpc: '2.0', id: 1, result: { core: 'core-b' } });
  assert.equal(a.requests, 1, 'the draining core saw the call once and ran nothing');
  // Marked draining: the next calls of sessions that prefer it go to the other core directly.
  for (let i = 0; i < 3; i++) await call(sessionPreferring(a, b), 2 + i);
  assert.equal(a.requests, 1);
  assert.equal(b.requests, 4);
});

test('a drain announced on the events stream moves new calls at once', async () => {
  const sid = sessionPreferring(a, b);
  assert.equal(await servedBy(sid, 1), 'core-a');
  const before = a.requests;
  const heard = logged.waitFor(/core draining; new calls go to the other cores/);
  a.announceDrain();
  // Only the events line told the edge (no call reached core-a since): the next calls go to core-b.
  await heard;
  for (let i = 0; i < 3; i++) assert.equal(await servedBy(sid, 2 + i), 'core-b');
  assert.equal(a.requests, before, 'no new call reached the core that announced its drain');
});

test('when every core refuses as draining, the call fails with GW_CORE_UNAVAILABLE', async () => {
  a.refusing = true;
  b.refusing = true;
  await assert.rejects(
    call(randomUUID(), 1),
    (err: unknown) =>
      err instanceof GatewayError && err.code === 'GW_CORE_UNAVAILABLE' && /shutting down/.test(err.message),
  );
  assert.equal(a.requests + b.requests, 2, 'each core was asked once');
});
