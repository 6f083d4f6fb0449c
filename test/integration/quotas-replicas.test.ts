/**
 * The per-backend-server limit is per replica: when one replica's budget is spent the call goes to
 * another replica of the same server (the client session's backend session moves there), and only when
 * no replica can serve does the caller get GW_QUOTA_SERVER. Two real replica processes, the official SDK
 * client.
 */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import type { RunningNode } from '../../cli/single.js';
import { raw } from '../helpers/gateway.js';
import { FixtureReplica } from '../helpers/pool-replicas.js';
import { clientAs, startQuotaGateway } from '../helpers/quota-fixtures.js';

const dir = mkdtempSync(join(tmpdir(), 'mcpgw-quota-replicas-'));

describe('per-replica server budget: re-route, then refuse', { timeout: 120_000 }, () => {
  let reps: FixtureReplica[];
  let gw: RunningNode;

  before(async () => {
    reps = await Promise.all(['a', 'b'].map((n) => FixtureReplica.start(n, join(dir, `${n}.log`))));
    gw = await startQuotaGateway({
      servers: [
        {
          name: 'svc',
          transport: 'streamable-http',
          replicas: reps.map((r) => r.url),
          balancer: 'round-robin',
          health: { intervalMs: 0 },
        },
      ],
      quotas: {
        enabled: true,
        user: false,
        tool: false,
        concurrency: { perUser: false },
        server: { limit: 3, windowMs: 3_600_000 },
      },
    });
  });
  after(async () => {
    await gw?.close();
    await Promise.all((reps ?? []).map((r) => r.stop()));
  });

  test('a spent replica hands its calls to the other; none left: GW_QUOTA_SERVER', async () => {
    const ann = await clientAs(`${gw.url}/mcp`, 'ann');
    for (let i = 0; i < 6; i++) {
      const r = await ann.callTool({ name: 'svc__charge', arguments: { i } });
      assert.notEqual(r.isError, true, `call ${i} answered`);
    }
    assert.deepEqual(
      reps.map((r) => r.calls('charge').length),
      [3, 3],
      'each replica served exactly its budget: the session moved when the first was spent',
    );
    await assert.rejects(ann.callTool({ name: 'svc__charge', arguments: { i: 6 } }), (err: unknown) => {
      assert.ok(err instanceof McpError);
      assert.equal(err.code, -32029);
      const d = err.data as Record<string, unknown>;
      assert.equal(d.code, 'GW_QUOTA_SERVER');
      assert.equal(d.dimension, 'server');
      assert.equal(d.server, 'svc');
      assert.equal(d.limit, 3);
      assert.ok(
        reps.some((r) => r.url === d.replica),
        `names a replica: ${String(d.replica)}`,
      );
      assert.ok((d.retryAfterMs as number) > 0);
      return true;
    });
    // The budget is the replica's, for all users together.
    const bob = await clientAs(`${gw.url}/mcp`, 'bob');
    await assert.rejects(bob.callTool({ name: 'svc__charge', arguments: {} }), /GW_QUOTA_SERVER|per 3600000/);
    assert.deepEqual(
      reps.map((r) => r.calls('charge').length),
      [3, 3],
      'nothing sent beyond the budgets',
    );
    const pool = (await raw(`${gw.url}/readyz`, { method: 'GET' })).json.servers.svc.pool;
    assert.ok(pool.quotaReroutes >= 3, `re-routes counted: ${pool.quotaReroutes}`);
    await Promise.all([ann.close(), bob.close()]);
  });
});
