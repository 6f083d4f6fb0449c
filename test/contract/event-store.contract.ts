/**
 * The EventStore contract, checked the way a user of the port (a resumable SSE stream) sees it. Every
 * adapter runs this suite (see event-store.test.ts). Event ids are treated as opaque: nothing here knows
 * their format beyond "a string the store handed out".
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { EventStore, StoredEvent } from '../../shared/ports/event-store.js';

/** The retention options every EventStore adapter takes. */
export interface EventRetention {
  maxEventsPerStream?: number;
  maxAgeMs?: number;
}

export interface EventStoreContractOptions {
  /** Runs after the suite and after every store has been closed, e.g. to delete keys. */
  teardown?: () => Promise<void>;
}

// Short enough to keep the suite quick, long enough that a fresh event cannot age out before it is read.
const MAX_AGE = 250;
const PAST_MAX_AGE = 400;

export function eventStoreContract(
  name: string,
  makeStore: (retention: EventRetention) => EventStore | Promise<EventStore>,
  opts: EventStoreContractOptions = {},
): void {
  describe(`EventStore contract: ${name}`, () => {
    const stores: EventStore[] = [];
    const open = async (retention: EventRetention = {}): Promise<EventStore> => {
      const store = await makeStore(retention);
      stores.push(store);
      return store;
    };
    after(async () => {
      await Promise.all(stores.map((s) => s.close()));
      await opts.teardown?.();
    });

    test('append returns ids that are unique within a session, across its streams', async () => {
      const store = await open();
      const session = randomUUID();
      const ids: string[] = [];
      for (let i = 0; i < 5; i++)
        for (const stream of ['a', 'b', 'c']) ids.push(await store.append(session, stream, { i, stream }));
      assert.ok(ids.every((id) => typeof id === 'string' && id.length > 0));
      assert.equal(new Set(ids).size, ids.length);
    });

    test("an id names its stream: replay gives only that stream's later events, in order", async () => {
      const store = await open();
      const session = randomUUID();
      const a1 = await store.append(session, 'a', msg('a1'));
      const b1 = await store.append(session, 'b', msg('b1'));
      const a2 = await store.append(session, 'a', msg('a2'));
      const b2 = await store.append(session, 'b', msg('b2'));
      const a3 = await store.append(session, 'a', msg('a3'));

      assert.deepEqual(await store.replayAfter(session, a1), {
        streamId: 'a',
        events: [
          { id: a2, message: msg('a2') },
          { id: a3, message: msg('a3') },
        ],
      });
      assert.deepEqual(await store.replayAfter(session, a2), {
        streamId: 'a',
        events: [{ id: a3, message: msg('a3') }],
      });
      assert.deepEqual(await store.replayAfter(session, b1), {
        streamId: 'b',
        events: [{ id: b2, message: msg('b2') }],
      });
      assert.deepEqual(await store.replayAfter(session, a3), { streamId: 'a', events: [] });
      assert.deepEqual(await store.replayAfter(session, b2), { streamId: 'b', events: [] });
    });

    test('messages are JSON values kept as appended, never live objects', async () => {
      const store = await open();
      const session = randomUUID();
      const first = await store.append(session, 's', msg('first'));
      const message = {
        jsonrpc: '2.0',
        method: 'notifications/progress',
        params: {
          progressToken: 'ünï 🚀 "q" \\ \n {t}',
          progress: 0.5,
          big: Number.MAX_SAFE_INTEGER,
          nested: [{ deep: [null, true, false, 0, -1.25, 'x'] }],
          empty: {},
          emptyList: [],
        },
      };
      const expected = structuredClone(message);
      const id = await store.append(session, 's', message);
      message.params.progress = 1;
      message.params.nested.push({ deep: [] });
      await store.append(session, 's', 'a plain string');
      await store.append(session, 's', null);

      const replay = await store.replayAfter(session, first);
      assert.deepEqual(replay?.events[0], { id, message: expected });
      assert.deepEqual(
        replay?.events.slice(1).map((e) => e.message),
        ['a plain string', null],
      );
      // What a replay hands out is the caller's to change.
      (replay?.events[0]?.message as typeof message).params.progress = 99;
      assert.deepEqual((await store.replayAfter(session, first))?.events[0], { id, message: expected });
    });

    test('unknown, malformed and foreign ids replay nothing (undefined)', async () => {
      const store = await open();
      const session = randomUUID();
      const other = randomUUID();
      const a1 = await store.append(session, 'a', msg('a1'));
      await store.append(session, 'a', msg('a2'));
      const b1 = await store.append(other, 'b', msg('b1'));

      // Never handed out: made up, or a real id corrupted (suffixed, prefixed, truncated).
      const forged = ['', '_', 'nope', 'a', `${a1}x`, `x${a1}`, `${a1}_`, `${a1}:1`, a1.slice(0, -1)];
      for (const id of forged)
        assert.equal(await store.replayAfter(session, id), undefined, `id ${JSON.stringify(id)}`);
      assert.equal(await store.replayAfter(session, b1), undefined, "another session's id");
      assert.equal(await store.replayAfter(randomUUID(), a1), undefined, 'an id under an unknown session');
      assert.ok(await store.replayAfter(session, a1), 'the real id still works');
    });

    test('stream ids may hold any characters', async () => {
      const store = await open();
      const session = randomUUID();
      const streams = [
        '',
        '_',
        'a_b',
        'a',
        'a_1',
        'x:y',
        '{tag}',
        '}:stream:',
        '50%',
        '_GET_stream',
        'ünï 🚀',
      ];
      const firsts = new Map<string, string>();
      const seconds = new Map<string, string>();
      for (const s of streams) firsts.set(s, await store.append(session, s, { s, n: 1 }));
      for (const s of streams) seconds.set(s, await store.append(session, s, { s, n: 2 }));
      assert.equal(new Set([...firsts.values(), ...seconds.values()]).size, streams.length * 2);
      for (const s of streams) {
        assert.deepEqual(
          await store.replayAfter(session, firsts.get(s) ?? ''),
          { streamId: s, events: [{ id: seconds.get(s), message: { s, n: 2 } }] },
          `stream ${JSON.stringify(s)}`,
        );
      }
    });

    test('sessions are isolated, even with the same stream ids', async () => {
      const store = await open();
      const one = randomUUID();
      const two = randomUUID();
      const one1 = await store.append(one, 's', msg('one-1'));
      const two1 = await store.append(two, 's', msg('two-1'));
      const two2 = await store.append(two, 's', msg('two-2'));
      const one2 = await store.append(one, 's', msg('one-2'));
      assert.deepEqual(await store.replayAfter(one, one1), {
        streamId: 's',
        events: [{ id: one2, message: msg('one-2') }],
      });
      assert.deepEqual(await store.replayAfter(two, two1), {
        streamId: 's',
        events: [{ id: two2, message: msg('two-2') }],
      });
    });

    test('count retention keeps the newest events of each stream', async () => {
      const store = await open({ maxEventsPerStream: 3 });
      const session = randomUUID();
      const a: string[] = [];
      const b: string[] = [];
      for (let i = 1; i <= 5; i++) {
        a.push(await store.append(session, 'a', msg(`a${i}`)));
        if (i <= 2) b.push(await store.append(session, 'b', msg(`b${i}`)));
      }
      const [a1, a2, a3, a4, a5] = a;
      const [b1, b2] = b;
      assert.ok(a1 && a2 && a3 && a4 && a5 && b1 && b2);

      assert.deepEqual(await store.replayAfter(session, a2), {
        streamId: 'a',
        events: [
          { id: a3, message: msg('a3') },
          { id: a4, message: msg('a4') },
          { id: a5, message: msg('a5') },
        ],
      });
      const fromDropped = await store.replayAfter(session, a1);
      assert.ok(!fromDropped?.events.some((e) => e.id === a1 || e.id === a2), 'dropped events never replay');
      assert.deepEqual(
        (await store.replayAfter(session, b1))?.events.map((e) => e.id),
        [b2],
        'the bound is per stream: b keeps its events',
      );
    });

    test('age retention drops events older than maxAgeMs, with or without later appends', async () => {
      const store = await open({ maxAgeMs: MAX_AGE });
      const session = randomUUID();
      const a1 = await store.append(session, 'a', msg('a1'));
      await store.append(session, 'a', msg('a2'));
      const b1 = await store.append(session, 'b', msg('b1'));
      await store.append(session, 'b', msg('b2'));

      await sleep(PAST_MAX_AGE);

      const a3 = await store.append(session, 'a', msg('a3'));
      assert.deepEqual(await store.replayAfter(session, a1), {
        streamId: 'a',
        events: [{ id: a3, message: msg('a3') }],
      });
      assert.deepEqual(
        eventIds(await store.replayAfter(session, b1)),
        [],
        'b had no append since, and its events are just as old',
      );
    });

    test('deleteSession forgets every stream of that session and only that session', async () => {
      const store = await open();
      const gone = randomUUID();
      const kept = randomUUID();
      const a1 = await store.append(gone, 'a', msg('a1'));
      await store.append(gone, 'a', msg('a2'));
      const b1 = await store.append(gone, 'b', msg('b1'));
      await store.append(gone, 'b', msg('b2'));
      const k1 = await store.append(kept, 'a', msg('k1'));
      const k2 = await store.append(kept, 'a', msg('k2'));

      await store.deleteSession(gone);
      assert.equal(await store.replayAfter(gone, a1), undefined);
      assert.equal(await store.replayAfter(gone, b1), undefined);
      assert.deepEqual(eventIds(await store.replayAfter(kept, k1)), [k2]);
      await store.deleteSession(randomUUID());

      // A deleted session can be used again from scratch.
      const again1 = await store.append(gone, 'a', msg('again-1'));
      const again2 = await store.append(gone, 'a', msg('again-2'));
      assert.deepEqual(await store.replayAfter(gone, again1), {
        streamId: 'a',
        events: [{ id: again2, message: msg('again-2') }],
      });
    });

    test('concurrent appends to one stream get distinct ids and all replay', async () => {
      const store = await open();
      const session = randomUUID();
      const first = await store.append(session, 's', msg('first'));
      const ids = await Promise.all(Array.from({ length: 50 }, (_, i) => store.append(session, 's', { i })));
      assert.equal(new Set([first, ...ids]).size, 51);
      const replayed = eventIds(await store.replayAfter(session, first));
      assert.deepEqual([...replayed].sort(), [...ids].sort());
    });
  });
}

function msg(text: string): unknown {
  return { jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: text } };
}

function eventIds(replay: { events: StoredEvent[] } | undefined): string[] {
  return replay?.events.map((e) => e.id) ?? [];
}
