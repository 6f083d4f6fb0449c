/**
 * The official SDK clients (v2 and v1) through mcpgw against the reference "everything" server over
 * stdio, Streamable HTTP and legacy HTTP+SSE: every relayed feature a user would try.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { RunningNode } from '../../cli/single.js';
import { startGateway } from '../helpers/gateway.js';
import { EVERYTHING, ROOT, startEverythingHttp, stopChild } from '../helpers/net.js';
import { startRecordingProxy, type RecordingProxy } from '../helpers/recording-proxy.js';
import { connectSdk, type SdkClient, type SdkKind } from '../helpers/sdk-clients.js';

type BackendKind = 'stdio' | 'streamable-http' | 'sse';

const handlers = {
  sampling: (p: any) => ({
    role: 'assistant',
    content: { type: 'text', text: `sampled:${p.messages?.[0]?.content?.text ?? ''}` },
    model: 'test-model',
    stopReason: 'endTurn',
  }),
  elicitation: () => ({ action: 'accept', content: { name: 'Ada Lovelace', check: true } }),
  roots: () => ({ roots: [{ uri: 'file:///tmp/mcpgw-test', name: 'test root' }] }),
};

/** What the gateway sent to the backend: the tee log for stdio, the recording proxy for HTTP. */
interface Backend {
  server: Record<string, unknown>;
  sent(): string;
  close(): Promise<void>;
}

async function startBackend(kind: BackendKind): Promise<Backend> {
  if (kind === 'stdio') {
    const log = join(mkdtempSync(join(tmpdir(), 'mcpgw-tee-')), 'stdin.log');
    return {
      server: {
        name: 'everything',
        transport: 'stdio',
        command: process.execPath,
        args: [`${ROOT}dist/test/fixtures/tee-stdio.js`, log, process.execPath, EVERYTHING, 'stdio'],
      },
      sent: () => (existsSync(log) ? readFileSync(log, 'utf8') : ''),
      close: async () => {},
    };
  }
  const { url, child } = await startEverythingHttp(kind === 'sse' ? 'sse' : 'streamableHttp');
  const proxy: RecordingProxy = await startRecordingProxy(url);
  const c: ChildProcess = child;
  return {
    server: { name: 'everything', transport: kind, url: proxy.url },
    sent: () => proxy.bodies.join('\n'),
    close: async () => {
      await proxy.close();
      await stopChild(c);
    },
  };
}

async function eventually(check: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

for (const backendKind of ['stdio', 'streamable-http', 'sse'] as const) {
  describe(`SDK clients through mcpgw to everything over ${backendKind}`, () => {
    let backend: Backend;
    let gw: RunningNode;

    before(async () => {
      backend = await startBackend(backendKind);
      gw = await startGateway({ servers: [backend.server] });
    });
    after(async () => {
      await gw?.close();
      await backend?.close();
    });

    if (backendKind !== 'stdio') {
      test('the backend is offered exactly the capabilities the client declared', async () => {
        const client = await connectSdk('v2', `${gw.url}/mcp`, { sampling: handlers.sampling });
        await client.listTools();
        const inits = backend
          .sent()
          .split('\n')
          .filter((l) => l.includes('"method":"initialize"'))
          .map((l) => JSON.parse(l));
        const last = inits[inits.length - 1];
        assert.deepEqual(last.params.capabilities, { sampling: {} });
        assert.equal(last.params.clientInfo.name, 'mcpgw-test-v2');
        await client.close();
      });
    }

    for (const sdk of ['v2', 'v1'] as SdkKind[]) {
      describe(`${sdk} client`, () => {
        let client: SdkClient;
        before(async () => {
          client = await connectSdk(sdk, `${gw.url}/mcp`, handlers);
        });
        after(async () => client?.close());

        test('lists namespaced tools that are valid for every client', async () => {
          const { tools } = await client.listTools();
          const names = tools.map((t: any) => t.name);
          assert.ok(names.includes('everything__echo'), names.join(','));
          assert.ok(
            names.includes('everything__trigger-sampling-request'),
            'conditional tools appear for a client that declared sampling',
          );
          for (const n of names) assert.match(n, /^[a-zA-Z0-9_-]{1,64}$/);
        });

        test('calls a tool', async () => {
          const r = await client.callTool({
            name: 'everything__echo',
            arguments: { message: 'hello gateway' },
          });
          assert.equal(r.content[0].text, 'Echo: hello gateway');
        });

        test('lists and reads resources, and reads a templated resource', async () => {
          const { resources } = await client.listResources();
          assert.ok(resources.length > 0);
          const read = await client.readResource({ uri: resources[0].uri });
          assert.equal(read.contents[0].uri, resources[0].uri);
          const { resourceTemplates } = await client.listResourceTemplates();
          assert.ok(
            resourceTemplates.some((t: any) => t.uriTemplate === 'demo://resource/dynamic/text/{resourceId}'),
          );
          const dyn = await client.readResource({ uri: 'demo://resource/dynamic/text/7' });
          assert.match(dyn.contents[0].text, /7/);
        });

        test('gets a prompt and completes a prompt argument', async () => {
          const { prompts } = await client.listPrompts();
          assert.ok(prompts.some((p: any) => p.name === 'everything__simple-prompt'));
          const p = await client.getPrompt({
            name: 'everything__completable-prompt',
            arguments: { department: 'Sales', name: 'Eve' },
          });
          assert.match(p.messages[0].content.text, /Eve to the head of the Sales team/);
          const c = await client.complete({
            ref: { type: 'ref/prompt', name: 'everything__completable-prompt' },
            argument: { name: 'department', value: 'Eng' },
          });
          assert.deepEqual(c.completion.values, ['Engineering']);
        });

        test('delivers progress of a long-running tool', async () => {
          const progress: number[] = [];
          const r = await client.callTool(
            { name: 'everything__trigger-long-running-operation', arguments: { duration: 0.3, steps: 3 } },
            { onprogress: (p: any) => progress.push(p.progress) },
          );
          assert.match(r.content[0].text, /Long running operation completed/);
          assert.deepEqual(progress, [1, 2, 3]);
        });

        test('relays a sampling request to the client and its answer to the backend', async () => {
          const r = await client.callTool({
            name: 'everything__trigger-sampling-request',
            arguments: { prompt: 'ping-pong', maxTokens: 10 },
          });
          assert.match(JSON.stringify(r.content), /sampled:/);
        });

        test('relays an elicitation request to the client and its answer to the backend', async () => {
          const r = await client.callTool({ name: 'everything__trigger-elicitation-request', arguments: {} });
          assert.match(JSON.stringify(r.content), /Ada Lovelace/);
        });

        test('a cancellation reaches the backend', async () => {
          const before = backend.sent().split('notifications/cancelled').length;
          const ctrl = new AbortController();
          const call = client.callTool(
            { name: 'everything__trigger-long-running-operation', arguments: { duration: 5, steps: 5 } },
            { signal: ctrl.signal },
          );
          await new Promise((r) => setTimeout(r, 200));
          ctrl.abort('test cancels');
          await assert.rejects(call);
          await eventually(
            () => backend.sent().split('notifications/cancelled').length > before,
            'notifications/cancelled at the backend',
          );
        });

        test('ping works', async () => {
          await client.ping();
        });

        test('relays a roots/list request from the backend to the client', async () => {
          const r = await client.callTool({ name: 'everything__get-roots-list', arguments: {} });
          assert.match(JSON.stringify(r.content), /file:\/\/\/tmp\/mcpgw-test/);
        });

        test('logging/setLevel applies and log notifications reach the client', async () => {
          const logs: any[] = [];
          client.onNotification('notifications/message', (p) => logs.push(p));
          await client.setLoggingLevel('debug');
          await client.callTool({ name: 'everything__toggle-simulated-logging', arguments: {} });
          // The shared stdio process also logs about other events (roots updates of any session): wait
          // for one of the simulated messages the toggle turned on rather than taking the first line.
          await eventually(
            () => logs.some((l) => /message/.test(String(l.data))),
            'a simulated log notification',
          );
          await client.callTool({ name: 'everything__toggle-simulated-logging', arguments: {} });
        });

        test('resources/subscribe works and notifications/resources/updated reaches the client', async () => {
          const updates: string[] = [];
          client.onNotification('notifications/resources/updated', (p) => updates.push(p.uri));
          const { resources } = await client.listResources();
          const uri = resources[0].uri;
          await client.subscribeResource({ uri });
          await client.callTool({ name: 'everything__toggle-subscriber-updates', arguments: {} });
          await eventually(() => updates.includes(uri), 'a resource update');
          await client.callTool({ name: 'everything__toggle-subscriber-updates', arguments: {} });
        });
      });
    }
  });
}
