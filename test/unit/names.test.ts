import assert from 'node:assert/strict';
import { test } from 'node:test';
import { exposedName, NameMap, splitExposedName } from '../../shared/mcp/names.js';
import { decodeCursor, encodeCursor, paginate } from '../../shared/mcp/cursor.js';
import { matchUriTemplate } from '../../core/mcp/uri-template.js';

test('plain names are server__name; invalid or long ones get a stable hashed name under 64', () => {
  assert.equal(exposedName('github', 'create_issue'), 'github__create_issue');
  const dotted = exposedName('fs', 'files.read');
  assert.match(dotted, /^fs__files_read_[a-zA-Z0-9]{10}$/);
  assert.equal(exposedName('fs', 'files.read'), dotted, 'deterministic');
  const long = exposedName('srv', 'x'.repeat(200));
  assert.ok(long.length <= 64);
  assert.match(long, /^[a-zA-Z0-9_-]{1,64}$/);
  assert.notEqual(exposedName('srv', 'x'.repeat(200)), exposedName('srv', 'x'.repeat(201)));
});

test('NameMap steps around collisions and maps back', () => {
  const m = new NameMap();
  const a = m.assign('s', 'a.b');
  const b = m.assign('s', 'a_b');
  assert.notEqual(a, b);
  assert.deepEqual(m.resolve(a), { server: 's', name: 'a.b' });
  assert.deepEqual(m.resolve(b), { server: 's', name: 'a_b' });
  assert.equal(m.assign('s', 'a.b'), a);
  m.clearServer('s');
  assert.equal(m.resolve(a), undefined);
});

test('splitExposedName splits at the first separator', () => {
  assert.deepEqual(splitExposedName('a__b__c'), { server: 'a', name: 'b__c' });
  assert.deepEqual(splitExposedName('a___b'), { server: 'a', name: '_b' });
  assert.equal(splitExposedName('plain'), undefined);
});

test('cursors are opaque, bound to their list, and tamper-evident', () => {
  const c = encodeCursor('s1:tools', 50);
  assert.equal(decodeCursor('s1:tools', c), 50);
  assert.equal(decodeCursor('s1:prompts', c), undefined);
  assert.equal(decodeCursor('s1:tools', c.slice(0, -2) + 'xx'), undefined);
  assert.equal(decodeCursor('s1:tools', 42), undefined);
  const items = Array.from({ length: 7 }, (_, i) => i);
  const p1 = paginate('k', items, undefined, 3)!;
  assert.deepEqual(p1.page, [0, 1, 2]);
  const p3 = paginate('k', items, paginate('k', items, p1.nextCursor, 3)!.nextCursor, 3)!;
  assert.deepEqual(p3.page, [6]);
  assert.equal(p3.nextCursor, undefined);
});

test('URI templates match what they describe', () => {
  assert.ok(matchUriTemplate('demo://resource/dynamic/text/{id}', 'demo://resource/dynamic/text/7'));
  assert.ok(!matchUriTemplate('demo://resource/dynamic/text/{id}', 'demo://resource/dynamic/text/7/x'));
  assert.ok(matchUriTemplate('file:///{+path}', 'file:///a/b/c.txt'));
  assert.ok(matchUriTemplate('search://q{?term,limit}', 'search://q?term=x&limit=2'));
  assert.ok(!matchUriTemplate('notes://{name}', 'other://x'));
});
