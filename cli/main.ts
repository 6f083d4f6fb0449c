#!/usr/bin/env node
/**
 * The `mcpgw` command: start a node, check or document a config file.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { configSchema } from '../shared/config/schema.js';
import { ConfigError, loadConfigFile } from '../shared/config/load.js';
import { createLogger } from '../shared/log.js';
import { configBaseDir, startSingleNode } from './single.js';
import { startCoreNode } from './core.js';
import { startEdgeNode } from './edge.js';
import { renderConfigDocs } from './config-docs.js';

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
  mcpgw --help | --version

Config files are YAML or JSON. Environment overrides: MCPGW_<PATH>, path segments joined by "__",
e.g. MCPGW_LISTEN__PORT=9000, MCPGW_LOG__LEVEL=debug. String values may use \${VAR}.
The config file may also be given as MCPGW_CONFIG.

Endpoints: POST/GET/DELETE /mcp (every server, names prefixed "server__"),
/servers/{name}/mcp (one server, its own names), legacy HTTP+SSE clients at GET /sse + POST /message
(and /servers/{name}/sse), GET /healthz, GET /readyz.
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
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        config: { type: 'string', short: 'c' },
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
    process.stdout.write(
      renderConfigDocs(z.toJSONSchema(configSchema, { io: 'input' }) as Record<string, unknown>),
    );
    return 0;
  }
  if (cmd === 'start') {
    const file = values.config ?? process.env.MCPGW_CONFIG;
    if (!file) return usage('start needs --config FILE');
    let cfg;
    try {
      cfg = await loadConfigFile(file);
    } catch (err) {
      if (err instanceof ConfigError) {
        process.stderr.write(`${err.message}\n`);
        return 1;
      }
      throw err;
    }
    const log = createLogger(cfg.log.level);
    const start = { single: startSingleNode, edge: startEdgeNode, core: startCoreNode }[cfg.role];
    const node = await start(cfg, { log, baseDir: configBaseDir(file) });
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      log.info({ signal }, 'shutting down');
      node.close().then(
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
