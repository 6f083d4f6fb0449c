/** Runs the built `mcpgw` command as a child process, as an operator would. */
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from './net.js';

export const CLI = `${ROOT}dist/cli/main.js`;

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function mcpgw(
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; stdin?: string } = {},
): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      [CLI, ...args],
      { env: { ...process.env, ...opts.env }, timeout: 60_000 },
      (err, stdout, stderr) =>
        resolve({
          code: err ? ((err as { code?: number }).code ?? 1) : 0,
          stdout: String(stdout),
          stderr: String(stderr),
        }),
    );
    child.stdin?.end(opts.stdin ?? '');
  });
}

/** A config file in a fresh directory; returns its path. */
export function configFile(doc: Record<string, unknown>): string {
  const dir = mkdtempSync(join(tmpdir(), 'mcpgw-cfg-'));
  const file = join(dir, 'mcpgw.json');
  writeFileSync(file, JSON.stringify(doc));
  return file;
}
