/**
 * The QuotaStore contract, run on every adapter: GCRA counters that admit exactly `burst` at once and
 * then one per interval, all-or-nothing decisions across dimensions, and concurrency leases that are
 * released, renewed, and expire when their holder stops renewing them.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { ConcurrencyDimension, QuotaStore, RateDimension } from '../../shared/ports/quota-store.js';

export interface ContractOptions {
  teardown?: () => Promise<void>;
}

const rate = (key: string, limit: number, windowMs: number, burst = limit): RateDimension => ({
  key,
  slot: key,
  limit,
  windowMs,
  burst,
});
const lease = (key: string, limit: number, leaseMs = 60_000): ConcurrencyDimension => ({
  key,
  slot: key,
  limit,
  leaseId: randomUUID(),
  leaseMs,
});

export function quotaStoreContract(
  name: string,
  make: () => QuotaStore | Promise<QuotaStore>,
  options: ContractOptions = {},
): void {
  describe(`QuotaStore contract: ${name}`, () => {
    let store: QuotaStore;
    before(async () => {
      store = await make();
    });
    after(async () => {
      await store.close();
      await options.teardown?.();
    });

    test('admits exactly the burst at once, then refuses with the time until the next one', async () => {
      const d = rate(`u-${randomUUID()}`, 5, 60_000);
      const seen = [];
      for (let i = 0; i < 7; i++) seen.push(await store.consume({ rates: [d] }));
      assert.deepEqual(
        seen.map((s) => s.allowed),
        [true, true, true, true, true, false, false],
      );
      assert.deepEqual(
        seen.slice(0, 5).map((s) => s.rates[0]!.remaining),
        [4, 3, 2, 1, 0],
      );
      const denied = seen[5]!.rates[0]!;
      assert.equal(denied.remaining, 0);
      // One slot frees every 12 s (60 s / 5).
      assert.ok(denied.retryAfterMs > 11_000 && denied.retryAfterMs <= 12_000, `${denied.retryAfterMs}`);
      assert.ok(denied.resetMs > 59_000 && denied.resetMs <= 60_000, `${denied.resetMs}`);
    });

    test('a burst smaller than the limit caps what may be spent at once', async () => {
      const d = rate(`b-${randomUUID()}`, 100, 60_000, 3);
      const seen = [];
      for (let i = 0; i < 4; i++) seen.push((await store.consume({ rates: [d] })).allowed);
      assert.deepEqual(seen, [true, true, true, false]);
    });

    test('slots come back at the sustained rate', async () => {
      // Long enough that a busy machine's scheduling does not hand a unit back between the calls.
      const d = rate(`s-${randomUUID()}`, 2, 1200);
      assert.ok((await store.consume({ rates: [d] })).allowed);
      assert.ok((await store.consume({ rates: [d] })).allowed);
      const denied = await store.consume({ rates: [d] });
      assert.equal(denied.allowed, false);
      await new Promise((r) => setTimeout(r, denied.rates[0]!.retryAfterMs + 15));
      assert.ok((await store.consume({ rates: [d] })).allowed, 'admitted again after retryAfterMs');
    });

    test('a cost charges several units at once', async () => {
      const d = { ...rate(`c-${randomUUID()}`, 10, 60_000), cost: 4 };
      assert.equal((await store.consume({ rates: [d] })).rates[0]!.remaining, 6);
      assert.equal((await store.consume({ rates: [d] })).rates[0]!.remaining, 2);
      assert.equal((await store.consume({ rates: [d] })).allowed, false);
    });

    test('all or nothing: a refusal on one dimension charges none of the others', async () => {
      const wide = rate(`w-${randomUUID()}`, 100, 60_000);
      const narrow = rate(`n-${randomUUID()}`, 1, 60_000);
      assert.ok((await store.consume({ rates: [wide, narrow] })).allowed);
      const refused = await store.consume({ rates: [wide, narrow] });
      assert.equal(refused.allowed, false);
      assert.deepEqual(
        refused.rates.map((r) => r.allowed),
        [true, false],
      );
      assert.equal(
        (await store.consume({ rates: [wide] })).rates[0]!.remaining,
        98,
        'the refused request did not charge the wide counter',
      );
    });

    test('keys are independent', async () => {
      const a = rate(`a-${randomUUID()}`, 1, 60_000);
      const b = rate(`b-${randomUUID()}`, 1, 60_000);
      assert.ok((await store.consume({ rates: [a] })).allowed);
      assert.ok((await store.consume({ rates: [b] })).allowed);
    });

    test('concurrency: at most `limit` leases, and a released one frees its slot', async () => {
      const key = `l-${randomUUID()}`;
      const first = lease(key, 2);
      const second = lease(key, 2);
      const r1 = await store.consume({ rates: [], concurrency: [first] });
      const r2 = await store.consume({ rates: [], concurrency: [second] });
      assert.deepEqual(
        [r1.concurrency[0], r2.concurrency[0]],
        [
          { allowed: true, inUse: 1 },
          { allowed: true, inUse: 2 },
        ],
      );
      const r3 = await store.consume({ rates: [], concurrency: [lease(key, 2)] });
      assert.deepEqual(r3.concurrency[0], { allowed: false, inUse: 2 });
      await store.release([first]);
      assert.ok((await store.consume({ rates: [], concurrency: [lease(key, 2)] })).allowed);
    });

    test('a full concurrency dimension charges no rate counter', async () => {
      const key = `lc-${randomUUID()}`;
      const r = rate(`lr-${randomUUID()}`, 10, 60_000);
      assert.ok((await store.consume({ rates: [r], concurrency: [lease(key, 1)] })).allowed);
      const refused = await store.consume({ rates: [r], concurrency: [lease(key, 1)] });
      assert.equal(refused.allowed, false);
      assert.equal((await store.consume({ rates: [r] })).rates[0]!.remaining, 8);
    });

    test('a lease its holder stops renewing expires; a renewed one stays', async () => {
      const key = `le-${randomUUID()}`;
      const kept = lease(key, 2, 150);
      const dropped = lease(key, 2, 150);
      assert.ok((await store.consume({ rates: [], concurrency: [kept] })).allowed);
      assert.ok((await store.consume({ rates: [], concurrency: [dropped] })).allowed);
      await new Promise((r) => setTimeout(r, 90));
      await store.renew([kept]);
      await new Promise((r) => setTimeout(r, 90));
      const after = await store.consume({ rates: [], concurrency: [lease(key, 2, 150)] });
      assert.deepEqual(after.concurrency[0], { allowed: true, inUse: 2 }, 'the dropped lease expired');
      const full = await store.consume({ rates: [], concurrency: [lease(key, 2, 150)] });
      assert.equal(full.allowed, false, 'the renewed lease is still held');
    });

    test('releasing an unknown lease is harmless', async () => {
      await store.release([lease(`x-${randomUUID()}`, 1)]);
    });

    test('concurrent decisions never admit more than the limit', async () => {
      const d = rate(`p-${randomUUID()}`, 25, 3_600_000);
      const all = await Promise.all(Array.from({ length: 60 }, () => store.consume({ rates: [d] })));
      assert.equal(all.filter((x) => x.allowed).length, 25);
    });
  });
}
