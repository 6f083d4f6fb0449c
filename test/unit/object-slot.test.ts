/**
 * ObjectSlot keeps a value beside an object the way the WeakMaps it replaced did: per object, per slot,
 * invisible to everything that copies or serialises the object (a message's JSON text must never follow
 * a spread copy whose params were changed), and still working for objects that take no new property.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ObjectSlot } from '../../shared/object-slot.js';
import { jsonBytesOf, keepJsonText } from '../../shared/mcp/json-text.js';

test('a value per object and per slot, and replaced', () => {
  const a = new ObjectSlot<object, string>('a');
  const b = new ObjectSlot<object, string>('b');
  const o = {};
  assert.equal(a.get(o), undefined);
  a.set(o, 'one');
  b.set(o, 'other');
  assert.equal(a.get(o), 'one');
  assert.equal(b.get(o), 'other');
  assert.equal(a.get({}), undefined, 'another object has none');
  a.set(o, 'two');
  assert.equal(a.get(o), 'two');
  assert.equal(b.get(o), 'other', 'replacing one slot leaves the other');
});

test('copies, JSON, keys and structured clones do not carry the value', () => {
  const slot = new ObjectSlot<object, string>('hidden');
  const m = { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'echo' } };
  slot.set(m, 'secret-ish');
  assert.equal(slot.get({ ...m }), undefined);
  assert.equal(slot.get(Object.assign({}, m)), undefined);
  assert.equal(slot.get(structuredClone(m)), undefined);
  assert.deepEqual(Object.keys(m), ['jsonrpc', 'id', 'method', 'params']);
  assert.equal(JSON.stringify(m), '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}');
});

test('frozen and non-extensible objects keep their value too', () => {
  const slot = new ObjectSlot<object, number>('frozen');
  const f = Object.freeze({ x: 1 });
  const n = Object.preventExtensions({ y: 2 });
  slot.set(f, 1);
  slot.set(n, 2);
  assert.equal(slot.get(f), 1);
  assert.equal(slot.get(n), 2);
  slot.set(f, 3);
  assert.equal(slot.get(f), 3);
});

test('a message changed into a new object by a spread is serialised again, not sent as its old text', () => {
  const text = '{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"a"}}';
  const m = keepJsonText(JSON.parse(text) as Record<string, unknown>, text);
  assert.equal(jsonBytesOf(m), text);
  const changed = { ...m, params: { name: 'b' } };
  assert.equal(jsonBytesOf(changed), '{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"b"}}');
});
