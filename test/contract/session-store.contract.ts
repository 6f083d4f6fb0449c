/**
 * The SessionStore contract, checked the way a user of the port sees it. Every adapter runs this suite
 * (see session-store.test.ts), so the memory adapter stays a faithful stand-in for the Redis one.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { SessionRecord, SessionStore } from '../../shared/ports/session-store.js';

export interface SessionStoreContractOptions {
  /** Runs after the suite and after every store has been closed, e.g. to delete keys. */
  teardown?: () => Promise<void>;
}

// Long enough for any check to run before expiry on a busy machine; Redis and memory never reach it.
const LONG = 60_000;
const SHORT = 150;
// Comfortably past SHORT, so expiry is certain, while still short of the 300 ms records used below.
const PAST_SHORT = 450;

export function sessionStoreContract(
  name: string,
  makeStore: () => SessionStore | Promise<SessionStore>,
  opts: SessionStoreContractOptions = {},
): void {
  describe(`SessionStore contract: ${name}`, () => {
    const stores: SessionStore[] = [];
    const open = async (): Promise<SessionStore> => {
      const store = await makeStore();
      stores.push(store);
      return store;
    };
    after(async () => {
      await Promise.all(stores.map((s) => s.close()));
      await opts.teardown?.();
    });

    test('get returns what put stored, as a copy that is not shared with the store', async () => {
      const store = await open();
      const r = record();
      const expected = structuredClone(r);
      await store.put(r, LONG);
      // The caller keeps its object; changing it afterwards must not reach the store.
      r.principal = 'mallory';
      (r.clientCapabilities as Record<string, unknown>).sampling = { changed: true };
      const got = await store.get(expected.id);
      assert.deepEqual(got, expected);
      assert.ok(got);
      got.scope = 'other';
      got.backendSessions.weather = { protocolVersion: 'changed' };
      assert.deepEqual(await store.get(expected.id), expected);
    });

    test('JSON values come back unchanged (empty objects, unicode, nesting, numbers)', async () => {
      const store = await open();
      const r = record({
        clientInfo: {
          name: 'ünïcødé 🚀',
          quote: 'a "b" \\ \n {c} %7B',
          nested: { deep: [1, 'two', null, { three: 3.5, big: Number.MAX_SAFE_INTEGER, neg: -0.125 }] },
          empty: {},
          emptyList: [],
          flag: false,
        },
        clientCapabilities: {},
        backendSessions: {},
      });
      await store.put(r, LONG);
      assert.deepEqual(await store.get(r.id), r);
    });

    test('unknown ids: get gives undefined, touch gives false, delete is a no-op', async () => {
      const store = await open();
      const id = randomUUID();
      assert.equal(await store.get(id), undefined);
      assert.equal(await store.touch(id, LONG), false);
      await store.delete(id);
      assert.equal(await store.get(id), undefined, 'touch of an unknown id must not create a record');
    });

    test('put replaces an existing record', async () => {
      const store = await open();
      const r = record();
      await store.put(r, LONG);
      const replaced = { ...r, protocolVersion: '2025-11-25', backendSessions: {} };
      await store.put(replaced, LONG);
      assert.deepEqual(await store.get(r.id), replaced);
    });

    test('expiry runs from the last put or touch: touch extends it, and can also shorten it', async () => {
      const store = await open();
      const expires = record();
      const shortenedByPut = record();
      const extendedByTouch = record();
      const shortenedByTouch = record();
      const control = record();
      await store.put(expires, SHORT);
      await store.put(shortenedByPut, LONG);
      await store.put(shortenedByPut, SHORT);
      await store.put(extendedByTouch, 300);
      assert.equal(await store.touch(extendedByTouch.id, LONG), true);
      await store.put(shortenedByTouch, LONG);
      assert.equal(await store.touch(shortenedByTouch.id, SHORT), true);
      await store.put(control, LONG);

      await sleep(PAST_SHORT);

      assert.equal(await store.get(expires.id), undefined, 'expired after its ttl');
      assert.equal(await store.get(shortenedByPut.id), undefined, 'the second put set a shorter ttl');
      assert.ok(await store.get(extendedByTouch.id), 'touch extended it past its first ttl');
      assert.equal(await store.get(shortenedByTouch.id), undefined, 'touch sets the expiry from now');
      assert.ok(await store.get(control.id));
      assert.equal(await store.touch(expires.id, LONG), false, 'an expired session cannot be touched');
      assert.equal(await store.get(expires.id), undefined, 'touch must not bring it back');
    });

    test('touch updates lastSeenAt and nothing else', async () => {
      const store = await open();
      const r = record({ lastSeenAt: Date.now() - 60_000 });
      await store.put(r, LONG);
      const before = Date.now();
      assert.equal(await store.touch(r.id, LONG), true);
      const afterTouch = Date.now();
      const got = await store.get(r.id);
      assert.ok(got);
      assert.ok(
        got.lastSeenAt >= before && got.lastSeenAt <= afterTouch,
        `lastSeenAt ${got.lastSeenAt} not within [${before}, ${afterTouch}]`,
      );
      assert.deepEqual({ ...got, lastSeenAt: r.lastSeenAt }, r);
    });

    test('delete forgets the record; touch after delete gives false', async () => {
      const store = await open();
      const r = record();
      await store.put(r, LONG);
      await store.delete(r.id);
      assert.equal(await store.get(r.id), undefined);
      assert.equal(await store.touch(r.id, LONG), false);
    });

    test('sessions are isolated, whatever characters their ids hold', async () => {
      const store = await open();
      const tag = randomUUID();
      // Ids that would break a naive key layout: braces end a Cluster hash tag, colons separate key parts.
      const ids = ['', ':', 'a', 'a}:session', '{a}', 'a:b', '50%', '%7D', 'ünï 🚀'].map((s) => `${tag}${s}`);
      const records = ids.map((id, i) => record({ id, principal: `user:${i}` }));
      for (const r of records) await store.put(r, LONG);
      for (const r of records) assert.deepEqual(await store.get(r.id), r);

      const [gone, touched, ...rest] = records;
      assert.ok(gone && touched);
      await store.delete(gone.id);
      assert.equal(await store.touch(touched.id, LONG), true);
      assert.equal(await store.get(gone.id), undefined);
      for (const r of rest) assert.deepEqual(await store.get(r.id), r, `record ${JSON.stringify(r.id)}`);
    });

    test('setBackendSession records and forgets one backend without touching the others', async () => {
      const store = await open();
      const r = record({ backendSessions: {} });
      await store.put(r, LONG);
      // Replicas open backend sessions for one client session concurrently: none may lose another's.
      await Promise.all(
        ['alpha', 'beta', 'gamma'].map((server) =>
          store.setBackendSession(r.id, server, {
            sessionId: `sid-${server}`,
            protocolVersion: '2025-11-25',
            initializeResult: { capabilities: { tools: {} }, serverInfo: { name: server } },
          }),
        ),
      );
      const got = await store.get(r.id);
      assert.deepEqual(Object.keys(got!.backendSessions).sort(), ['alpha', 'beta', 'gamma']);
      assert.deepEqual(got!.backendSessions.beta, {
        sessionId: 'sid-beta',
        protocolVersion: '2025-11-25',
        initializeResult: { capabilities: { tools: {} }, serverInfo: { name: 'beta' } },
      });
      assert.equal(got!.principal, r.principal, 'the rest of the record is untouched');
      await store.setBackendSession(r.id, 'beta', undefined);
      assert.deepEqual(Object.keys((await store.get(r.id))!.backendSessions).sort(), ['alpha', 'gamma']);
    });

    test('setBackendSession on an unknown or deleted session creates nothing', async () => {
      const store = await open();
      const r = record();
      await store.setBackendSession(r.id, 'alpha', { protocolVersion: '2025-11-25' });
      assert.equal(await store.get(r.id), undefined);
      await store.put(r, LONG);
      await store.delete(r.id);
      await store.setBackendSession(r.id, 'alpha', { protocolVersion: '2025-11-25' });
      assert.equal(await store.get(r.id), undefined);
    });
  });
}

function record(overrides: Partial<SessionRecord> = {}): SessionRecord {
  const now = Date.now();
  return {
    id: randomUUID(),
    principal: 'user:alice',
    scope: 'aggregate',
    protocolVersion: '2025-06-18',
    clientInfo: { name: 'contract-test', version: '1.0.0' },
    clientCapabilities: { sampling: {}, roots: { listChanged: true } },
    backendSessions: {
      weather: { sessionId: 'backend-1', protocolVersion: '2025-06-18' },
      files: { protocolVersion: '2025-03-26' },
    },
    createdAt: now,
    lastSeenAt: now,
    ...overrides,
  };
}
