/**
 * The `mcpgw` admin commands as an operator runs them: the built CLI as a child process against a real
 * gateway's admin API over HTTP. Servers, keys, policies (in force for a connected SDK client at once),
 * capabilities, lifecycle, approvals and the change log; tables and --json; bodies from stdin and files;
 * exit codes 0 / 1 (the gateway refused: the message names the HTTP status and the error) / 2 (usage).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startSingleNode, type RunningNode } from '../../cli/single.js';
import { MemoryApiKeyStore } from '../../shared/adapters/memory/api-key-store.js';
import { validateConfig } from '../../shared/config/load.js';
import { createLogger } from '../../shared/log.js';
import { configFile, mcpgw } from '../helpers/cli.js';
import { freePort, ROOT } from '../helpers/net.js';
import { connectSdk, type SdkClient } from '../helpers/sdk-clients.js';

const SCRIPTED = `${ROOT}dist/test/fixtures/scripted-server.js`;
const ADMIN_TOKEN = 'admin-cli-test-token-0123456789abcdef';

function scripted(name: string, tools: string[], extra: Record<string, unknown> = {}) {
  return {
    name,
    transport: 'stdio',
    command: process.execPath,
    args: [SCRIPTED],
    env: { FIXTURE_CATALOG: JSON.stringify({ tools }) },
    ...extra,
  };
}

describe('mcpgw admin commands against a running gateway', () => {
  const keys = new MemoryApiKeyStore();
  let node: RunningNode;
  let env: NodeJS.ProcessEnv;
  const dir = mkdtempSync(join(tmpdir(), 'mcpgw-cli-'));
  const cli = (args: string[], stdin?: string, extraEnv: NodeJS.ProcessEnv = {}) =>
    mcpgw(args, { env: { ...env, ...extraEnv }, ...(stdin !== undefined && { stdin }) });
  const sdkWithKey = (key: string): Promise<SdkClient> =>
    connectSdk(
      'v2',
      `${node.url}/mcp`,
      {},
      {
        fetch: (u, init) => {
          const headers = new Headers(init?.headers);
          headers.set('authorization', `Bearer ${key}`);
          return fetch(u, { ...init, headers });
        },
      },
    );

  before(async () => {
    const config = validateConfig(
      {
        role: 'single',
        listen: { host: '127.0.0.1', port: 0 },
        log: { level: process.env.MCPGW_TEST_LOG ?? 'silent' },
        store: { kind: 'memory' },
        auth: { mode: 'api-key', apiKeys: { pepper: 'a-pepper-of-the-admin-cli-test' } },
        admin: { token: ADMIN_TOKEN },
        servers: [
          scripted('alpha', ['one', 'two']),
          scripted('gated', ['secret'], { pinning: 'block', requireApproval: true }),
        ],
      },
      'test',
      {},
    );
    node = await startSingleNode(config, { log: createLogger(config.log.level), apiKeys: keys });
    env = { MCPGW_ADMIN_URL: node.url, MCPGW_ADMIN_TOKEN: ADMIN_TOKEN };
  });
  after(async () => {
    await node?.close();
    await keys.close();
  });

  test('--help for every command group; a missing subcommand or gateway is a usage error (exit 2)', async () => {
    for (const group of [
      'servers',
      'keys',
      'policies',
      'capabilities',
      'lifecycle',
      'approvals',
      'changes',
    ]) {
      const r = await cli([group, '--help']);
      assert.equal(r.code, 0, `${group}: ${r.stderr}`);
      assert.match(r.stdout, new RegExp(`mcpgw ${group}`));
      assert.match(r.stdout, /--url URL/);
    }
    const top = await mcpgw(['--help']);
    assert.match(top.stdout, /mcpgw servers list\|get\|register\|update\|deregister/);

    const none = await cli(['servers']);
    assert.equal(none.code, 2);
    assert.match(none.stderr, /servers needs a subcommand/);
    const unknown = await cli(['servers', 'frob']);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown command "servers frob"/);
    const noUrl = await mcpgw(['servers', 'list'], { env: { MCPGW_ADMIN_URL: '', MCPGW_ADMIN_TOKEN: '' } });
    assert.equal(noUrl.code, 2);
    assert.match(noUrl.stderr, /give --url URL or set MCPGW_ADMIN_URL/);
    const badFlag = await cli(['servers', 'list', '--owner', 'x']);
    assert.equal(badFlag.code, 2);
    assert.match(badFlag.stderr, /Unknown option '--owner'/);
    // keys: with --config the store the config names, even when a gateway is named in the environment.
    const file = configFile({
      listen: { host: '127.0.0.1', port: 0 },
      auth: { mode: 'api-key', apiKeys: { pepper: 'p'.repeat(16) } },
    });
    const local = await cli(['keys', 'list', '--config', file]);
    assert.equal(local.code, 1);
    assert.match(local.stderr, /auth\.apiKeys\.store is "memory"/);
    const args = await cli(['servers', 'get']);
    assert.equal(args.code, 2);
    assert.match(args.stderr, /servers get takes 1 argument\(s\), got 0/);
  });

  test('refusals name the HTTP status and the error (exit 1); an unreachable gateway too', async () => {
    const wrong = await cli(['servers', 'list'], undefined, { MCPGW_ADMIN_TOKEN: 'not-the-token' });
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /GET \/admin\/api\/v1\/servers: HTTP 401/);
    const missing = await cli(['servers', 'get', 'nope']);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /HTTP 404 not_found: no server "nope" \(field name\)/);
    // The token from a file, the URL with the API's prefix: the same gateway.
    const tokenFile = join(dir, 'token');
    writeFileSync(tokenFile, `${ADMIN_TOKEN}\n`);
    const fromFile = await mcpgw(
      ['servers', 'list', '--token-file', tokenFile, '--url', `${node.url}/admin/api/v1/`],
      { env: { MCPGW_ADMIN_URL: '', MCPGW_ADMIN_TOKEN: '' } },
    );
    assert.equal(fromFile.code, 0, fromFile.stderr);
    assert.match(fromFile.stdout, /\nalpha /);
    const noToken = await mcpgw(['servers', 'list', '--url', node.url], { env: { MCPGW_ADMIN_TOKEN: '' } });
    assert.equal(noToken.code, 1);
    assert.match(noToken.stderr, /HTTP 401 .*\(give --token or set MCPGW_ADMIN_TOKEN\)/);
    const port = await freePort();
    const down = await cli(['servers', 'list', '--url', `http://127.0.0.1:${port}`]);
    assert.equal(down.code, 1);
    assert.match(
      down.stderr,
      new RegExp(`cannot reach the admin API at http://127\\.0\\.0\\.1:${port}: ECONNREFUSED`),
    );
    const notUrl = await cli(['servers', 'list', '--url', 'ftp://x']);
    assert.equal(notUrl.code, 2);
  });

  test('servers: list (table and --json), register from stdin, get, update from a file, history, deregister', async () => {
    const list = await cli(['servers', 'list']);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, /^NAME\s+VERSION\s+TENANT\s+TRANSPORT\s+HEALTH/);
    assert.match(list.stdout, /\nalpha\s+1\s+-\s+stdio\s+ready\s+config/);
    const json = JSON.parse((await cli(['servers', 'list', '--json'])).stdout);
    assert.deepEqual(json.servers.map((s: { name: string }) => s.name).sort(), ['alpha', 'gated']);

    const reg = await cli(['servers', 'register'], JSON.stringify(scripted('beta', ['three'])));
    assert.equal(reg.code, 0, reg.stderr);
    assert.equal(reg.stdout, 'registered beta (version 1)\n');
    const twice = await cli(['servers', 'register', '-'], JSON.stringify(scripted('beta', ['three'])));
    assert.equal(twice.code, 1);
    assert.match(
      twice.stderr,
      /POST \/admin\/api\/v1\/servers: HTTP 409 conflict: server "beta" exists already/,
    );
    const bad = await cli(['servers', 'register'], '{"name": "x", "transport": "carrier-pigeon"}');
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /HTTP 400 bad_request: transport: .*\(field transport\)/);
    const garbage = await cli(['servers', 'register'], '{"name": ');
    assert.equal(garbage.code, 2);
    assert.match(garbage.stderr, /stdin: not valid JSON or YAML/);
    const empty = await cli(['servers', 'register'], '');
    assert.equal(empty.code, 2);
    assert.match(empty.stderr, /stdin: empty/);

    const got = await cli(['servers', 'get', 'beta']);
    assert.equal(got.code, 0);
    const beta = JSON.parse(got.stdout);
    assert.equal(beta.version, 1);
    assert.equal(beta.server.env.FIXTURE_CATALOG, '***', 'secrets stay hidden');

    // YAML from a file; "name" comes from the command line.
    const file = join(dir, 'beta.yaml');
    writeFileSync(
      file,
      `transport: stdio\ncommand: ${JSON.stringify(process.execPath)}\nargs: [${JSON.stringify(SCRIPTED)}]\n` +
        `env: { FIXTURE_CATALOG: '{"tools":["three","four"]}' }\n`,
    );
    const stale = await cli(['servers', 'update', 'beta', file, '--if-match', '7']);
    assert.equal(stale.code, 1);
    assert.match(stale.stderr, /HTTP 409 conflict: .*current version 1\)/);
    const upd = await cli(['servers', 'update', 'beta', file, '--if-match', '1']);
    assert.equal(upd.code, 0, upd.stderr);
    assert.equal(upd.stdout, 'updated beta (version 2)\n');
    const hist = await cli(['servers', 'history', 'beta']);
    assert.match(
      hist.stdout,
      /^VERSION\s+OP\s+CHANGED AT\s+CHANGED BY\n1\s+upsert\s+\S+\s+admin-token\n2\s+upsert/,
    );
    const dereg = await cli(['servers', 'deregister', 'beta']);
    assert.equal(dereg.code, 0, dereg.stderr);
    assert.equal(dereg.stdout, 'deregistered beta\n');
    assert.doesNotMatch((await cli(['servers', 'list'])).stdout, /\nbeta /);
  });

  test('keys over HTTP: create (the key once), list, rotate, revoke; a key works until rotated or revoked', async () => {
    const made = await cli(['keys', 'create', '--owner', 'bob', '--role', 'user', '--scope', 'a:b']);
    assert.equal(made.code, 0, made.stderr);
    let key = /key: (mcpgw_\S+)/.exec(made.stdout)?.[1];
    const id = /id: (\S+)/.exec(made.stdout)?.[1];
    assert.ok(key && id, made.stdout);
    const client = await sdkWithKey(key);
    await client.close();
    const list = await cli(['keys', 'list']);
    assert.match(list.stdout, new RegExp(`\\n${id}\\s+bob\\s+default\\s+user\\s+a:b\\s+active`));
    assert.doesNotMatch(list.stdout, new RegExp(key), 'never the secret');
    const badDate = await cli(['keys', 'create', '--owner', 'x', '--expires', 'soon']);
    assert.equal(badDate.code, 2);
    assert.match(badDate.stderr, /--expires: not a date: soon/);
    const noOwner = await cli(['keys', 'create']);
    assert.equal(noOwner.code, 2);

    const rot = await cli(['keys', 'rotate', id]);
    assert.equal(rot.code, 0, rot.stderr);
    const rotated = /key: (mcpgw_\S+)/.exec(rot.stdout)?.[1];
    assert.ok(rotated && rotated !== key && rotated.startsWith(`mcpgw_${id}_`), rot.stdout);
    await assert.rejects(sdkWithKey(key), 'the old secret stops working');
    await (await sdkWithKey(rotated)).close();
    key = rotated;

    const rev = await cli(['keys', 'revoke', id]);
    assert.equal(rev.code, 0, rev.stderr);
    assert.equal(rev.stdout, `revoked ${id}\n`);
    assert.match((await cli(['keys', 'list'])).stdout, new RegExp(`${id}.*revoked`));
    await assert.rejects(sdkWithKey(key));
    const gone = await cli(['keys', 'revoke', 'nosuchkey1']);
    assert.equal(gone.code, 1);
    assert.match(gone.stderr, /HTTP 404 not_found: no API key "nosuchkey1"/);
  });

  test('policies: set from stdin is in force for a connected SDK client at once; delete lifts it', async () => {
    const made = await cli(['keys', 'create', '--owner', 'carol', '--role', 'user']);
    const key = /key: (mcpgw_\S+)/.exec(made.stdout)![1]!;
    const client = await sdkWithKey(key);
    try {
      assert.ok(!(await client.callTool({ name: 'alpha__one', arguments: {} })).isError);
      const set = await cli(
        ['policies', 'set', '*', '--if-match', '0'],
        'default: allow\nrules:\n  - { effect: deny, roles: [user], servers: [alpha], tools: [one] }\n',
      );
      assert.equal(set.code, 0, set.stderr);
      assert.equal(set.stdout, 'policy * set (version 1); in force now\n');
      await assert.rejects(
        client.callTool({ name: 'alpha__one', arguments: {} }),
        /Unknown tool: alpha__one/,
      );
      assert.ok(!(await client.callTool({ name: 'alpha__two', arguments: {} })).isError);

      const list = await cli(['policies', 'list']);
      assert.match(
        list.stdout,
        /^SCOPE\s+VERSION\s+DEFAULT\s+RULES\s+UPDATED BY\s+UPDATED AT\n\*\s+1\s+allow\s+1\s+admin-token/,
      );
      const got = JSON.parse((await cli(['policies', 'get', '*'])).stdout);
      assert.equal(got.policy.rules[0].effect, 'deny');
      const invalid = await cli(['policies', 'set', '*'], '{"default": "perhaps"}');
      assert.equal(invalid.code, 1);
      assert.match(
        invalid.stderr,
        /PUT \/admin\/api\/v1\/policies\/\*: HTTP 400 bad_request: default: .*\(field default\)/,
      );
      const conflict = await cli(['policies', 'set', '*', '--if-match', '0'], '{"default": "allow"}');
      assert.equal(conflict.code, 1);
      assert.match(conflict.stderr, /HTTP 409 conflict: .*current version 1/);

      const del = await cli(['policies', 'delete', '*']);
      assert.equal(del.code, 0, del.stderr);
      assert.equal(del.stdout, 'policy * deleted\n');
      assert.ok(!(await client.callTool({ name: 'alpha__one', arguments: {} })).isError);
      assert.equal((await cli(['policies', 'list'])).stdout, '(none)\n');
      assert.equal((await cli(['policies', 'delete', '*'])).code, 1);
    } finally {
      await client.close();
    }
  });

  test('capabilities list; lifecycle transitions; approvals of a held-back tool; the change log', async () => {
    const caps = await cli(['capabilities', 'list', '--server', 'alpha']);
    assert.equal(caps.code, 0, caps.stderr);
    assert.match(caps.stdout, /^SERVER\s+KIND\s+NAME\n/);
    assert.match(caps.stdout, /\nalpha\s+tool\s+one\n/);
    const all = JSON.parse((await cli(['capabilities', 'list', '--json'])).stdout);
    assert.ok(all.servers.some((s: { server: string }) => s.server === 'gated'));

    const dep = await cli(['lifecycle', 'alpha/two', 'deprecated', '--notice', 'use one']);
    assert.equal(dep.code, 0, dep.stderr);
    assert.match(dep.stdout, /^alpha\/two is now deprecated \(server alpha at version 2\)\n$/);
    const refused = await cli(['lifecycle', 'alpha/two', 'draft']);
    assert.equal(refused.code, 1);
    assert.match(
      refused.stderr,
      /POST \/admin\/api\/v1\/governance\/lifecycle: HTTP 409 GW_LIFECYCLE_TRANSITION/,
    );
    const badStage = await cli(['lifecycle', 'alpha', 'gone']);
    assert.equal(badStage.code, 2);
    assert.match(badStage.stderr, /STAGE must be one of draft, preview, active, deprecated, retired/);
    const noServer = await cli(['lifecycle', 'nosuch', 'retired']);
    assert.equal(noServer.code, 1);
    assert.match(noServer.stderr, /HTTP 404 unknown server: nosuch/);

    // A first listing holds gated's tool back (requireApproval); the operator approves it.
    const made = await cli(['keys', 'create', '--owner', 'dan', '--role', 'user']);
    const client = await sdkWithKey(/key: (mcpgw_\S+)/.exec(made.stdout)![1]!);
    try {
      const names = async () => ((await client.listTools()).tools as { name: string }[]).map((t) => t.name);
      assert.ok(!(await names()).includes('gated__secret'));
      const held = await cli(['approvals', 'list', '--server', 'gated']);
      assert.equal(held.code, 0, held.stderr);
      assert.match(held.stdout, /\ngated\s+secret\s+[0-9a-f]{64}\s+\(never approved\)/);
      const wrongHash = await cli(['approvals', 'approve', 'gated/secret', '--hash', '0'.repeat(64)]);
      assert.equal(wrongHash.code, 1);
      assert.match(
        wrongHash.stderr,
        /HTTP 400 GW_INVALID_PARAMS: the definition of gated\/secret changed again/,
      );
      assert.equal((await cli(['approvals', 'approve', 'gated'])).code, 2, 'SERVER/TOOL is required');
      const ok = await cli(['approvals', 'approve', 'gated/secret']);
      assert.equal(ok.code, 0, ok.stderr);
      assert.match(ok.stdout, /^approved gated\/secret \(hash [0-9a-f]{64}\)\n$/);
      assert.ok((await names()).includes('gated__secret'));
      // The fixture's other tools wait for approval too; secret no longer does.
      assert.doesNotMatch((await cli(['approvals', 'list'])).stdout, /\bsecret\b/);
    } finally {
      await client.close();
    }

    const changes = await cli(['changes', 'list', '--kind', 'policy']);
    assert.equal(changes.code, 0, changes.stderr);
    assert.match(changes.stdout, /^ID\s+AT\s+ACTOR\s+TENANT\s+KIND\s+TARGET\s+OP\s+VERSION\n/);
    assert.match(changes.stdout, /admin-token\s+-\s+policy\s+\*\s+update\s+1\n/);
    assert.match(changes.stdout, /admin-token\s+-\s+policy\s+\*\s+delete\s+2\n/);
    const page = JSON.parse((await cli(['changes', 'list', '--limit', '2', '--json'])).stdout);
    assert.equal(page.changes.length, 2);
    assert.equal(page.next, page.changes[1].id);
    const badLimit = await cli(['changes', 'list', '--limit', 'lots']);
    assert.equal(badLimit.code, 2);
    assert.match(badLimit.stderr, /--limit must be a whole number/);
  });
});
