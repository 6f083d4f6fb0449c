/**
 * The ResponseCache contract, run on every adapter: what is set is read back equal until its keep time
 * ends, a zero keep time stores nothing, delete removes, and keys are independent.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { CachedResponse, ResponseCache } from '../../shared/ports/response-cache.js';

export function responseCacheContract(
  name: string,
  make: () => Promise<ResponseCache>,
  options: { teardown?: () => Promise<void> } = {},
): void {
  const entry = (n: number, over: Partial<CachedResponse> = {}): CachedResponse => ({
    result: { content: [{ type: 'text', text: `r${n}` }], structuredContent: { n, nested: { ü: 'ß' } } },
    storedAt: Date.now(),
    freshUntil: Date.now() + 60_000,
    ...over,
  });

  describe(`ResponseCache contract: ${name}`, () => {
    if (options.teardown) test.after(options.teardown);

    test('reads back what was set, equal, per key', async () => {
      const c = await make();
      await c.set('k1', entry(1), 60_000);
      await c.set('k2', entry(2, { negative: true }), 60_000);
      assert.deepEqual(
        await c.get('k1'),
        entry(1, { storedAt: (await c.get('k1'))!.storedAt, freshUntil: (await c.get('k1'))!.freshUntil }),
      );
      assert.equal((await c.get('k2'))?.negative, true);
      assert.equal(await c.get('k3'), undefined);
      await c.close();
    });

    test('an entry is gone after its keep time; zero keeps nothing', async () => {
      const c = await make();
      await c.set('short', entry(1), 100);
      await c.set('zero', entry(2), 0);
      assert.ok(await c.get('short'));
      assert.equal(await c.get('zero'), undefined);
      await new Promise((r) => setTimeout(r, 160)); // the keep time is what is tested
      assert.equal(await c.get('short'), undefined);
      await c.close();
    });

    test('delete removes; set replaces', async () => {
      const c = await make();
      await c.set('d', entry(1), 60_000);
      await c.set('d', entry(9), 60_000);
      assert.equal(((await c.get('d'))!.result.structuredContent as { n: number }).n, 9);
      await c.delete('d');
      assert.equal(await c.get('d'), undefined);
      await c.close();
    });
  });
}
