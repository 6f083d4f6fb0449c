/**
 * Merged lists kept between listings (core/mcp/merged-lists.ts): a session listing tools again gets the
 * list kept from last time, and never a stale one. The same sequence of backend catalog changes runs
 * against a gateway that keeps merged lists (the default) and one that keeps none
 * (`aggregate.mergedListCacheItems: 0`); at every step both must list exactly the same tools, and the
 * change must show at once after the backend's list_changed.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { RunningNode } from '../../cli/single.js';
import { MergedListBudget } from '../../core/mcp/merged-lists.js';
import { startGateway } from '../helpers/gateway.js';
import { ROOT } from '../helpers/net.js';
import { connectSdk, type SdkClient } from '../helpers/sdk-clients.js';

const SCRIPTED = `${ROOT}dist/test/fixtures/scripted-server.js`;

function scripted(name: string, tools: string[]) {
  return {
    name,
    transport: 'stdio',
    command: process.execPath,
    args: [SCRIPTED],
    env: { FIXTURE_CATALOG: JSON.stringify({ tools }), FIXTURE_NAME: name },
  };
}

async function names(client: SdkClient): Promise<string[]> {
  const out: string[] = [];
  let cursor: string | undefined;
  do {
    const page = await client.listTools(cursor ? { cursor } : {});
    out.push(...page.tools.map((t: { name: string }) => t.name));
    cursor = page.nextCursor;
  } while (cursor);
  return out;
}

describe('merged lists kept between listings', () => {
  const gateways: RunningNode[] = [];
  const clients: SdkClient[] = [];
  const changed: Array<() => void> = [];

  before(async () => {
    for (const mergedListCacheItems of [200_000, 0]) {
      // One backend per gateway: each gateway's own catalog changes in step.
      const gw = await startGateway({
        aggregate: { pageSize: 4, mergedListCacheItems },
        servers: [scripted('alpha', ['a1', 'a2']), scripted('beta', ['b1'])],
      });
      gateways.push(gw);
      const client = await connectSdk('v2', `${gw.url}/mcp`);
      client.onNotification('notifications/tools/list_changed', () => changed.splice(0).forEach((f) => f()));
      clients.push(client);
    }
  });

  after(async () => {
    await Promise.all(clients.map((c) => c.close().catch(() => {})));
    await Promise.all(gateways.map((g) => g.close()));
  });

  /** Both gateways' full tool lists, after asserting they agree. */
  async function both(): Promise<string[]> {
    const [kept, fresh] = await Promise.all(clients.map(names));
    assert.deepEqual(kept, fresh, 'a kept merged list differs from one made afresh');
    return kept!;
  }

  async function change(args: Record<string, string>): Promise<void> {
    for (const client of clients) {
      const heard = new Promise<void>((resolve) => changed.push(resolve));
      await client.callTool({ name: 'alpha__change', arguments: args });
      await heard;
    }
  }

  test('listing again gives the same list; a backend change shows at once after its list_changed', async () => {
    const first = await both();
    assert.ok(first.includes('alpha__a1') && first.includes('beta__b1'), first.join());
    assert.deepEqual(await both(), first);

    await change({ add: 'a3' });
    const added = await both();
    assert.ok(added.includes('alpha__a3'), 'the added tool is listed');
    assert.equal(added.length, first.length + 1);

    await change({ remove: 'a1' });
    const removed = await both();
    assert.ok(!removed.includes('alpha__a1'), 'the removed tool is gone');
    assert.ok(removed.includes('alpha__a3') && removed.includes('beta__b1'));
    const call = await clients[0]!.callTool({ name: 'alpha__a3', arguments: {} });
    assert.match(JSON.stringify(call.content), /a3/);
  });
});

describe('the shared budget of kept merged lists', () => {
  const slot = (size: number, dropped: string[], name: string) => ({ size, drop: () => dropped.push(name) });

  test('drops the least recently listed first and never keeps one list larger than the budget', () => {
    const budget = new MergedListBudget(10);
    const dropped: string[] = [];
    const a = slot(4, dropped, 'a');
    const b = slot(4, dropped, 'b');
    const c = slot(4, dropped, 'c');
    budget.touch(a);
    budget.touch(b);
    budget.touch(a); // a is now the most recent
    budget.touch(c);
    assert.deepEqual(dropped, ['b']);
    assert.equal(budget.items, 8);
    budget.forget(a);
    assert.equal(budget.items, 4);
    assert.equal(budget.fits(11), false);
    assert.equal(new MergedListBudget(0).fits(1), false);
  });
});
