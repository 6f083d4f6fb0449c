#!/usr/bin/env node
/**
 * The `mcpgw` command: start a node, check or document a config file.
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { GatewayConfig } from '../shared/config/schema.js';
import { ADMIN_GROUPS, ADMIN_HELP, adminCommand } from './admin-client.js';

// The rest is imported by the commands that need it: the admin API commands, which only talk HTTP, start
// in a fraction of the time it takes to load the whole gateway.
const gateway = () =>
  Promise.all([
    import('./single.js'),
    import('./core.js'),
    import('./edge.js'),
    import('../shared/log.js'),
    import('../shared/lifecycle/drain.js'),
  ]);

const HELP = `mcpgw - a federated, hierarchical MCP gateway

Usage:
  mcpgw start --config FILE        Run a node in the role FILE names:
                                     role: single  edge and core in one process (the default)
                                     role: edge    client-facing tier (TLS, auth, sessions); forwards to
                                                   its cores: [{ region, url, tls }] with an internal
                                                   token signed by internal.signingKey
                                     role: core    the backends, behind the internal API
                                                   (/internal/v1/*); accepts only internal tokens of the
                                                   edges in internal.trustedKeys
  mcpgw config check FILE          Validate FILE; print every problem with its path; exit 1 on any
  mcpgw config docs                Print the configuration reference (Markdown) generated from the schema
  mcpgw audit verify --config FILE [--region R] [--from T] [--to T]
                                   Recompute the audit hash chains; name every altered, deleted or
                                   inserted record by sequence number; exit 1 on any break
  mcpgw audit export --config FILE [--region R] [--from T] [--to T] [--evidence] [--out FILE]
                                   Write the records as JSONL (for a SIEM); --evidence writes an evidence
                                   package instead (records, each hash, and the hash the range chains to)
  mcpgw audit verify-evidence FILE Check an evidence package on its own
  mcpgw audit prune --config FILE [--before T]
                                   Delete records older than T (default: audit.retentionDays), keeping a
                                   checkpoint so the rest stays verifiable
  mcpgw vault list --config FILE   List stored credentials (never their secrets)
  mcpgw vault put ID --config FILE --kind K [--server S] [--owner U]
                                   Store a credential; its secret is read as JSON from stdin
                                   (api-key: {"apiKey"}; oauth-client: {"clientId","clientSecret","tokenUrl"};
                                   oauth-token: {"accessToken","refreshToken","tokenUrl","clientId",...})
  mcpgw vault rotate-key --config FILE
                                   Re-encrypt every credential with the current key (MCPGW_VAULT_KEY or
                                   vault.keyFile); older keys come from MCPGW_VAULT_PREVIOUS_KEYS or
                                   vault.previousKeyFiles
  mcpgw keys create|list|revoke|rotate --config FILE ...   API keys in the store (mcpgw keys --help)

Against a running gateway's admin API (--url URL or MCPGW_ADMIN_URL, --token or MCPGW_ADMIN_TOKEN;
--json; each has --help):
  mcpgw servers list|get|register|update|deregister|history
  mcpgw keys list|create|revoke|rotate         (without --config)
  mcpgw policies list|get|set|delete           (on the bus with federation.controlPlane.policies)
  mcpgw quota-limits get|set|delete            (the bus's; federation.controlPlane.quotas)
  mcpgw control-plane status
  mcpgw capabilities list [--server NAME]
  mcpgw lifecycle SERVER[/TOOL] STAGE
  mcpgw approvals list|approve
  mcpgw changes list

  mcpgw --help | --version

Times (T) are ISO 8601, e.g. 2026-01-31 or 2026-01-31T12:00:00Z.

Config files are YAML or JSON. Environment overrides: MCPGW_<PATH>, path segments joined by "__",
e.g. MCPGW_LISTEN__PORT=9000, MCPGW_LOG__LEVEL=debug. String values may use \${VAR}.
The config file may also be given as MCPGW_CONFIG.

Endpoints: POST/GET/DELETE /mcp (every server, names prefixed "server__"),
/servers/{name}/mcp (one server, its own names), legacy HTTP+SSE clients at GET /sse + POST /message
(and /servers/{name}/sse), GET /healthz, GET /readyz, GET /metrics (Prometheus), /admin/usage,
/admin/topology, /admin/live and /dashboard (admin.token, or loopback only without one).
TLS on any listener: listen.tls { cert, key, clientCa for mTLS }; files are reloaded when they change.
Example pair: deploy/local/edge.yaml + deploy/local/core.yaml (see README).
`;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}

async function main(argv: string[]): Promise<number> {
  if (argv[0] === 'keys' && keysOverHttp(argv.slice(1))) return adminMain('keys', argv.slice(1));
  if (argv[0] === 'keys') return keysMain(argv.slice(1));
  if (argv[0] !== undefined && ADMIN_GROUPS.has(argv[0])) return adminMain(argv[0], argv.slice(1));
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        config: { type: 'string', short: 'c' },
        region: { type: 'string' },
        from: { type: 'string' },
        to: { type: 'string' },
        before: { type: 'string' },
        out: { type: 'string', short: 'o' },
        evidence: { type: 'boolean' },
        kind: { type: 'string' },
        server: { type: 'string' },
        owner: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'v' },
      },
    });
  } catch (err) {
    return usage((err as Error).message); // an unknown flag is a usage error, not a crash
  }
  const { values, positionals } = parsed;
  if (values.version) {
    process.stdout.write(`${version()}\n`);
    return 0;
  }
  const [cmd, sub, arg] = positionals;
  if (values.help || cmd === undefined || cmd === 'help') {
    process.stdout.write(HELP);
    return cmd === undefined && !values.help ? 2 : 0;
  }
  if (cmd === 'config' && sub === 'check') {
    const file = arg ?? values.config;
    if (!file) return usage('config check needs a FILE');
    const { ConfigError, loadConfigFile } = await import('../shared/config/load.js');
    try {
      const cfg = await loadConfigFile(file);
      process.stdout.write(`${file}: OK (role ${cfg.role}, ${cfg.servers.length} server(s))\n`);
      return 0;
    } catch (err) {
      if (err instanceof ConfigError) {
        process.stderr.write(`${err.message}\n`);
        return 1;
      }
      throw err;
    }
  }
  if (cmd === 'config' && sub === 'docs') {
    const [{ z }, { configSchema }, { renderConfigDocs }] = await Promise.all([
      import('zod'),
      import('../shared/config/schema.js'),
      import('./config-docs.js'),
    ]);
    process.stdout.write(
      renderConfigDocs(z.toJSONSchema(configSchema, { io: 'input' }) as Record<string, unknown>),
    );
    return 0;
  }
  if (cmd === 'audit' && sub === 'verify-evidence') {
    if (!arg) return usage('audit verify-evidence needs a FILE');
    const { auditVerifyEvidence } = await import('./audit.js');
    return guarded(() => auditVerifyEvidence(arg, (t) => process.stdout.write(t)));
  }
  if (cmd === 'audit' || cmd === 'vault') {
    const file = values.config ?? process.env.MCPGW_CONFIG;
    if (!file) return usage(`${cmd} ${sub ?? ''} needs --config FILE`.replace('  ', ' '));
    const out = (t: string) => void process.stdout.write(t);
    const [{ auditExport, auditPrune, auditVerify }, { vaultList, vaultPut, vaultRotateKey }] =
      await Promise.all([import('./audit.js'), import('./vault.js')]);
    const run: Record<string, (cfg: GatewayConfig, dir: string) => Promise<number>> = {
      'audit verify': (cfg, dir) => auditVerify(cfg, dir, values, out),
      'audit export': (cfg, dir) => auditExport(cfg, dir, values, process.stdout),
      'audit prune': (cfg, dir) => auditPrune(cfg, dir, values, out),
      'vault list': (cfg, dir) => vaultList(cfg, dir, out),
      'vault rotate-key': (cfg, dir) => vaultRotateKey(cfg, dir, out),
      'vault put': (cfg, dir) => vaultPut(cfg, dir, arg, values, process.stdin, out),
    };
    const command = run[`${cmd} ${sub}`];
    if (!command) return usage(`unknown command "${positionals.join(' ')}"`);
    const cfg = await loadReported(file);
    if (!cfg) return 1;
    return guarded(() => command(cfg, configBaseDir(file)));
  }
  if (cmd === 'start') {
    const file = values.config ?? process.env.MCPGW_CONFIG;
    if (!file) return usage('start needs --config FILE');
    const cfg = await loadReported(file);
    if (!cfg) return 1;
    const [{ startSingleNode }, { startCoreNode }, { startEdgeNode }, { createLogger }, drain] =
      await gateway();
    const { beginDrain, drainDelayMs } = drain;
    const log = createLogger(cfg.log.level);
    const start = { single: startSingleNode, edge: startEdgeNode, core: startCoreNode }[cfg.role];
    let delay: number;
    try {
      delay = drainDelayMs(cfg.lifecycle.drainDelayMs);
    } catch (err) {
      return usage((err as Error).message);
    }
    const timeout = cfg.lifecycle.drainTimeoutMs;
    const node = await start(cfg, { log, baseDir: configBaseDir(file), configFile: file });
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      // Not ready at once (/readyz 503), alive still; after the drain delay, no longer accepting, and
      // closed once the requests in flight are done (or the drain timeout passed).
      beginDrain();
      log.info({ signal, drainDelayMs: delay, drainTimeoutMs: timeout }, 'shutting down');
      new Promise((r) => setTimeout(r, delay))
        .then(async () => {
          const started = Date.now();
          const r = await node.drain?.(timeout);
          if (r && !r.idle)
            log.warn(
              { inflight: r.inflight, drainTimeoutMs: timeout },
              'drain timeout passed with requests in flight; closing anyway',
            );
          else if (r) log.info({ streams: r.streams, ms: Date.now() - started }, 'drained');
          await node.close();
        })
        .then(
          () => process.exit(0),
          (err: unknown) => {
            log.error({ err }, 'error during shutdown');
            process.exit(1);
          },
        );
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
    return -1; // keep running
  }
  return usage(`unknown command "${positionals.join(' ')}"`);
}

/** Runs a command; a UsageError is the user's mistake (exit 2 with the message), anything else a failure. */
async function guarded(fn: () => Promise<number>): Promise<number> {
  const { UsageError } = await import('./audit.js');
  try {
    return await fn();
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`mcpgw: ${err.message}\n`);
      return 2;
    }
    process.stderr.write(`mcpgw: ${(err as Error)?.message ?? String(err)}\n`);
    return 1;
  }
}

/**
 * `mcpgw keys` talks to the admin API when a gateway is named (--url, or MCPGW_ADMIN_URL) and no
 * --config is given; otherwise to the store the config names, as before the admin API existed.
 */
function keysOverHttp(argv: string[]): boolean {
  const has = (f: string) => argv.some((a) => a === f || a.startsWith(`${f}=`));
  if (has('--config') || argv.includes('-c')) return false;
  return has('--url') || Boolean(process.env.MCPGW_ADMIN_URL);
}

/** The admin API commands (cli/admin-client.ts). */
function adminMain(group: string, argv: string[]): Promise<number> {
  if (argv.length === 0) {
    process.stderr.write(
      `mcpgw: ${group} needs ${group === 'lifecycle' ? 'arguments' : 'a subcommand'}\n\n${ADMIN_HELP[group]}`,
    );
    return Promise.resolve(2);
  }
  return adminCommand(group, argv, {
    out: (t) => process.stdout.write(t),
    err: (t) => process.stderr.write(t),
    stdin: process.stdin,
    env: process.env,
  });
}

/** `mcpgw keys ...`: its own flags, against the store the config names. */
async function keysMain(argv: string[]): Promise<number> {
  const { KEYS_HELP, keysCommand } = await import('./api-keys.js');
  if (argv.length === 0) {
    process.stderr.write(`mcpgw: keys needs a subcommand\n\n${KEYS_HELP}`);
    return 2;
  }
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(KEYS_HELP);
    return 0;
  }
  const i = argv.findIndex((a) => a === '--config' || a === '-c');
  const file = (i >= 0 ? argv[i + 1] : undefined) ?? process.env.MCPGW_CONFIG;
  if (!file) return usage('keys needs --config FILE');
  const cfg = await loadReported(file);
  if (!cfg) return 1;
  try {
    return await keysCommand(argv, cfg, {
      out: (t) => process.stdout.write(t),
      err: (t) => process.stderr.write(t),
    });
  } catch (err) {
    if ((err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) return usage((err as Error).message);
    throw err;
  }
}

function usage(problem: string): number {
  process.stderr.write(`mcpgw: ${problem}\n\n${HELP}`);
  return 2;
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (err: unknown) => {
    process.stderr.write(`mcpgw: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(1);
  },
);

/** Loads a config file; a ConfigError (every problem with its path) goes to stderr and gives undefined. */
async function loadReported(file: string): Promise<GatewayConfig | undefined> {
  const { ConfigError, loadConfigFile } = await import('../shared/config/load.js');
  try {
    return await loadConfigFile(file);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`${err.message}\n`);
    return undefined;
  }
}

/** Relative paths in a config file are relative to its directory (as single.ts's configBaseDir). */
function configBaseDir(file: string): string {
  return dirname(resolve(file));
}
