/** The pure 2026 helpers the core uses toward 2026 backends (shared/mcp/eras.ts). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  encodeHeaderValue,
  legacyResult,
  paramHeaders,
  paramHeaderValues,
  withEnvelope,
} from '../../shared/mcp/eras.js';

test('header values: plain visible ASCII as is, anything else in the Base64 sentinel form', () => {
  assert.equal(encodeHeaderValue('eu-west'), 'eu-west');
  assert.equal(encodeHeaderValue('eu-ö'), '=?base64?ZXUtw7Y=?=');
  assert.equal(encodeHeaderValue(''), '=?base64??=');
  assert.equal(encodeHeaderValue(' padded'), `=?base64?${Buffer.from(' padded').toString('base64')}?=`);
  assert.equal(
    encodeHeaderValue('=?base64?abc?='),
    `=?base64?${Buffer.from('=?base64?abc?=').toString('base64')}?=`,
  );
});

test('x-mcp-header declarations are reached through properties only, on primitive types', () => {
  const decls = paramHeaders({
    type: 'object',
    properties: {
      region: { type: 'string', 'x-mcp-header': 'Region' },
      nested: { type: 'object', properties: { n: { type: 'integer', 'x-mcp-header': 'N' } } },
      list: { type: 'array', items: { type: 'string', 'x-mcp-header': 'Item' } },
      obj: { type: 'object', 'x-mcp-header': 'Obj' },
      bad: { type: 'string', 'x-mcp-header': 'has space' },
    },
  });
  assert.deepEqual(decls, [
    { header: 'Region', path: ['region'] },
    { header: 'N', path: ['nested', 'n'] },
  ]);
  assert.deepEqual(paramHeaderValues(decls, { region: 'eu-ö', nested: { n: 42 } }), {
    'mcp-param-region': '=?base64?ZXUtw7Y=?=',
    'mcp-param-n': '42',
  });
  assert.deepEqual(paramHeaderValues(decls, { region: null }), {}, 'absent or null: no header');
});

test('the envelope carries the caller, without tasks; 2026 result fields never reach a 2025 client', () => {
  const p = withEnvelope(
    { name: 't', _meta: { progressToken: 3 } },
    {
      clientCapabilities: { sampling: {}, tasks: {} },
      clientInfo: { name: 'c', version: '1' },
      logLevel: 'info',
    },
  );
  assert.deepEqual(p._meta, {
    progressToken: 3,
    'io.modelcontextprotocol/protocolVersion': '2026-07-28',
    'io.modelcontextprotocol/clientCapabilities': { sampling: {} },
    'io.modelcontextprotocol/clientInfo': { name: 'c', version: '1' },
    'io.modelcontextprotocol/logLevel': 'info',
  });
  const plain = { content: [] };
  assert.equal(legacyResult(plain), plain, 'nothing to strip: the same object');
  assert.deepEqual(
    legacyResult({
      tools: [],
      resultType: 'complete',
      ttlMs: 5,
      cacheScope: 'public',
      _meta: { 'io.modelcontextprotocol/serverInfo': { name: 's' }, other: 1 },
    }),
    { tools: [], _meta: { other: 1 } },
  );
});
