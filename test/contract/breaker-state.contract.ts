/**
 * The BreakerStateStore contract, run on every adapter: a verdict one instance publishes reaches every
 * watcher (its own included, told apart by origin), open verdicts stay readable until they lapse, a
 * closed verdict withdraws the open one, and a stopped watcher hears nothing more.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { BreakerStateStore, ReplicaVerdict } from '../../shared/ports/breaker-state.js';

export function breakerStateContract(
  name: string,
  /** Two stores that share state, as two core instances of one region do. */
  makePair: () => Promise<[BreakerStateStore, BreakerStateStore]>,
): void {
  const verdict = (over: Partial<ReplicaVerdict> = {}): ReplicaVerdict => ({
    server: 'svc',
    replica: 'http://127.0.0.1:1/mcp',
    state: 'open',
    reason: 'breaker',
    untilMs: Date.now() + 60_000,
    origin: 'instance-a',
    ...over,
  });
  const until = async (check: () => boolean) => {
    const end = Date.now() + 3000;
    while (!check()) {
      if (Date.now() > end) assert.fail('timed out waiting for the verdict');
      await new Promise((r) => setTimeout(r, 5));
    }
  };

  describe(`BreakerStateStore contract: ${name}`, () => {
    test('a verdict published by one instance reaches the other, and the publisher too', async () => {
      const [a, b] = await makePair();
      const heardA: ReplicaVerdict[] = [];
      const heardB: ReplicaVerdict[] = [];
      await a.watch((v) => heardA.push(v));
      await b.watch((v) => heardB.push(v));
      const v = verdict({ replica: 'r-reach' });
      await a.publish(v);
      await until(() => heardA.length === 1 && heardB.length === 1);
      assert.deepEqual(heardB[0], v);
      assert.equal(heardA[0]!.origin, 'instance-a', 'the origin tells the publisher its own verdict');
      await Promise.all([a.close(), b.close()]);
    });

    test('open verdicts are readable until they lapse; a closed verdict withdraws one', async () => {
      const [a, b] = await makePair();
      await a.publish(verdict({ replica: 'r-long' }));
      await a.publish(verdict({ replica: 'r-short', untilMs: Date.now() + 150 }));
      const now = await b.current();
      assert.deepEqual(now.map((v) => v.replica).sort(), ['r-long', 'r-short']);
      await new Promise((r) => setTimeout(r, 200)); // the short verdict's lifetime is what is tested
      assert.deepEqual(
        (await b.current()).map((v) => v.replica),
        ['r-long'],
      );
      await b.publish(
        verdict({ replica: 'r-long', state: 'closed', origin: 'instance-b', untilMs: Date.now() }),
      );
      assert.deepEqual(await a.current(), []);
      await Promise.all([a.close(), b.close()]);
    });

    test('a stopped watcher hears nothing more', async () => {
      const [a, b] = await makePair();
      const heard: ReplicaVerdict[] = [];
      const other: ReplicaVerdict[] = [];
      const stop = await b.watch((v) => heard.push(v));
      await b.watch((v) => other.push(v));
      stop();
      await a.publish(verdict({ replica: 'r-stop' }));
      await until(() => other.length === 1);
      assert.deepEqual(heard, []);
      await a.publish(verdict({ replica: 'r-stop', state: 'closed', untilMs: Date.now() }));
      await Promise.all([a.close(), b.close()]);
    });
  });
}
