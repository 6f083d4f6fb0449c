/**
 * The MCP conformance suite against the project's conformance fixture, directly and through mcpgw's
 * `/servers/fixture/mcp`: every scenario that passes directly must pass through the gateway.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { after, before, test } from 'node:test';
import type { RunningNode } from '../../cli/single.js';
import { CONFORMANCE_0_1_16, runConformance } from '../helpers/conformance.js';
import { startGateway } from '../helpers/gateway.js';
import { freePort, ROOT, spawnUntil, stopChild } from '../helpers/net.js';

let fixture: ChildProcess;
let fixtureUrl: string;
let gw: RunningNode;

before(async () => {
  const port = await freePort();
  fixture = await spawnUntil(
    process.execPath,
    [`${ROOT}dist/test/fixtures/conformance-server.js`, '--port', String(port)],
    /listening/,
  );
  fixtureUrl = `http://localhost:${port}/mcp`;
  gw = await startGateway({
    servers: [{ name: 'fixture', transport: 'streamable-http', url: `http://127.0.0.1:${port}/mcp` }],
  });
});
after(async () => {
  await gw?.close();
  await stopChild(fixture);
});

for (const [version, command] of [
  ['0.1.13 (local, Node 20)', undefined],
  ['0.1.16 (npx, Node 22)', CONFORMANCE_0_1_16],
] as const) {
  test(
    `conformance ${version}: every scenario passes directly and through the gateway`,
    { timeout: 600_000 },
    async () => {
      const direct = await runConformance(fixtureUrl, { suite: 'all', command });
      // The fixture implements every scenario: all of them pass directly.
      assert.ok(
        direct.passed.length >= 30,
        `only ${direct.passed.length} scenarios passed directly:\n${direct.output}`,
      );
      assert.deepEqual(direct.failed, []);
      // The dns-rebinding scenario needs a localhost URL (the gateway accepts loopback Host names).
      const via = await runConformance(`${gw.url.replace('127.0.0.1', 'localhost')}/servers/fixture/mcp`, {
        suite: 'all',
        command,
      });
      const regressions = direct.passed.filter((s) => !via.passed.includes(s));
      assert.deepEqual(
        regressions,
        [],
        `scenarios that pass directly but fail through mcpgw:\n${via.output}`,
      );
      assert.deepEqual(via.failed, []);
    },
  );
}
