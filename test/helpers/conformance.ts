/**
 * Runs the MCP conformance suite (`@modelcontextprotocol/conformance`, server mode) against a URL and
 * reads which scenarios passed and failed.
 *
 * Two builds are supported:
 * - `0.1.13` (the default): the devDependency, run on the current Node (20). Nothing is fetched, so it
 *   works offline once `npm ci` has run; a whole-suite run against the fixture takes about 2 s.
 * - `0.1.16`: the newest release, which wants Node 22. Run through
 *   `npx -y -p node@22 -p @modelcontextprotocol/conformance@0.1.16 conformance`, which needs the npm
 *   registry on first use (about 12 s and ~300 MB of npm cache, mostly the Node 22 binary) and takes
 *   about 3 s once cached. Its server scenarios and checks are the same 32 as 0.1.13's.
 *
 * Choose with `opts.version` (or `MCPGW_CONFORMANCE_VERSION=0.1.16`), or give `opts.command` (or
 * `MCPGW_CONFORMANCE_CMD`): a space-separated command that runs the `conformance` CLI.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

export type ConformanceVersion = '0.1.13' | '0.1.16';

/** The newest suite, which needs Node 22: fetched from the npm registry by npx on first use. */
export const CONFORMANCE_0_1_16 = 'npx -y -p node@22 -p @modelcontextprotocol/conformance@0.1.16 conformance';

export interface ConformanceOptions {
  /** `active` (the CLI's default, excludes pending scenarios), `all` or `pending`. Default `all`. */
  suite?: string;
  /** Run one scenario instead of a suite. */
  scenario?: string;
  /** Kill the run after this long (default 300 s). */
  timeoutMs?: number;
  /** Which build to run (default `0.1.13`, or `MCPGW_CONFORMANCE_VERSION`). */
  version?: ConformanceVersion;
  /** A space-separated command that runs the `conformance` CLI; overrides `version`. */
  command?: string;
}

export interface ConformanceResult {
  /** Scenarios without a failed check. */
  passed: string[];
  /** Scenarios with at least one failed check. */
  failed: string[];
  /** The CLI's stdout and stderr (ANSI colour codes removed), plus a note if it timed out or crashed. */
  output: string;
  /** Checks the suite reported as WARNING (SHOULD-level), as `scenario: check-id: message`. */
  warnings: string[];
  /** The command that ran. */
  command: string;
  durationMs: number;
}

/**
 * The command (argv) that runs the `conformance` CLI. Precedence: `opts.command`, `opts.version`,
 * `MCPGW_CONFORMANCE_CMD`, `MCPGW_CONFORMANCE_VERSION`, then the installed 0.1.13.
 */
export function conformanceCommand(opts: Pick<ConformanceOptions, 'version' | 'command'> = {}): string[] {
  if (opts.command) return opts.command.split(' ').filter(Boolean);
  const envCommand = process.env.MCPGW_CONFORMANCE_CMD;
  if (opts.version === undefined && envCommand) return envCommand.split(' ').filter(Boolean);
  const version = opts.version ?? process.env.MCPGW_CONFORMANCE_VERSION ?? '0.1.13';
  if (version === '0.1.16') return CONFORMANCE_0_1_16.split(' ');
  if (version !== '0.1.13') throw new Error(`unknown conformance version ${version}`);
  return [process.execPath, localBin()];
}

/** The installed devDependency's CLI entry point. */
function localBin(): string {
  const require = createRequire(import.meta.url);
  const pkgJson = require.resolve('@modelcontextprotocol/conformance/package.json');
  const pkg = require(pkgJson) as { bin?: string | Record<string, string> };
  const bin = typeof pkg.bin === 'string' ? pkg.bin : pkg.bin?.conformance;
  if (!bin) throw new Error('@modelcontextprotocol/conformance has no `conformance` bin');
  return join(dirname(pkgJson), bin);
}

// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-9;]*m/g;

interface Run {
  output: string;
  code: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
}

/** Runs a command in its own process group (npx starts a grandchild) and collects its output. */
function run(argv: string[], cwd: string, timeoutMs: number): Promise<Run> {
  const [cmd, ...args] = argv;
  return new Promise((resolve, reject) => {
    const child = spawn(cmd!, args, {
      cwd,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' },
    });
    let output = '';
    child.stdout.on('data', (b: Buffer) => (output += b.toString()));
    child.stderr.on('data', (b: Buffer) => (output += b.toString()));
    let timedOut = false;
    const kill = (signal: NodeJS.Signals) => {
      try {
        process.kill(-child.pid!, signal);
      } catch {
        // already gone
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      kill('SIGTERM');
      setTimeout(() => kill('SIGKILL'), 3000).unref();
    }, timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ output: output.replace(ANSI, ''), code, signal, timedOut });
    });
  });
}

/** Scenario directories are `server-<scenario>-<ISO timestamp with : and . replaced by ->`. */
const RESULT_DIR = /^server-(.+)-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z$/;

async function readWarnings(outDir: string): Promise<string[]> {
  const warnings: string[] = [];
  let dirs: string[];
  try {
    dirs = (await readdir(outDir)).sort();
  } catch {
    return warnings;
  }
  for (const dir of dirs) {
    const scenario = RESULT_DIR.exec(dir)?.[1];
    if (!scenario) continue;
    try {
      const checks = JSON.parse(await readFile(join(outDir, dir, 'checks.json'), 'utf8')) as {
        id?: string;
        status?: string;
        errorMessage?: string;
      }[];
      for (const c of checks)
        if (c.status === 'WARNING') warnings.push(`${scenario}: ${c.id}: ${c.errorMessage ?? ''}`.trimEnd());
    } catch {
      // a scenario that crashed may have left no checks.json
    }
  }
  return warnings;
}

export async function runConformance(url: string, opts: ConformanceOptions = {}): Promise<ConformanceResult> {
  const argv = conformanceCommand(opts);
  const outDir = await mkdtemp(join(tmpdir(), 'mcpgw-conformance-'));
  const selection = opts.scenario ? ['--scenario', opts.scenario] : ['--suite', opts.suite ?? 'all'];
  const started = Date.now();
  try {
    const r = await run(
      [...argv, 'server', '--url', url, ...selection, '--output-dir', outDir],
      outDir,
      opts.timeoutMs ?? 300_000,
    );
    const durationMs = Date.now() - started;
    let output = r.output;
    const passed: string[] = [];
    const failed: string[] = [];
    // The suite's summary: `✓ name: 3 passed, 0 failed` / `✗ name: 1 passed, 2 failed`.
    for (const m of output.matchAll(/^\s*([✓✗])\s+(\S+):\s+(\d+) passed,\s+(\d+) failed\s*$/gm))
      (m[1] === '✓' && m[4] === '0' ? passed : failed).push(m[2]!);
    // A single scenario prints `Passed: x/y, n failed, w warnings` instead of a summary.
    if (opts.scenario && passed.length + failed.length === 0) {
      const m = /^Passed: \d+\/\d+, (\d+) failed/m.exec(output);
      if (m) (m[1] === '0' ? passed : failed).push(opts.scenario);
    }
    if (r.timedOut) output += `\n[conformance timed out after ${opts.timeoutMs ?? 300_000} ms]`;
    else if (passed.length + failed.length === 0)
      output += `\n[conformance printed no results; exit code ${r.code}, signal ${r.signal}]`;
    return {
      passed,
      failed,
      output,
      warnings: await readWarnings(outDir),
      command: argv.join(' '),
      durationMs,
    };
  } finally {
    await rm(outDir, { recursive: true, force: true });
  }
}

/** The server scenarios the chosen build knows (`conformance list --server`). */
export async function listConformanceScenarios(
  opts: Pick<ConformanceOptions, 'version' | 'command' | 'timeoutMs'> = {},
): Promise<string[]> {
  const r = await run([...conformanceCommand(opts), 'list', '--server'], tmpdir(), opts.timeoutMs ?? 120_000);
  // `  - name` (0.1.13) or `  - name [2025-06-18,2025-11-25]` (0.1.16).
  return [...r.output.matchAll(/^\s+- ([a-z0-9][a-z0-9-]*)(?:\s+\[[^\]]*\])?\s*$/gm)].map((m) => m[1]!);
}
