/**
 * The ApiKeyStore contract on every adapter: memory, and Redis on the machine's real server
 * (`redis://127.0.0.1:6379`, or MCPGW_TEST_REDIS_URL), the latter with its local cache on and off.
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { MemoryApiKeyStore } from '../../shared/adapters/memory/api-key-store.js';
import { RedisApiKeyStore } from '../../shared/adapters/redis/api-key-store.js';
import { apiKeyStoreContract } from './api-key-store.contract.js';

const REDIS_URL = process.env.MCPGW_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const run = randomBytes(6).toString('hex');

apiKeyStoreContract('memory', {
  pair: async () => {
    const s = new MemoryApiKeyStore();
    return [s, s];
  },
});

for (const cacheTtlMs of [30_000, 0]) {
  const keyPrefix = `mcpgw-test-keys-${run}-${cacheTtlMs}`;
  apiKeyStoreContract(`redis (cacheTtlMs ${cacheTtlMs})`, {
    pair: async () => {
      const a = new RedisApiKeyStore(REDIS_URL, { keyPrefix, cacheTtlMs });
      const b = new RedisApiKeyStore(REDIS_URL, { keyPrefix, cacheTtlMs });
      await Promise.all([a.whenSubscribed(), b.whenSubscribed()]);
      return [a, b];
    },
    teardown: async () => {
      const c = new Redis(REDIS_URL);
      await c.del(`${keyPrefix}:apikeys`);
      await c.quit();
    },
  });
}
