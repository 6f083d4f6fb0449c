/**
 * The ApiKeyStore contract as an edge sees it. Every adapter runs this suite (api-key-store.test.ts):
 * records round-trip, revocation sticks, and a change made through one handle is announced on, and
 * served by, every other handle of the same store (two edges sharing it).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, describe, test } from 'node:test';
import type { ApiKeyRecord, ApiKeyStore } from '../../shared/ports/api-key-store.js';

export interface ApiKeyStoreContractOptions {
  /** Two handles on one store, as two edges would hold (memory: the same object twice). */
  pair: () => Promise<[ApiKeyStore, ApiKeyStore]>;
  teardown?: () => Promise<void>;
}

export function sampleKey(over: Partial<ApiKeyRecord> = {}): ApiKeyRecord {
  return {
    id: `k${randomBytes(6).toString('hex')}`,
    hash: `hmac-sha256:${randomBytes(32).toString('base64url')}`,
    owner: 'svc-reporting',
    tenant: 'acme',
    roles: ['reader'],
    scopes: ['mcp:access'],
    createdAt: Date.now(),
    revoked: false,
    ...over,
  };
}

/** Resolves when `store` announces a change of `id`. */
export function changeOf(store: ApiKeyStore, id: string): Promise<void> {
  return new Promise((resolve) => {
    const off = store.onChange((changed) => {
      if (changed !== id) return;
      off();
      resolve();
    });
  });
}

export function apiKeyStoreContract(name: string, o: ApiKeyStoreContractOptions): void {
  describe(`ApiKeyStore contract: ${name}`, () => {
    const opened: ApiKeyStore[] = [];
    const pair = async () => {
      const p = await o.pair();
      opened.push(...p);
      return p;
    };
    after(async () => {
      await Promise.all([...new Set(opened)].map((s) => s.close()));
      await o.teardown?.();
    });

    test('an unknown id has no record', async () => {
      const [s] = await pair();
      assert.equal(await s.get('nosuchkey'), undefined);
    });

    test('a record round-trips, and list has it (ordered by id)', async () => {
      const [s] = await pair();
      const a = sampleKey({ id: 'aaa111', expiresAt: Date.now() + 60_000, description: 'reports' });
      const b = sampleKey({ id: 'bbb222' });
      await s.put(b);
      await s.put(a);
      assert.deepEqual(await s.get('aaa111'), a);
      const ids = (await s.list()).map((r) => r.id);
      assert.ok(ids.indexOf('aaa111') < ids.indexOf('bbb222') && ids.includes('aaa111'));
    });

    test('what get returns is a copy: changing it changes nothing stored', async () => {
      const [s] = await pair();
      const k = sampleKey();
      await s.put(k);
      const got = (await s.get(k.id))!;
      got.roles.push('admin');
      got.revoked = true;
      assert.deepEqual(await s.get(k.id), k);
    });

    test('revoke marks the key revoked and keeps it listed; an unknown id is false', async () => {
      const [s] = await pair();
      const k = sampleKey();
      await s.put(k);
      assert.equal(await s.revoke(k.id), true);
      assert.equal((await s.get(k.id))?.revoked, true);
      assert.equal((await s.list()).find((r) => r.id === k.id)?.revoked, true);
      assert.equal(await s.revoke('nosuchkey'), false);
    });

    test('a revocation through one handle is announced on the other, which then serves it', async () => {
      const [writer, reader] = await pair();
      const k = sampleKey();
      await writer.put(k);
      // The reader looks the key up first, so that a cache of it would hold the old record.
      assert.equal((await reader.get(k.id))?.revoked, false);
      const announced = changeOf(reader, k.id);
      await writer.revoke(k.id);
      await announced;
      assert.equal((await reader.get(k.id))?.revoked, true);
    });

    test('a replaced record (rotation of grants) is served by the other handle once announced', async () => {
      const [writer, reader] = await pair();
      const k = sampleKey();
      await writer.put(k);
      await reader.get(k.id);
      const announced = changeOf(reader, k.id);
      await writer.put({ ...k, roles: ['admin'] });
      await announced;
      assert.deepEqual((await reader.get(k.id))?.roles, ['admin']);
    });
  });
}
