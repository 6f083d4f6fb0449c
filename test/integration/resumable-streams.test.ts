/**
 * Resumable streams (2025-11-25): every SSE event carries an id unique within the session that names its
 * stream; each stream opens with a priming event (an id, `retry`, empty data); a client that lost a
 * stream, POST or GET, resumes it with GET and `Last-Event-ID` and gets exactly what it missed: nothing
 * lost, nothing twice, no other stream's messages.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { RunningNode } from '../../cli/single.js';
import { MCP_HEADERS, raw, rawSession, startGateway } from '../helpers/gateway.js';
import { EVERYTHING, ROOT } from '../helpers/net.js';

interface SseEvent {
  id?: string;
  retry?: number;
  data: string;
  message?: any;
}

/** Reads SSE events from a streaming response as they arrive. */
class SseReader {
  private buffer = '';
  private readonly reader: ReadableStreamDefaultReader<Uint8Array>;
  private readonly decoder = new TextDecoder();
  ended = false;

  constructor(res: Response) {
    assert.ok(res.body, 'the response has a body');
    this.reader = res.body.getReader();
  }

  /** The next event, or undefined when the stream ended. */
  async next(): Promise<SseEvent | undefined> {
    for (;;) {
      const cut = this.buffer.indexOf('\n\n');
      if (cut >= 0) {
        const block = this.buffer.slice(0, cut);
        this.buffer = this.buffer.slice(cut + 2);
        if (block.startsWith(':')) continue; // a comment (keep-alive)
        const ev: SseEvent = { data: '' };
        for (const line of block.split('\n')) {
          const i = line.indexOf(':');
          const field = line.slice(0, i);
          const value = line.slice(i + 1).replace(/^ /, '');
          if (field === 'id') ev.id = value;
          else if (field === 'retry') ev.retry = Number(value);
          else if (field === 'data') ev.data += value;
        }
        if (ev.data) ev.message = JSON.parse(ev.data);
        return ev;
      }
      const { value, done } = await this.reader.read();
      if (done) {
        this.ended = true;
        return undefined;
      }
      this.buffer += this.decoder.decode(value, { stream: true });
    }
  }

  /** Every remaining event until the server ends the stream. */
  async rest(): Promise<SseEvent[]> {
    const out: SseEvent[] = [];
    for (let e = await this.next(); e; e = await this.next()) out.push(e);
    return out;
  }

  async drop(): Promise<void> {
    await this.reader.cancel().catch(() => {});
  }
}

describe('resumable streams', { timeout: 20_000 }, () => {
  let gw: RunningNode;
  let mcp: string;
  const headers = (sid: string, version = '2025-11-25') => ({
    ...MCP_HEADERS,
    'mcp-session-id': sid,
    'mcp-protocol-version': version,
  });

  /** Starts a long-running call (10 progress steps, 80 ms apart) and returns its SSE answer. */
  async function longCall(
    sid: string,
    id: number,
    version?: string,
  ): Promise<{ res: Response; reader: SseReader }> {
    const res = await fetch(mcp, {
      method: 'POST',
      headers: headers(sid, version),
      body: JSON.stringify({
        jsonrpc: '2.0',
        id,
        method: 'tools/call',
        params: {
          name: 'everything__trigger-long-running-operation',
          arguments: { duration: 0.8, steps: 10 },
          _meta: { progressToken: `tok-${id}` },
        },
      }),
    });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'text/event-stream');
    return { res, reader: new SseReader(res) };
  }

  function resume(sid: string, lastEventId: string): Promise<Response> {
    return fetch(mcp, {
      method: 'GET',
      headers: { ...headers(sid), accept: 'text/event-stream', 'last-event-id': lastEventId },
    });
  }

  const progressOf = (events: SseEvent[]) =>
    events
      .filter((e) => e.message?.method === 'notifications/progress')
      .map((e) => e.message.params.progress);

  before(async () => {
    gw = await startGateway({
      servers: [
        { name: 'everything', transport: 'stdio', command: process.execPath, args: [EVERYTHING, 'stdio'] },
        {
          name: 'scripted',
          transport: 'stdio',
          command: process.execPath,
          args: [`${ROOT}dist/test/fixtures/scripted-server.js`],
        },
      ],
    });
    mcp = `${gw.url}/mcp`;
  });
  after(async () => gw?.close());

  test('a POST stream opens with a priming event: an id, retry, and empty data', async () => {
    const sid = await rawSession(mcp);
    const { reader } = await longCall(sid, 1);
    const first = await reader.next();
    assert.ok(first?.id, 'the priming event has an id');
    assert.equal(first.retry, 1000);
    assert.equal(first.data, '');
    const rest = await reader.rest();
    const ids = [first.id, ...rest.map((e) => e.id)];
    assert.ok(
      ids.every((i) => typeof i === 'string' && i.length > 0),
      'every event has an id',
    );
    assert.equal(new Set(ids).size, ids.length, 'ids are unique');
    assert.deepEqual(progressOf(rest), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    assert.equal(rest.at(-1)?.message.id, 1, 'the response closes the stream');
  });

  test('a POST stream dropped mid-call resumes live: nothing lost, nothing twice', async () => {
    const sid = await rawSession(mcp);
    const { reader } = await longCall(sid, 2);
    const seen: SseEvent[] = [];
    while (progressOf(seen).length < 3) seen.push((await reader.next())!);
    await reader.drop();
    const lastId = seen.at(-1)!.id!;

    const res = await resume(sid, lastId);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'text/event-stream');
    const rest = await new SseReader(res).rest();
    assert.deepEqual([...progressOf(seen), ...progressOf(rest)], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    const responses = rest.filter((e) => e.message?.id === 2);
    assert.equal(responses.length, 1, 'the response arrives once, on the resumed stream');
    assert.match(responses[0]!.message.result.content[0].text, /Long running operation completed/);
  });

  test('a POST stream that finished while the client was away is replayed in full, then ends', async () => {
    const sid = await rawSession(mcp);
    const { reader } = await longCall(sid, 3);
    const priming = (await reader.next())!;
    await reader.drop();
    // Let the call finish with nobody listening.
    await new Promise((r) => setTimeout(r, 1200));
    const rest = await new SseReader(await resume(sid, priming.id!)).rest();
    assert.deepEqual(progressOf(rest), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    assert.equal(rest.at(-1)?.message.id, 3);
  });

  test("the GET stream resumes with what it missed, and only that stream's messages", async () => {
    const sid = await rawSession(mcp);
    const get = await fetch(mcp, {
      method: 'GET',
      headers: { ...headers(sid), accept: 'text/event-stream' },
    });
    assert.equal(get.status, 200);
    const reader = new SseReader(get);
    const priming = (await reader.next())!;
    assert.ok(priming.id);
    await reader.drop();
    // Two list_changed notifications (unrelated to any request: they belong on the GET stream) and a
    // long call whose progress belongs to its own POST stream.
    for (const id of [10, 11]) {
      const r = await raw(mcp, {
        headers: headers(sid),
        body: {
          jsonrpc: '2.0',
          id,
          method: 'tools/call',
          params: { name: 'scripted__change', arguments: {} },
        },
      });
      assert.ok(r.json?.result ?? r.text.includes('"result"'), r.text);
    }
    const { reader: post } = await longCall(sid, 12);
    await post.rest();

    const res = await resume(sid, priming.id!);
    const again = new SseReader(res);
    const missed: SseEvent[] = [];
    while (missed.length < 2) missed.push((await again.next())!);
    assert.deepEqual(
      missed.map((e) => e.message.method),
      ['notifications/tools/list_changed', 'notifications/tools/list_changed'],
    );
    await again.drop();
  });

  test('a Last-Event-ID the session never issued gets 400', async () => {
    const sid = await rawSession(mcp);
    const other = await rawSession(mcp);
    const { reader } = await longCall(other, 20);
    const foreign = (await reader.next())!.id!;
    await reader.rest();
    for (const id of ['nonsense', foreign]) {
      const r = await raw(mcp, {
        method: 'GET',
        headers: { ...headers(sid), accept: 'text/event-stream', 'last-event-id': id },
      });
      assert.equal(r.status, 400, id);
      assert.equal(r.json.error.data.code, 'GW_UNKNOWN_EVENT_ID');
    }
  });

  test('a 2025-06-18 session gets event ids but no priming event', async () => {
    const init = await raw(mcp, {
      headers: MCP_HEADERS,
      body: {
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: {
          protocolVersion: '2025-06-18',
          capabilities: {},
          clientInfo: { name: 'old', version: '1' },
        },
      },
    });
    const sid = init.headers.get('mcp-session-id')!;
    assert.equal(init.json.result.protocolVersion, '2025-06-18');
    const { reader } = await longCall(sid, 30, '2025-06-18');
    const events = await reader.rest();
    assert.ok(
      events.every((e) => e.id && e.data !== ''),
      'no empty priming event',
    );
    assert.deepEqual(progressOf(events), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  });
});
