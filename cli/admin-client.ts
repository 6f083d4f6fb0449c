/**
 * `mcpgw servers|keys|policies|capabilities|lifecycle|approvals|changes ...`: the admin REST API
 * (docs/admin-api.md) from the command line, against a running gateway over HTTP. The URL and the
 * credential come from flags or the environment (MCPGW_ADMIN_URL, MCPGW_ADMIN_TOKEN); request bodies
 * are JSON or YAML from a file or stdin; answers print as a table, or as the API's JSON with `--json`.
 *
 * Exit codes: 0 done; 1 the gateway refused or could not be reached (the message names the HTTP status
 * and the API's error); 2 a usage mistake (nothing was sent).
 */
import { readFileSync } from 'node:fs';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { parse as parseYaml } from 'yaml';
import { LIFECYCLE_STAGES, type LifecycleStage } from '../shared/config/governance-schema.js';

const API_PREFIX = '/admin/api/v1';

export interface AdminIo {
  out(text: string): void;
  err(text: string): void;
  /** Where a body is read from when no FILE is given (or FILE is `-`). */
  stdin: NodeJS.ReadableStream & { isTTY?: boolean };
  env: NodeJS.ProcessEnv;
}

/** A mistake in the command line: exit 2, nothing was sent. */
class UsageError extends Error {}

/** The gateway answered with an error, or could not be reached: exit 1. */
class ApiError extends Error {}

const CONNECTION = `Connection (every command):
  --url URL          the gateway's base URL (or MCPGW_ADMIN_URL), e.g. http://127.0.0.1:8080
  --token TOKEN      the admin token, a JWT or an API key (or MCPGW_ADMIN_TOKEN; --token-file FILE
                     reads it from a file); sent as "Authorization: Bearer ..."
  --timeout SECONDS  give up after this long (default 30)
  --json             print the API's JSON answer instead of a table or a sentence
  --help             this text

Bodies (FILE) are JSON or YAML; "-" or no FILE reads stdin. Exit codes: 0 done, 1 refused by the
gateway or unreachable (the message names the HTTP status and the error), 2 usage mistake.
`;

export const ADMIN_HELP: Record<string, string> = {
  servers: `mcpgw servers - backend servers in the gateway's registry (live: no restart)

  mcpgw servers list                      name, version, tenant, transport, health
  mcpgw servers get NAME                  one server as JSON (header and env values shown as ***)
  mcpgw servers register [FILE]           register a server (as in the config file's servers[])
  mcpgw servers update NAME [FILE] [--if-match VERSION]
                                          replace a server; "name" defaults to NAME
  mcpgw servers deregister NAME [--if-match VERSION]
  mcpgw servers history NAME              every version, who and when
`,
  keys: `mcpgw keys - API keys

Against a running gateway's admin API (--url or MCPGW_ADMIN_URL, and no --config):
  mcpgw keys list
  mcpgw keys create --owner SUBJECT [--tenant T] [--role R]... [--scope S]... [--expires ISO-8601]
                    [--description TEXT]          prints the key once
  mcpgw keys revoke ID
  mcpgw keys rotate ID                            a new secret for the same id; prints it once

With --config FILE instead, the same commands work on the store auth.apiKeys names, without a
running gateway (mcpgw keys --config FILE --help).
`,
  policies: `mcpgw policies - stored access policies, in force at once (docs/security.md)

Scope "*" is the gateway's policy; any other scope is that tenant's, applied to its callers on top of
the gateway's (both must allow).
  mcpgw policies list
  mcpgw policies get SCOPE                JSON: {scope, version, policy, updatedAt, updatedBy}
  mcpgw policies set SCOPE [FILE] [--if-match VERSION]
                                          replace (FILE: as "policy" in the config file; --if-match 0:
                                          only if there is none)
  mcpgw policies delete SCOPE [--if-match VERSION]
                                          "*" deleted: everything is allowed (tenancy still applies)

On a gateway with federation.controlPlane.policies these read and write the bus: every gateway of the
region applies the change (versions are bus revisions; "*" deleted: each gateway's config-file policy).
`,
  'quota-limits': `mcpgw quota-limits - the cluster's quota limits on the bus (federation.controlPlane.quotas)

Every gateway of the region that follows the control plane applies them live; each key named replaces
that gateway's config-file limit (docs/quotas.md).
  mcpgw quota-limits get                  JSON: {limits, revision, updatedBy, updatedAt, gateway}
  mcpgw quota-limits set [FILE] [--if-match REVISION]
                                          replace (FILE: any of user, clientApp, tenant, tool, server,
                                          global, tenants, servers, as under "quotas" in the config file)
  mcpgw quota-limits delete [--if-match REVISION]
                                          every gateway goes back to its config file's limits
`,
  'control-plane': `mcpgw control-plane - what this gateway holds in force from the bus

  mcpgw control-plane status              per key: revision, who, when applied; refused entries
  mcpgw control-plane history KEY         the revisions the bus keeps (KEY: policy._global for "*",
                                          policy.<tenant>, quotas), newest first
`,
  capabilities: `mcpgw capabilities - what the running servers offer

  mcpgw capabilities list [--server NAME] every tool, prompt and resource, by server
`,
  lifecycle: `mcpgw lifecycle - move a server or one of its tools through the lifecycle (docs/governance.md)

  mcpgw lifecycle SERVER[/TOOL] STAGE [--notice TEXT]
      STAGE: ${LIFECYCLE_STAGES.join(', ')}; --notice: the deprecation notice callers see
`,
  approvals: `mcpgw approvals - tools held back because their definition changed (or awaits a first approval)

  mcpgw approvals list [--server NAME]    held tools with their current and approved hashes
  mcpgw approvals approve SERVER/TOOL [--hash SHA256]
                                          approve the held definition (with --hash: only if it is still
                                          the one you reviewed)
`,
  changes: `mcpgw changes - the admin API's change log, oldest first

  mcpgw changes list [--after ID] [--limit N] [--kind server|api-key|policy]
`,
};

/** The command groups this module answers. */
export const ADMIN_GROUPS = new Set(Object.keys(ADMIN_HELP));

type Options = NonNullable<ParseArgsConfig['options']>;

const COMMON: Options = {
  url: { type: 'string' },
  token: { type: 'string' },
  'token-file': { type: 'string' },
  timeout: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
};

type Values = Record<string, string | boolean | string[] | undefined>;

interface Context {
  args: string[];
  values: Values;
  api: AdminHttp;
  io: AdminIo;
}

interface Command {
  /** Positional arguments after the subcommand: [fewest, most]. */
  arity: [number, number];
  options?: Options;
  run(c: Context): Promise<void>;
}

const IF_MATCH: Options = { 'if-match': { type: 'string' } };

const COMMANDS: Record<string, Command> = {
  'servers list': {
    arity: [0, 0],
    async run({ api, values, io }) {
      const r = (await api.call('GET', '/servers')) as { servers: ServerView[] };
      if (values.json) return printJson(io, r);
      table(
        io,
        ['NAME', 'VERSION', 'TENANT', 'TRANSPORT', 'HEALTH', 'UPDATED BY', 'UPDATED AT'],
        r.servers.map((s) => [
          s.name,
          String(s.version),
          s.tenant ?? '-',
          String(s.server?.transport ?? '-'),
          s.health.state + (s.health.error ? ` (${s.health.error})` : ''),
          s.updatedBy,
          s.updatedAt,
        ]),
      );
    },
  },
  'servers get': {
    arity: [1, 1],
    async run({ api, args, io }) {
      printJson(io, await api.call('GET', `/servers/${seg(args[0]!)}`));
    },
  },
  'servers register': {
    arity: [0, 1],
    async run({ api, args, values, io }) {
      const body = await readBody(args[0], io);
      const r = (await api.call('POST', '/servers', body)) as ServerView;
      if (values.json) return printJson(io, r);
      io.out(`registered ${r.name} (version ${r.version})\n`);
    },
  },
  'servers update': {
    arity: [1, 2],
    options: IF_MATCH,
    async run({ api, args, values, io }) {
      const name = args[0]!;
      const body = { name, ...(await readBody(args[1], io)) };
      const r = (await api.call('PUT', `/servers/${seg(name)}`, body, ifMatch(values))) as ServerView;
      if (values.json) return printJson(io, r);
      io.out(`updated ${r.name} (version ${r.version})\n`);
    },
  },
  'servers deregister': {
    arity: [1, 1],
    options: IF_MATCH,
    async run({ api, args, values, io }) {
      await api.call('DELETE', `/servers/${seg(args[0]!)}`, undefined, ifMatch(values));
      if (values.json) return printJson(io, { deregistered: args[0] });
      io.out(`deregistered ${args[0]}\n`);
    },
  },
  'servers history': {
    arity: [1, 1],
    async run({ api, args, values, io }) {
      const r = (await api.call('GET', `/servers/${seg(args[0]!)}/history`)) as {
        versions: { version: number; op: string; changedAt: string; changedBy: string }[];
      };
      if (values.json) return printJson(io, r);
      table(
        io,
        ['VERSION', 'OP', 'CHANGED AT', 'CHANGED BY'],
        r.versions.map((v) => [String(v.version), v.op, v.changedAt, v.changedBy]),
      );
    },
  },

  'keys list': {
    arity: [0, 0],
    async run({ api, values, io }) {
      const r = (await api.call('GET', '/keys')) as { keys: KeyView[] };
      if (values.json) return printJson(io, r);
      const now = Date.now();
      table(
        io,
        ['ID', 'OWNER', 'TENANT', 'ROLES', 'SCOPES', 'STATE', 'EXPIRES'],
        r.keys.map((k) => [
          k.id,
          k.owner,
          k.tenant,
          k.roles.join(',') || '-',
          k.scopes.join(',') || '-',
          k.revoked ? 'revoked' : k.expiresAt && Date.parse(k.expiresAt) <= now ? 'expired' : 'active',
          k.expiresAt ?? '-',
        ]),
      );
    },
  },
  'keys create': {
    arity: [0, 0],
    options: {
      owner: { type: 'string' },
      tenant: { type: 'string' },
      role: { type: 'string', multiple: true },
      scope: { type: 'string', multiple: true },
      expires: { type: 'string' },
      description: { type: 'string' },
    },
    async run({ api, values, io }) {
      if (typeof values.owner !== 'string') throw new UsageError('keys create needs --owner SUBJECT');
      let expiresAt: string | undefined;
      if (typeof values.expires === 'string') {
        const t = Date.parse(values.expires);
        if (Number.isNaN(t)) throw new UsageError(`--expires: not a date: ${values.expires}`);
        expiresAt = new Date(t).toISOString();
      }
      const body = {
        owner: values.owner,
        ...(typeof values.tenant === 'string' && { tenant: values.tenant }),
        roles: (values.role as string[] | undefined) ?? [],
        scopes: (values.scope as string[] | undefined) ?? [],
        ...(expiresAt !== undefined && { expiresAt }),
        ...(typeof values.description === 'string' && { description: values.description }),
      };
      const r = (await api.call('POST', '/keys', body)) as KeyView & { key: string };
      if (values.json) return printJson(io, r);
      io.out(`key: ${r.key}\nid: ${r.id}\n(the key is shown only now; store it safely)\n`);
    },
  },
  'keys revoke': {
    arity: [1, 1],
    async run({ api, args, values, io }) {
      const r = await api.call('POST', `/keys/${seg(args[0]!)}/revoke`);
      if (values.json) return printJson(io, r);
      io.out(`revoked ${args[0]}\n`);
    },
  },
  'keys rotate': {
    arity: [1, 1],
    async run({ api, args, values, io }) {
      const r = (await api.call('POST', `/keys/${seg(args[0]!)}/rotate`)) as KeyView & { key: string };
      if (values.json) return printJson(io, r);
      io.out(`key: ${r.key}\nid: ${r.id}\n(the old secret no longer works; the key is shown only now)\n`);
    },
  },

  'policies list': {
    arity: [0, 0],
    async run({ api, values, io }) {
      const r = (await api.call('GET', '/policies')) as { policies: PolicyView[] };
      if (values.json) return printJson(io, r);
      table(
        io,
        ['SCOPE', 'VERSION', 'DEFAULT', 'RULES', 'UPDATED BY', 'UPDATED AT'],
        r.policies.map((p) => [
          p.scope,
          String(p.version),
          String(p.policy.default ?? 'deny'),
          String(Array.isArray(p.policy.rules) ? p.policy.rules.length : 0),
          p.updatedBy,
          p.updatedAt,
        ]),
      );
    },
  },
  'policies get': {
    arity: [1, 1],
    async run({ api, args, io }) {
      printJson(io, await api.call('GET', `/policies/${seg(args[0]!)}`));
    },
  },
  'policies set': {
    arity: [1, 2],
    options: IF_MATCH,
    async run({ api, args, values, io }) {
      const body = await readBody(args[1], io);
      const r = (await api.call('PUT', `/policies/${seg(args[0]!)}`, body, ifMatch(values))) as PolicyView;
      if (values.json) return printJson(io, r);
      io.out(`policy ${r.scope} set (version ${r.version}); in force now\n`);
    },
  },
  'policies delete': {
    arity: [1, 1],
    options: IF_MATCH,
    async run({ api, args, values, io }) {
      await api.call('DELETE', `/policies/${seg(args[0]!)}`, undefined, ifMatch(values));
      if (values.json) return printJson(io, { deleted: args[0] });
      io.out(`policy ${args[0]} deleted\n`);
    },
  },

  'quota-limits get': {
    arity: [0, 0],
    async run({ api, io }) {
      printJson(io, await api.call('GET', '/quota-limits'));
    },
  },
  'quota-limits set': {
    arity: [0, 1],
    options: IF_MATCH,
    async run({ api, args, values, io }) {
      const body = await readBody(args[0], io);
      const r = (await api.call('PUT', '/quota-limits', body, ifMatch(values))) as { revision: number };
      if (values.json) return printJson(io, r);
      io.out(`quota limits set (revision ${r.revision}); published to the control plane\n`);
    },
  },
  'quota-limits delete': {
    arity: [0, 0],
    options: IF_MATCH,
    async run({ api, values, io }) {
      await api.call('DELETE', '/quota-limits', undefined, ifMatch(values));
      if (values.json) return printJson(io, { deleted: 'quota-limits' });
      io.out('quota limits deleted from the control plane\n');
    },
  },
  'control-plane status': {
    arity: [0, 0],
    async run({ api, values, io }) {
      const r = (await api.call('GET', '/control-plane')) as {
        connected: boolean;
        bucket: string;
        applied: Array<{ key: string; revision: number; updatedBy: string; updatedAt: string }>;
        refused: Array<{ key: string; revision: number; reason: string }>;
      };
      if (values.json) return printJson(io, r);
      io.out(`bucket ${r.bucket}, bus ${r.connected ? 'connected' : 'UNREACHABLE (last values stay)'}\n`);
      table(
        io,
        ['KEY', 'REVISION', 'STATE', 'BY', 'AT / REASON'],
        [
          ...r.applied.map((a) => [a.key, String(a.revision), 'applied', a.updatedBy, a.updatedAt]),
          ...r.refused.map((x) => [x.key, String(x.revision), 'refused', '', x.reason]),
        ],
      );
    },
  },

  'control-plane history': {
    arity: [1, 1],
    async run({ api, args, values, io }) {
      const r = (await api.call('GET', `/control-plane/history/${seg(args[0]!)}`)) as {
        revisions: Array<{
          revision: number;
          deleted: boolean;
          valid: boolean;
          reason?: string;
          updatedBy?: string;
          updatedAt?: string;
        }>;
      };
      if (values.json) return printJson(io, r);
      table(
        io,
        ['REVISION', 'WHAT', 'BY', 'AT / REASON'],
        r.revisions.map((x) => [
          String(x.revision),
          !x.valid ? 'refused' : x.deleted ? 'deleted' : 'set',
          x.updatedBy ?? '',
          x.reason ?? x.updatedAt ?? '',
        ]),
      );
    },
  },

  'capabilities list': {
    arity: [0, 0],
    options: { server: { type: 'string' } },
    async run({ api, values, io }) {
      const servers =
        typeof values.server === 'string'
          ? [(await api.call('GET', `/servers/${seg(values.server)}/capabilities`)) as CapabilitiesView]
          : ((await api.call('GET', '/capabilities')) as { servers: CapabilitiesView[] }).servers;
      if (values.json) return printJson(io, typeof values.server === 'string' ? servers[0] : { servers });
      const rows: string[][] = [];
      for (const s of servers) {
        if (s.error !== undefined) rows.push([s.server, 'error', s.error]);
        for (const [kind, items] of [
          ['tool', s.tools],
          ['prompt', s.prompts],
          ['resource', s.resources],
        ] as const)
          for (const it of items ?? [])
            rows.push([s.server, kind, String((kind === 'resource' ? it.uri : it.name) ?? '?')]);
        if (s.error === undefined && rows.every((r) => r[0] !== s.server))
          rows.push([s.server, '-', `(nothing; ${s.state ?? 'unknown'})`]);
      }
      table(io, ['SERVER', 'KIND', 'NAME'], rows);
    },
  },

  lifecycle: {
    arity: [2, 2],
    options: { notice: { type: 'string' } },
    async run({ api, args, values, io }) {
      const { server, tool } = capability(args[0]!, false);
      const to = args[1]!;
      if (!LIFECYCLE_STAGES.includes(to as LifecycleStage))
        throw new UsageError(`STAGE must be one of ${LIFECYCLE_STAGES.join(', ')}, not "${to}"`);
      const r = (await api.call('POST', '/governance/lifecycle', {
        server,
        ...(tool !== undefined && { tool }),
        to,
        ...(typeof values.notice === 'string' && { deprecationNotice: values.notice }),
      })) as { server: string; version: number; updatedBy: string };
      if (values.json) return printJson(io, r);
      io.out(`${args[0]} is now ${to} (server ${r.server} at version ${r.version})\n`);
    },
  },

  'approvals list': {
    arity: [0, 0],
    options: { server: { type: 'string' } },
    async run({ api, values, io }) {
      const q = typeof values.server === 'string' ? `?server=${encodeURIComponent(values.server)}` : '';
      const r = (await api.call('GET', `/governance/held${q}`)) as { held: HeldView[] };
      if (values.json) return printJson(io, r);
      table(
        io,
        ['SERVER', 'TOOL', 'CURRENT HASH', 'APPROVED HASH'],
        r.held.map((h) => [h.server, h.tool, h.currentHash, h.approvedHash ?? '(never approved)']),
      );
    },
  },
  'approvals approve': {
    arity: [1, 1],
    options: { hash: { type: 'string' } },
    async run({ api, args, values, io }) {
      const { server, tool } = capability(args[0]!, true);
      if (typeof values.hash === 'string' && !/^[0-9a-f]{64}$/.test(values.hash))
        throw new UsageError('--hash must be a sha256 hex digest (64 characters 0-9a-f)');
      const r = (await api.call('POST', '/governance/approvals', {
        server,
        tool,
        ...(typeof values.hash === 'string' && { expectedHash: values.hash }),
      })) as { hash: string };
      if (values.json) return printJson(io, r);
      io.out(`approved ${server}/${tool} (hash ${r.hash})\n`);
    },
  },

  'changes list': {
    arity: [0, 0],
    options: { after: { type: 'string' }, limit: { type: 'string' }, kind: { type: 'string' } },
    async run({ api, values, io }) {
      const q = new URLSearchParams();
      for (const k of ['after', 'limit'] as const)
        if (typeof values[k] === 'string') {
          if (!/^\d+$/.test(values[k])) throw new UsageError(`--${k} must be a whole number`);
          q.set(k, values[k]);
        }
      if (typeof values.kind === 'string') q.set('kind', values.kind);
      const r = (await api.call('GET', `/changes${q.size > 0 ? `?${q}` : ''}`)) as {
        changes: ChangeView[];
        next: number;
      };
      if (values.json) return printJson(io, r);
      table(
        io,
        ['ID', 'AT', 'ACTOR', 'TENANT', 'KIND', 'TARGET', 'OP', 'VERSION'],
        r.changes.map((c) => [
          String(c.id),
          c.at,
          c.actor,
          c.tenant ?? '-',
          c.kind,
          c.target,
          c.op,
          c.version === null ? '-' : String(c.version),
        ]),
      );
    },
  },
};

const ALL_OPTIONS: Options = Object.assign(
  {},
  COMMON,
  ...Object.values(COMMANDS).map((c) => c.options ?? {}),
);

/** Runs `mcpgw <group> ...` (argv after the group); returns the exit code. */
export async function adminCommand(group: string, argv: string[], io: AdminIo): Promise<number> {
  const help = ADMIN_HELP[group]!;
  if (argv.includes('--help') || argv.includes('-h')) {
    io.out(`${help}\n${CONNECTION}`);
    return 0;
  }
  const single = COMMANDS[group] !== undefined; // `lifecycle` has no subcommand
  let sub: string | undefined;
  try {
    // Every command's flags, only to find the subcommand wherever the flags are; each then checks its own.
    sub = single
      ? undefined
      : parseArgs({ args: argv, allowPositionals: true, options: ALL_OPTIONS }).positionals[0];
  } catch (err) {
    io.err(`mcpgw: ${(err as Error).message}\n\n${help}`);
    return 2;
  }
  const command = COMMANDS[single ? group : `${group} ${sub}`];
  if (!command) {
    io.err(
      `mcpgw: ${sub === undefined ? `${group} needs a subcommand` : `unknown command "${group} ${sub}"`}\n\n${help}`,
    );
    return 2;
  }
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: { ...COMMON, ...command.options },
    });
    const args = single ? positionals : positionals.slice(1);
    const [min, max] = command.arity;
    if (args.length < min || args.length > max)
      throw new UsageError(
        `${single ? group : `${group} ${sub}`} takes ${min === max ? min : `${min} to ${max}`} argument(s), got ${args.length}`,
      );
    const api = new AdminHttp(connectionOf(values as Values, io.env));
    await command.run({ args, values: values as Values, api, io });
    return 0;
  } catch (err) {
    if (err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      io.err(`mcpgw: ${(err as Error).message}\n\n${help}`);
      return 2;
    }
    if (err instanceof ApiError) {
      io.err(`mcpgw: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
}

interface Connection {
  base: string;
  token: string | undefined;
  timeoutMs: number;
}

function connectionOf(values: Values, env: NodeJS.ProcessEnv): Connection {
  const raw = (values.url as string | undefined) ?? env.MCPGW_ADMIN_URL;
  if (!raw) throw new UsageError('the gateway is not named: give --url URL or set MCPGW_ADMIN_URL');
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new UsageError(`--url: not a URL: ${raw}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new UsageError(`--url: must be http:// or https://, not ${url.protocol}`);
  if (url.search || url.hash) throw new UsageError('--url: no query or fragment, only the base URL');
  // The base URL, with or without the API's own prefix.
  const base = url.href.replace(/\/+$/, '').replace(/\/admin\/api\/v1$/, '');
  let token = values.token as string | undefined;
  if (token === undefined && typeof values['token-file'] === 'string') {
    try {
      token = readFileSync(values['token-file'], 'utf8').trim();
    } catch (err) {
      throw new UsageError(`--token-file: ${(err as Error).message}`);
    }
  }
  token ??= env.MCPGW_ADMIN_TOKEN || undefined;
  if (token !== undefined && !/^[\x21-\x7e]+$/.test(token))
    throw new UsageError('the token has spaces or characters a header cannot carry');
  let timeoutMs = 30_000;
  if (typeof values.timeout === 'string') {
    const s = Number(values.timeout);
    if (!Number.isFinite(s) || s <= 0) throw new UsageError('--timeout must be a positive number of seconds');
    timeoutMs = s * 1000;
  }
  return { base, token, timeoutMs };
}

/** One admin API call: the parsed JSON answer, or an ApiError naming the status and the API's error. */
class AdminHttp {
  constructor(private readonly c: Connection) {}

  async call(
    method: string,
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ): Promise<unknown> {
    const where = `${method} ${API_PREFIX}${path.replace(/\?.*$/, '')}`;
    let res: Response;
    try {
      res = await fetch(`${this.c.base}${API_PREFIX}${path}`, {
        method,
        headers: {
          accept: 'application/json',
          ...(this.c.token !== undefined && { authorization: `Bearer ${this.c.token}` }),
          ...(body !== undefined && { 'content-type': 'application/json' }),
          ...headers,
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(this.c.timeoutMs),
      });
    } catch (err) {
      const e = err as Error & { cause?: { code?: string; message?: string } };
      const why =
        e.name === 'TimeoutError'
          ? `no answer within ${this.c.timeoutMs / 1000} s`
          : (e.cause?.code ?? e.cause?.message ?? e.message);
      throw new ApiError(`cannot reach the admin API at ${this.c.base}: ${why}`);
    }
    const text = await res.text();
    let json: unknown;
    try {
      json = text === '' ? undefined : JSON.parse(text);
    } catch {
      json = undefined;
    }
    if (res.ok) return json ?? {};
    throw new ApiError(`${where}: HTTP ${res.status} ${describeError(res.status, json, text)}`);
  }
}

/** The API's error as one line: `<code>: <message> (field <f>, current version <v>)`. */
function describeError(status: number, json: unknown, text: string): string {
  const body = json as { error?: Record<string, unknown> } & Record<string, unknown>;
  const e = (body && typeof body.error === 'object' ? body.error : body) as
    Record<string, unknown> | undefined;
  if (!e || typeof e.message !== 'string') {
    const snippet = text.trim().slice(0, 200);
    return snippet ? `(not an admin API answer: ${snippet})` : '(no body)';
  }
  const notes = [
    typeof e.field === 'string' && `field ${e.field}`,
    typeof e.currentVersion === 'number' && `current version ${e.currentVersion}`,
  ].filter(Boolean);
  const code = typeof e.code === 'string' ? `${e.code}: ` : '';
  const hint = status === 401 ? ' (give --token or set MCPGW_ADMIN_TOKEN)' : '';
  return `${code}${e.message}${notes.length > 0 ? ` (${notes.join(', ')})` : ''}${hint}`;
}

/** A request body: JSON or YAML from FILE, or stdin for `-` and no FILE; it must be an object. */
async function readBody(file: string | undefined, io: AdminIo): Promise<Record<string, unknown>> {
  let text: string;
  let from: string;
  if (file === undefined || file === '-') {
    if (file === undefined && io.stdin.isTTY)
      throw new UsageError('give the body as FILE, or pipe it to stdin');
    from = 'stdin';
    text = await readAll(io.stdin);
  } else {
    from = file;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new UsageError(`${file}: ${(err as Error).message}`);
    }
  }
  if (text.trim() === '') throw new UsageError(`${from}: empty; the body must be a JSON or YAML object`);
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new UsageError(`${from}: not valid JSON or YAML: ${(err as Error).message.split('\n')[0]}`);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc))
    throw new UsageError(
      `${from}: the body must be an object, not ${Array.isArray(doc) ? 'a list' : typeof doc}`,
    );
  return doc as Record<string, unknown>;
}

async function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(typeof c === 'string' ? Buffer.from(c) : (c as Buffer));
  return Buffer.concat(chunks).toString('utf8');
}

function ifMatch(values: Values): Record<string, string> {
  const v = values['if-match'];
  if (v === undefined) return {};
  if (typeof v !== 'string' || !/^\d+$/.test(v))
    throw new UsageError('--if-match must be a version number (0: must not exist)');
  return { 'if-match': `"${v}"` };
}

/** `SERVER` or `SERVER/TOOL`. */
function capability(text: string, toolRequired: boolean): { server: string; tool?: string } {
  const i = text.indexOf('/');
  const server = i < 0 ? text : text.slice(0, i);
  const tool = i < 0 ? undefined : text.slice(i + 1);
  if (!server || tool === '' || (toolRequired && tool === undefined))
    throw new UsageError(`"${text}": expected ${toolRequired ? 'SERVER/TOOL' : 'SERVER or SERVER/TOOL'}`);
  return { server, ...(tool !== undefined && { tool }) };
}

/** A path segment (a name, a scope such as `*`, an id). */
function seg(s: string): string {
  return encodeURIComponent(s);
}

function printJson(io: AdminIo, value: unknown): void {
  io.out(`${JSON.stringify(value, null, 2)}\n`);
}

/** Columns padded to their widest cell; an empty list says so. */
function table(io: AdminIo, header: string[], rows: string[][]): void {
  if (rows.length === 0) {
    io.out('(none)\n');
    return;
  }
  const clean = rows.map((r) => r.map((c) => c.replace(/[\r\n\t]+/g, ' ')));
  const widths = header.map((h, i) => Math.max(h.length, ...clean.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) =>
    r
      .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  io.out(`${[line(header), ...clean.map(line)].join('\n')}\n`);
}

interface ServerView {
  name: string;
  version: number;
  updatedAt: string;
  updatedBy: string;
  tenant: string | null;
  health: { state: string; error?: string };
  server?: { transport?: string };
}

interface KeyView {
  id: string;
  owner: string;
  tenant: string;
  roles: string[];
  scopes: string[];
  revoked: boolean;
  expiresAt?: string;
}

interface PolicyView {
  scope: string;
  version: number;
  policy: { default?: string; rules?: unknown[] };
  updatedAt: string;
  updatedBy: string;
}

interface CapabilitiesView {
  server: string;
  state?: string;
  error?: string;
  tools?: { name?: string; uri?: string }[];
  prompts?: { name?: string; uri?: string }[];
  resources?: { name?: string; uri?: string }[];
}

interface HeldView {
  server: string;
  tool: string;
  currentHash: string;
  approvedHash?: string;
}

interface ChangeView {
  id: number;
  at: string;
  actor: string;
  tenant: string | null;
  kind: string;
  target: string;
  op: string;
  version: number | null;
}
