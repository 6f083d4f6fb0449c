/** The policy language, the PII detectors and the security config checks, without sockets. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { validateConfig } from '../../shared/config/load.js';
import { ConfigError } from '../../shared/config/load.js';
import { AccessControl } from '../../core/policy/access-control.js';
import {
  ibanValid,
  luhnValid,
  maskPromptResult,
  maskResourceContents,
  maskToolResult,
  PiiMasker,
} from '../../core/policy/pii-mask.js';
import { hostRouter } from '../../edge/http/host-routing.js';
import type { Principal } from '../../shared/identity/principal.js';

const who = (over: Partial<Principal> = {}): Principal => ({
  subject: 'u',
  tenant: 't1',
  roles: [],
  scopes: [],
  authMethod: 'jwt',
  ...over,
});
const cfg = (doc: Record<string, unknown>) => validateConfig({ listen: { port: 0 }, ...doc }, 'test', {});
const srv = (name: string, tenant?: string) => ({
  name,
  transport: 'stdio',
  command: 'true',
  ...(tenant ? { tenant } : {}),
});

describe('access control', () => {
  test('without a policy only tenancy hides anything', () => {
    const ac = new AccessControl(cfg({ servers: [srv('shared'), srv('a', 't1'), srv('b', 't2')] }));
    const v = ac.forPrincipal(who());
    assert.deepEqual(
      ['shared', 'a', 'b'].map((s) => v.serverVisible(s)),
      [true, true, false],
    );
    assert.equal(v.itemVisible('tools', 'a', 'anything'), true);
    assert.equal(v.itemVisible('tools', 'b', 'anything'), false);
  });

  test('rules: roles any-of, scopes all-of, globs, deny beats allow, default deny', () => {
    const ac = new AccessControl(
      cfg({
        servers: [srv('gh'), srv('db-main'), srv('db-old')],
        policy: {
          rules: [
            { roles: ['dev', 'ops'], servers: ['gh', 'db-*'], tools: ['get_*', 'list_?'] },
            { scopes: ['write', 'admin'], servers: ['gh'], tools: ['*'] },
            { effect: 'deny', servers: ['db-old'] },
            { effect: 'deny', subjects: ['bot-*'], tools: ['get_secret'] },
          ],
        },
      }),
    );
    const dev = ac.forPrincipal(who({ roles: ['ops'] }));
    assert.equal(dev.itemVisible('tools', 'gh', 'get_issue'), true);
    assert.equal(dev.itemVisible('tools', 'gh', 'list_x'), true);
    assert.equal(dev.itemVisible('tools', 'gh', 'list_xy'), false);
    assert.equal(dev.itemVisible('tools', 'gh', 'delete_repo'), false);
    assert.equal(dev.itemVisible('prompts', 'gh', 'anything'), false, 'the rule names tools only');
    assert.equal(dev.serverVisible('db-old'), false, 'a whole-server deny hides it');
    assert.equal(dev.itemVisible('tools', 'db-main', 'get_row'), true);
    const writer = ac.forPrincipal(who({ subject: 'w', scopes: ['write'] }));
    assert.equal(writer.itemVisible('tools', 'gh', 'delete_repo'), false, 'scopes are all-of');
    const admin = ac.forPrincipal(who({ subject: 'a', scopes: ['admin', 'write'] }));
    assert.equal(admin.itemVisible('tools', 'gh', 'delete_repo'), true);
    assert.equal(admin.serverVisible('db-main'), false, 'default deny');
    const bot = ac.forPrincipal(who({ subject: 'bot-7', roles: ['dev'] }));
    assert.equal(bot.itemVisible('tools', 'gh', 'get_secret'), false);
    assert.equal(bot.itemVisible('tools', 'gh', 'get_issue'), true);
  });

  test('argument constraints: one satisfied covering allow rule is enough', () => {
    const ac = new AccessControl(
      cfg({
        servers: [srv('pay')],
        policy: {
          rules: [
            {
              roles: ['clerk'],
              tools: ['refund'],
              arguments: { amount: { maximum: 100 }, currency: { enum: ['EUR'] } },
            },
            { roles: ['manager'], tools: ['refund'], arguments: { amount: { maximum: 10_000 } } },
            {
              roles: ['clerk'],
              tools: ['note'],
              arguments: { text: { pattern: '[a-z ]+', maxLength: 10, required: true } },
            },
          ],
        },
      }),
    );
    const clerk = ac.forPrincipal(who({ roles: ['clerk'] }));
    assert.deepEqual(clerk.checkArguments('pay', 'refund', { amount: 50, currency: 'EUR' }), []);
    assert.deepEqual(clerk.checkArguments('pay', 'refund', { amount: 500, currency: 'USD' }), [
      { path: '/amount', message: 'must be a number <= 100' },
      { path: '/currency', message: 'must be one of "EUR"' },
    ]);
    const both = ac.forPrincipal(who({ subject: 'm', roles: ['clerk', 'manager'] }));
    assert.deepEqual(both.checkArguments('pay', 'refund', { amount: 500, currency: 'USD' }), []);
    assert.deepEqual(clerk.checkArguments('pay', 'note', {}), [
      { path: '/text', message: 'is required for this caller' },
    ]);
    assert.equal(clerk.checkArguments('pay', 'note', { text: 'hello; drop' }).length, 2);
  });
});

describe('PII detectors', () => {
  test('Luhn and mod-97 checks', () => {
    assert.equal(luhnValid('4111111111111111'), true);
    assert.equal(luhnValid('4111111111111112'), false);
    assert.equal(ibanValid('GB82 WEST 1234 5698 7654 32'), true);
    assert.equal(ibanValid('GB83WEST12345698765432'), false);
  });

  test('rules chosen per server, tool and tenant; custom patterns; shape kept', () => {
    const m = new PiiMasker({
      rules: [
        { servers: ['crm'], tools: ['*'], detect: ['email'], patterns: [] },
        {
          servers: ['*'],
          tools: ['export_*'],
          tenants: ['eu'],
          detect: ['card'],
          patterns: [{ name: 'ssn', regex: '\\d{3}-\\d{2}-\\d{4}' }],
        },
      ],
    });
    assert.equal(m.maskerFor('us', 'billing', 'export_all'), undefined);
    const mask = m.maskerFor('eu', 'crm', 'export_all')!;
    assert.equal(
      mask('a@b.example 5500 0000 0000 0004 123-45-6789 5500 0000 0000 0005'),
      '[REDACTED:email] [REDACTED:card] [REDACTED:ssn] 5500 0000 0000 0005',
    );
    const result = maskToolResult(
      { content: [{ type: 'image', data: 'a@b.example', mimeType: 'image/png' }], isError: false },
      mask,
    );
    assert.deepEqual(result, {
      content: [{ type: 'image', data: 'a@b.example', mimeType: 'image/png' }],
      isError: false,
    });
  });
  test('prompt and resource results: a rule naming no item covers all, one naming some only those', () => {
    const m = new PiiMasker({
      rules: [
        { servers: ['crm'], detect: ['email'], patterns: [] },
        { servers: ['docs'], resources: ['file:///hr/*'], detect: ['email'], patterns: [] },
      ],
    });
    assert.ok(m.maskerFor('t', 'crm', 'any', 'prompts') && m.maskerFor('t', 'crm', 'x://y', 'resources'));
    assert.equal(m.maskerFor('t', 'docs', 'lookup'), undefined);
    assert.equal(m.maskerFor('t', 'docs', 'greet', 'prompts'), undefined);
    const mask = m.maskerFor('t', 'docs', 'file:///hr/jane', 'resources')!;
    assert.deepEqual(
      maskResourceContents(
        {
          contents: [
            { uri: 'file:///hr/jane', text: 'jane@x.example' },
            { uri: 'b', blob: 'amFuZUB4' },
          ],
        },
        mask,
      ),
      {
        contents: [
          { uri: 'file:///hr/jane', text: '[REDACTED:email]' },
          { uri: 'b', blob: 'amFuZUB4' },
        ],
      },
    );
    assert.deepEqual(
      maskPromptResult(
        {
          description: 'for a@b.example',
          messages: [
            { role: 'user', content: { type: 'text', text: 'a@b.example' } },
            { role: 'user', content: { type: 'image', data: 'a@b.example', mimeType: 'image/png' } },
          ],
        },
        mask,
      ),
      {
        description: 'for [REDACTED:email]',
        messages: [
          { role: 'user', content: { type: 'text', text: '[REDACTED:email]' } },
          { role: 'user', content: { type: 'image', data: 'a@b.example', mimeType: 'image/png' } },
        ],
      },
    );
  });
});

describe('security configuration', () => {
  test('auth mode none stays loopback-only; an authenticated gateway may listen anywhere', () => {
    assert.throws(() => cfg({ listen: { host: '0.0.0.0', port: 0 } }), ConfigError);
    const c = cfg({
      listen: { host: '0.0.0.0', port: 0 },
      auth: { mode: 'api-key', apiKeys: { pepper: 'x'.repeat(16) } },
    });
    assert.equal(c.auth.mode, 'api-key');
    assert.equal(cfg({ auth: { mode: 'none' } }).auth.mode, 'none');
  });

  test('every problem of the auth section is reported with its path', () => {
    try {
      cfg({
        auth: {
          modes: ['jwt', 'api-key', 'jwt'],
          jwt: { issuer: 'i', audience: 'a', jwksUrl: 'https://x/jwks', algorithms: ['HS256'] },
          apiKeys: { pepper: 'short', store: 'redis' },
        },
      });
      assert.fail('accepted');
    } catch (err) {
      const text = (err as Error).message;
      for (const path of ['auth.jwt.algorithms', 'auth.apiKeys.pepper'])
        assert.ok(text.includes(path), `${path}: ${text}`);
    }
    assert.throws(() => cfg({ auth: { mode: 'jwt' } }), /auth\.jwt/);
    assert.throws(
      () => cfg({ auth: { modes: ['api-key', 'api-key'], apiKeys: { pepper: 'x'.repeat(16) } } }),
      /auth\.modes: a method is listed twice/,
    );
    assert.throws(
      () => cfg({ auth: { mode: 'api-key', apiKeys: { pepper: 'x'.repeat(16), store: 'redis' } } }),
      /needs redis\.url/,
    );
  });
});

describe('host routing', () => {
  test('matches the pattern case-insensitively, keeps the query, ignores other paths and hosts', () => {
    const r = hostRouter('{service}-mcp.example.com', ['GitHub', 'slack']);
    assert.equal(r.rewrite('github-mcp.example.com', '/mcp'), '/servers/GitHub/mcp');
    assert.equal(
      r.rewrite('Slack-MCP.example.com:8443', '/message?sessionId=1'),
      '/servers/slack/message?sessionId=1',
    );
    assert.equal(r.rewrite('slack-mcp.example.com', '/healthz'), '/healthz');
    assert.equal(r.rewrite('slack-mcp.example.com.evil.test', '/mcp'), '/mcp');
    assert.equal(r.matches('x.example.com'), false);
  });
});

describe('sessions and tenancy in the core', () => {
  test('a session hears about (logs, list changes) only the servers its caller may see', async () => {
    const { GatewayCore } = await import('../../core/mcp/gateway-core.js');
    const { createLogger } = await import('../../shared/log.js');
    const core = new GatewayCore({
      config: cfg({ servers: [srv('shared'), srv('acme-crm', 'acme'), srv('globex-db', 'globex')] }),
      log: createLogger('silent'),
    });
    const open = (tenant: string, scope = 'aggregate') =>
      core.openSession({
        id: `s-${tenant}-${scope}`,
        principal: `${tenant}:u`,
        identity: who({ tenant }),
        scope,
        unrelated: { send: () => {} },
      }) as unknown as { uses(server: string): boolean };
    const acme = open('acme');
    assert.deepEqual(
      ['shared', 'acme-crm', 'globex-db'].map((s) => acme.uses(s)),
      [true, true, false],
    );
    assert.equal(core.hasScope('globex-db', who({ tenant: 'acme' })), false);
    assert.equal(core.hasScope('globex-db', who({ tenant: 'globex' })), true);
    assert.throws(() => open('acme', 'globex-db'), /Unknown server/);
    await core.close();
  });
});
