/**
 * Sessions bound to their principal across two gateway replicas sharing Redis: the owner continues its
 * session on the other replica (with its own filtered view), another caller presenting the id there gets
 * the 404 of an unknown session, and that attempt does not spoil the session for its owner.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import type { RunningNode } from '../../cli/single.js';
import { generateApiKey } from '../../edge/auth/api-key.js';
import { MCP_HEADERS, raw, startGateway } from '../helpers/gateway.js';
import { secureServer } from '../helpers/auth.js';

const REDIS_URL = process.env.MCPGW_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const PEPPER = randomBytes(24).toString('base64url');
const alice = generateApiKey(PEPPER);
const mallory = generateApiKey(PEPPER);

describe('principal-bound sessions across replicas', () => {
  const keyPrefix = `mcpgw-test-authrep-${randomBytes(6).toString('hex')}`;
  const gws: RunningNode[] = [];

  before(async () => {
    const doc = {
      auth: {
        mode: 'api-key',
        apiKeys: {
          pepper: PEPPER,
          keys: [
            { id: alice.id, hash: alice.hash, owner: 'alice', tenant: 'acme', roles: ['viewer'] },
            { id: mallory.id, hash: mallory.hash, owner: 'mallory', tenant: 'acme', roles: ['admin'] },
          ],
        },
      },
      sessions: { store: 'redis' },
      redis: { url: REDIS_URL, keyPrefix },
      servers: [secureServer('files')],
      policy: {
        rules: [{ roles: ['viewer'], tools: ['whoami'] }, { roles: ['admin'] }],
      },
    };
    gws.push(await startGateway(doc), await startGateway(doc));
  });
  after(async () => {
    await Promise.all(gws.map((g) => g.close()));
    const c = new Redis(REDIS_URL);
    const keys = await c.keys(`${keyPrefix}*`);
    if (keys.length > 0) await c.del(...keys);
    await c.quit();
  });

  test('the owner continues on the other replica; another caller gets 404 there and spoils nothing', async () => {
    const [a, b] = gws as [RunningNode, RunningNode];
    const as = (k: { key: string }, sid?: string) => ({
      ...MCP_HEADERS,
      'x-api-key': k.key,
      ...(sid ? { 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' } : {}),
    });
    const init = await raw(`${a.url}/mcp`, {
      headers: as(alice),
      body: {
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'r', version: '1' } },
      },
    });
    const sid = init.headers.get('mcp-session-id')!;
    await raw(`${a.url}/mcp`, {
      headers: as(alice, sid),
      body: { jsonrpc: '2.0', method: 'notifications/initialized' },
    });
    const list = { jsonrpc: '2.0', id: 2, method: 'tools/list' };

    // Mallory tries first on the replica that has not seen the session yet.
    const stolen = await raw(`${b.url}/mcp`, { headers: as(mallory, sid), body: list });
    assert.equal(stolen.status, 404);
    assert.equal(stolen.json.error.data.code, 'GW_SESSION_NOT_FOUND');

    const continued = await raw(`${b.url}/mcp`, { headers: as(alice, sid), body: list });
    assert.equal(continued.status, 200, continued.text);
    assert.deepEqual(
      continued.json.result.tools.map((t: any) => t.name),
      ['files__whoami'],
      "alice's own view, not the admin's",
    );
    const again = await raw(`${b.url}/mcp`, { headers: as(mallory, sid), body: list });
    assert.equal(again.status, 404, 'a live session is refused to another caller too');
  });
});
