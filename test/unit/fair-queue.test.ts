/**
 * The backend admission queue's order: users take turns within a class, higher classes go first, the
 * queue is bounded, and a waiter that gets no slot in time is told so.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FairQueue } from '../../edge/quota/fair-queue.js';

const opts = { maxConcurrent: 1, maxQueue: 100, queueTimeoutMs: 5_000, classes: ['high', 'default'] };

test('users take turns: a flood of one user does not go before another user', async () => {
  const q = new FairQueue(opts, 's');
  const first = await q.acquire('heavy', 'default');
  const order: string[] = [];
  const waits = [
    ...Array.from({ length: 5 }, (_, i) => ['heavy', i] as const),
    ['light', 0] as const,
    ['light', 1] as const,
  ].map(([u, i]) =>
    q.acquire(u, 'default').then((release) => {
      order.push(`${u}${i}`);
      release();
    }),
  );
  first();
  await Promise.all(waits);
  assert.deepEqual(order, ['heavy0', 'light0', 'heavy1', 'light1', 'heavy2', 'heavy3', 'heavy4']);
});

test('a higher class is served first; unknown classes are the lowest', async () => {
  const q = new FairQueue(opts, 's');
  const first = await q.acquire('a', 'default');
  const order: string[] = [];
  const waits = [
    ['low', 'nonsense'],
    ['mid', 'default'],
    ['top', 'high'],
  ].map(([u, c]) =>
    q.acquire(u!, c!).then((release) => {
      order.push(u!);
      release();
    }),
  );
  first();
  await Promise.all(waits);
  assert.deepEqual(order, ['top', 'low', 'mid']);
});

test('bounded: GW_QUEUE_FULL at once beyond maxQueue; GW_QUEUE_TIMEOUT after the timeout', async () => {
  const q = new FairQueue({ ...opts, maxQueue: 1, queueTimeoutMs: 50 }, 'slowsrv');
  const held = await q.acquire('a', 'default');
  const waiting = q.acquire('b', 'default');
  await assert.rejects(
    q.acquire('c', 'default'),
    (e: Error & { code?: string }) => e.code === 'GW_QUEUE_FULL',
  );
  await assert.rejects(waiting, (e: Error & { code?: string; detail?: Record<string, unknown> }) => {
    assert.equal(e.code, 'GW_QUEUE_TIMEOUT');
    assert.equal(e.detail?.server, 'slowsrv');
    return true;
  });
  assert.deepEqual(q.stats, { inFlight: 1, waiting: 0 });
  held();
  held(); // a second release is harmless
  assert.deepEqual(q.stats, { inFlight: 0, waiting: 0 });
});
