/**
 * The ReplicaChannel contract, run on the in-process hub and on Redis pub/sub: a message sent to one
 * replica reaches it alone; a broadcast reaches every other replica and never the sender; a closed replica
 * hears nothing more.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { MemoryReplicaHub } from '../../shared/adapters/memory/replica-channel.js';
import { RedisReplicaChannel } from '../../shared/adapters/redis/replica-channel.js';
import type { ReplicaChannel, ReplicaMessage } from '../../shared/ports/replica-channel.js';

const REDIS_URL = process.env.MCPGW_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

function contract(name: string, makeGroup: () => () => ReplicaChannel): void {
  describe(`ReplicaChannel contract: ${name}`, () => {
    async function three() {
      const make = makeGroup();
      const chans = [make(), make(), make()];
      const heard: ReplicaMessage[][] = [[], [], []];
      await Promise.all(chans.map((c, i) => c.listen((m) => heard[i]!.push(m))));
      return { chans, heard };
    }
    const until = async (check: () => boolean) => {
      const end = Date.now() + 3000;
      while (!check()) {
        if (Date.now() > end) assert.fail('timed out waiting for delivery');
        await new Promise((r) => setTimeout(r, 10));
      }
    };

    test('replica ids are distinct', async () => {
      const { chans } = await three();
      assert.equal(new Set(chans.map((c) => c.replicaId)).size, 3);
      await Promise.all(chans.map((c) => c.close()));
    });

    test('send reaches the addressed replica only; broadcast every other one, never the sender', async () => {
      const { chans, heard } = await three();
      const [a, b] = chans as [ReplicaChannel, ReplicaChannel, ReplicaChannel];
      const direct: ReplicaMessage = {
        kind: 'response',
        sessionId: 's1',
        message: { jsonrpc: '2.0', id: 'x', result: {} },
      };
      await a.send(b.replicaId, direct);
      const everyone: ReplicaMessage = {
        kind: 'event',
        sessionId: 's1',
        streamId: 'get',
        eventId: 'get_1',
        message: { jsonrpc: '2.0', method: 'notifications/tools/list_changed' },
      };
      await a.broadcast(everyone);
      await until(() => heard[1]!.length === 2 && heard[2]!.length === 1);
      await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(heard[0], [], 'the sender hears nothing of its own');
      assert.deepEqual(heard[1], [direct, everyone]);
      assert.deepEqual(heard[2], [everyone]);
      await Promise.all(chans.map((c) => c.close()));
    });

    test('a closed replica hears nothing more; sending to it is not an error', async () => {
      const { chans, heard } = await three();
      const [a, b, c] = chans as [ReplicaChannel, ReplicaChannel, ReplicaChannel];
      await b.close();
      await a.send(b.replicaId, { kind: 'notify', sessionId: 's', message: {} });
      await a.broadcast({ kind: 'notify', sessionId: 's', message: { n: 1 } });
      await until(() => heard[2]!.length === 1);
      assert.deepEqual(heard[1], []);
      await Promise.all([a.close(), c.close()]);
    });
  });
}

contract('memory hub', () => {
  const hub = new MemoryReplicaHub();
  return () => hub.channel();
});

contract('redis pub/sub', () => {
  // A fresh prefix per group keeps concurrent runs (and the other suites) apart.
  const keyPrefix = `mcpgw-test-${randomBytes(6).toString('hex')}`;
  return () => new RedisReplicaChannel(REDIS_URL, { keyPrefix });
});
