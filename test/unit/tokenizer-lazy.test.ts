/**
 * The o200k encoding (about a quarter of a second to load and 20-30 MB of heap) is loaded only by a
 * process that counts tokens: loading the gateway's roles (what `mcpgw start` does, for an edge too) does
 * not load it; the first count does, and that count is the tokenizer's own.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';

v8.setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const heapMb = (): number => {
  gc();
  gc();
  return process.memoryUsage().heapUsed / 1048576;
};

test('the roles load without the token encoding; the first count loads it', async () => {
  await Promise.all([
    import('../../cli/single.js'),
    import('../../cli/core.js'),
    import('../../cli/edge.js'),
  ]);
  const { TokenCounter } = await import('../../core/rest/token-budget.js');
  const counter = new TokenCounter();
  const before = heapMb();
  assert.equal(counter.count('hello world, the quick brown fox'), 7);
  const grown = heapMb() - before;
  assert.ok(
    grown > 10,
    `the first count grew the heap by ${grown.toFixed(1)} MB: the encoding was already loaded`,
  );
});
