/**
 * The MCP conformance suite (server mode) directly against the project's conformance fixture: every
 * scenario the suite knows must pass. Runs the installed 0.1.13 (offline) and the newest 0.1.16 (Node 22,
 * fetched by npx from the npm registry; set MCPGW_SKIP_NPX_CONFORMANCE=1 to skip it when offline).
 * Also checks that the fixture's stdio mode serves the same surface.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { listConformanceScenarios, runConformance, type ConformanceVersion } from './helpers/conformance.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/conformance-server.js', import.meta.url));

/**
 * The only warnings the fixture may draw. `server-sse-polling` probes with `mcp-protocol-version:
 * 2025-03-26` (in 0.1.13 and 0.1.16) while testing a 2025-11-25 feature: the SDK transport rightly sends
 * the SSE priming event (and its `retry` field) only to clients of 2025-11-25 or later, whose parsers
 * accept an empty `data:` line, so no conformant server can satisfy these two SHOULD checks for that
 * probe. They are warnings, not failures, so the scenario still passes. Fixed upstream by
 * modelcontextprotocol/conformance#366 (not in a 0.1.x release); the fixture's priming, `retry`,
 * mid-call stream close and Last-Event-ID replay work for a 2025-11-25 client.
 */
const ALLOWED_WARNINGS = [
  /^server-sse-polling: server-sse-priming-event:/,
  /^server-sse-polling: server-sse-retry-field:/,
];

let fixture: ChildProcess | undefined;
let url: string;

/** Starts a fixture process and resolves with the first `listening <what>` it prints. */
function startFixture(args: string[]): Promise<{ child: ChildProcess; listening: string }> {
  const child = spawn(process.execPath, [FIXTURE, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(() => reject(new Error(`fixture did not start: ${seen}`)), 20_000);
    child.stderr!.on('data', (b: Buffer) => {
      seen += b.toString();
      const m = /^listening (\S+)$/m.exec(seen);
      if (m) {
        clearTimeout(timer);
        resolve({ child, listening: m[1]! });
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`fixture exited with ${code} before it was ready: ${seen}`));
    });
  });
}

async function stop(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 3000);
  await gone;
  clearTimeout(t);
}

before(async () => {
  // `--port 0` binds any free loopback port; the fixture prints the URL it got.
  const started = await startFixture(['--port', '0']);
  fixture = started.child;
  url = started.listening;
  assert.match(url, /^http:\/\/localhost:\d+\/mcp$/);
});

after(async () => {
  await stop(fixture);
});

for (const version of ['0.1.13', '0.1.16'] as const satisfies readonly ConformanceVersion[]) {
  test(
    `conformance ${version}: every server scenario passes directly against the fixture`,
    {
      timeout: 600_000,
      skip:
        version === '0.1.16' && process.env.MCPGW_SKIP_NPX_CONFORMANCE ? 'MCPGW_SKIP_NPX_CONFORMANCE' : false,
    },
    async (t) => {
      const scenarios = await listConformanceScenarios({ version });
      assert.ok(scenarios.length >= 32, `the ${version} CLI listed only: ${scenarios.join(', ')}`);

      const r = await runConformance(url, { suite: 'all', version, timeoutMs: 300_000 });
      t.diagnostic(
        `${r.command}: ${r.passed.length} passed, ${r.failed.length} failed in ${r.durationMs} ms`,
      );
      for (const w of r.warnings) t.diagnostic(`warning: ${w}`);

      assert.deepEqual(r.failed, [], `failed scenarios:\n${r.output}`);
      assert.deepEqual([...r.passed].sort(), [...scenarios].sort(), `not every scenario ran:\n${r.output}`);
      const unexpected = r.warnings.filter((w) => !ALLOWED_WARNINGS.some((re) => re.test(w)));
      assert.deepEqual(unexpected, [], 'unexpected warnings');
    },
  );
}

test('stdio mode serves the same tools, resources and prompts', { timeout: 60_000 }, async () => {
  const { child } = await startFixture(['--stdio']);
  try {
    const pending = new Map<number, (msg: { result?: Record<string, unknown[]>; error?: unknown }) => void>();
    let buf = '';
    child.stdout!.on('data', (b: Buffer) => {
      buf += b.toString();
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        const line = buf.slice(0, i).trim();
        buf = buf.slice(i + 1);
        if (!line) continue;
        const msg = JSON.parse(line) as { id?: number; result?: Record<string, unknown[]> };
        if (typeof msg.id === 'number') pending.get(msg.id)?.(msg);
      }
    });
    let nextId = 1;
    const send = (msg: object) => child.stdin!.write(`${JSON.stringify({ jsonrpc: '2.0', ...msg })}\n`);
    const request = (method: string, params: object = {}) =>
      new Promise<Record<string, unknown[]>>((resolve, reject) => {
        const id = nextId++;
        pending.set(id, (m) => (m.result ? resolve(m.result) : reject(new Error(JSON.stringify(m.error)))));
        send({ id, method, params });
      });

    await request('initialize', {
      protocolVersion: '2025-11-25',
      capabilities: {},
      clientInfo: { name: 'conformance-direct-test', version: '1.0.0' },
    });
    send({ method: 'notifications/initialized' });

    const names = (list: unknown[], key: string) =>
      list.map((x) => (x as Record<string, string>)[key]).sort();
    assert.deepEqual(names((await request('tools/list')).tools!, 'name'), [
      'json_schema_2020_12_tool',
      'test_audio_content',
      'test_elicitation',
      'test_elicitation_sep1034_defaults',
      'test_elicitation_sep1330_enums',
      'test_embedded_resource',
      'test_error_handling',
      'test_image_content',
      'test_multiple_content_types',
      'test_reconnection',
      'test_sampling',
      'test_simple_text',
      'test_tool_with_logging',
      'test_tool_with_progress',
    ]);
    assert.deepEqual(names((await request('resources/list')).resources!, 'uri'), [
      'test://static-binary',
      'test://static-text',
      'test://watched-resource',
    ]);
    assert.deepEqual(names((await request('resources/templates/list')).resourceTemplates!, 'uriTemplate'), [
      'test://template/{id}/data',
    ]);
    assert.deepEqual(names((await request('prompts/list')).prompts!, 'name'), [
      'test_prompt_with_arguments',
      'test_prompt_with_embedded_resource',
      'test_prompt_with_image',
      'test_simple_prompt',
    ]);
    const called = await request('tools/call', { name: 'test_simple_text', arguments: {} });
    assert.deepEqual(called.content, [{ type: 'text', text: 'This is a simple text response for testing.' }]);
  } finally {
    await stop(child);
  }
});
