/**
 * Relay details seen on the wire: server-to-client requests get gateway ids and travel on the stream of
 * the request that caused them; a backend's cancellation of its own request reaches the client with the
 * translated id; a client that did not declare a capability is never asked, and the backend gets an error.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { RunningNode } from '../../cli/single.js';
import { MCP_HEADERS, raw, rawSession, sseMessages, startGateway } from '../helpers/gateway.js';
import { ROOT } from '../helpers/net.js';

let gw: RunningNode;
let mcp: string;

before(async () => {
  gw = await startGateway({
    servers: [
      {
        name: 's',
        transport: 'stdio',
        command: process.execPath,
        args: [`${ROOT}dist/test/fixtures/scripted-server.js`],
      },
    ],
  });
  mcp = `${gw.url}/mcp`;
});
after(async () => gw?.close());

test("a backend's cancellation of its sampling request reaches the client with the gateway's id", async () => {
  const sid = await rawSession(mcp, { sampling: {} });
  const r = await raw(mcp, {
    headers: { ...MCP_HEADERS, 'mcp-session-id': sid },
    body: {
      jsonrpc: '2.0',
      id: 'call-1',
      method: 'tools/call',
      params: { name: 's__ask_then_cancel', arguments: {} },
    },
  });
  assert.equal(r.headers.get('content-type'), 'text/event-stream');
  const msgs = sseMessages(r.text);
  const ask = msgs.find((m) => m.method === 'sampling/createMessage');
  assert.ok(ask, 'the sampling request arrived on the POST stream');
  assert.notEqual(ask.id, 'srv-req-1', "the backend's id is not leaked");
  const cancel = msgs.find((m) => m.method === 'notifications/cancelled');
  assert.equal(cancel?.params.requestId, ask.id);
  const result = msgs.find((m) => m.id === 'call-1');
  assert.equal(result.result.content[0].text, 'cancelled the sampling request');
});

test('a client without the sampling capability is not asked; the backend gets -32601', async () => {
  const sid = await rawSession(mcp, {});
  const r = await raw(mcp, {
    headers: { ...MCP_HEADERS, 'mcp-session-id': sid },
    body: { jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 's__ask', arguments: {} } },
  });
  assert.equal(r.headers.get('content-type'), 'application/json', 'nothing but the response was sent');
  const answer = JSON.parse(r.json.result.content[0].text);
  assert.equal(answer.error.code, -32601);
  assert.equal(answer.error.data.code, 'GW_CAPABILITY_NOT_DECLARED');
});

test("the client's answer to a sampling request reaches the backend with the backend's id", async () => {
  const sid = await rawSession(mcp, { sampling: {} });
  const headers = { ...MCP_HEADERS, 'mcp-session-id': sid };
  const res = await fetch(mcp, {
    method: 'POST',
    headers,
    body: JSON.stringify({
      jsonrpc: '2.0',
      id: 8,
      method: 'tools/call',
      params: { name: 's__ask', arguments: {} },
    }),
  });
  const reader = res.body!.getReader();
  let text = '';
  let ask: any;
  while (!ask) {
    const { value, done } = await reader.read();
    assert.ok(!done, 'stream ended before the sampling request');
    text += Buffer.from(value).toString();
    ask = sseMessages(text).find((m) => m.method === 'sampling/createMessage');
  }
  const answered = await raw(mcp, {
    headers,
    body: {
      jsonrpc: '2.0',
      id: ask.id,
      result: {
        role: 'assistant',
        content: { type: 'text', text: 'sampled' },
        model: 'm',
        stopReason: 'endTurn',
      },
    },
  });
  assert.equal(answered.status, 202);
  while (!sseMessages(text).some((m) => m.id === 8)) {
    const { value, done } = await reader.read();
    if (done) break;
    text += Buffer.from(value).toString();
  }
  const result = sseMessages(text).find((m) => m.id === 8);
  const backendSaw = JSON.parse(result.result.content[0].text);
  assert.match(String(backendSaw.id), /^srv-req-\d+$/);
  assert.equal(backendSaw.result.content.text, 'sampled');
});

test("a stdio backend's request is never guessed onto another session: with two sessions in flight it fails", async () => {
  const a = await rawSession(mcp, { sampling: {} });
  const b = await rawSession(mcp, { sampling: {} });
  const call = (sid: string, id: number) =>
    fetch(mcp, {
      method: 'POST',
      headers: { ...MCP_HEADERS, 'mcp-session-id': sid },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id,
        method: 'tools/call',
        params: { name: 's__ask', arguments: {} },
      }),
    });
  // A's call asks A (the only session in flight) and waits for A's answer.
  const resA = await call(a, 21);
  const reader = resA.body!.getReader();
  let textA = '';
  let askA: any;
  while (!askA) {
    const { value, done } = await reader.read();
    assert.ok(!done, 'stream ended before the sampling request');
    textA += Buffer.from(value).toString();
    askA = sseMessages(textA).find((m) => m.method === 'sampling/createMessage');
  }
  // B's call now asks too, with A's call still in flight: nobody can tell whose it is, so nobody is asked.
  const resB = await call(b, 22);
  assert.equal(resB.headers.get('content-type'), 'application/json', 'B was not asked anything');
  const answerB = JSON.parse(((await resB.json()) as any).result.content[0].text);
  assert.equal(answerB.error.data.code, 'GW_CLIENT_AMBIGUOUS');
  // A answers its own request and gets its result; it never saw B's request.
  await raw(mcp, {
    headers: { ...MCP_HEADERS, 'mcp-session-id': a },
    body: {
      jsonrpc: '2.0',
      id: askA.id,
      result: {
        role: 'assistant',
        content: { type: 'text', text: 'for A' },
        model: 'm',
        stopReason: 'endTurn',
      },
    },
  });
  while (!sseMessages(textA).some((m) => m.id === 21)) {
    const { value, done } = await reader.read();
    if (done) break;
    textA += Buffer.from(value).toString();
  }
  const msgs = sseMessages(textA);
  assert.equal(msgs.filter((m) => m.method === 'sampling/createMessage').length, 1);
  assert.equal(JSON.parse(msgs.find((m) => m.id === 21).result.content[0].text).result.content.text, 'for A');
});
