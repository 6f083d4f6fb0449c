/** The lines a child process prints, and promises for the first line matching a pattern. */
import type { ChildProcess } from 'node:child_process';

export interface Output {
  lines(): readonly string[];
  /** A position: `waitFor(re, mark)` only considers lines printed after it. */
  mark(): number;
  waitFor(pattern: RegExp, after?: number, timeoutMs?: number): Promise<string>;
}

export function collectOutput(child: ChildProcess): Output {
  const lines: string[] = [];
  let partial = '';
  const waiters: { re: RegExp; after: number; resolve: (line: string) => void }[] = [];
  const find = (re: RegExp, after: number) => lines.slice(after).find((l) => re.test(l));
  const onData = (b: Buffer) => {
    const parts = (partial + b.toString()).split('\n');
    partial = parts.pop()!;
    lines.push(...parts);
    for (const w of [...waiters]) {
      const line = find(w.re, w.after);
      if (line === undefined) continue;
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve(line);
    }
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  return {
    lines: () => lines,
    mark: () => lines.length,
    waitFor(re, after = 0, timeoutMs = 15_000) {
      const line = find(re, after);
      if (line !== undefined) return Promise.resolve(line);
      return new Promise((resolve, reject) => {
        const t = setTimeout(
          () =>
            reject(new Error(`no output line matched ${re}; last lines:\n${lines.slice(-30).join('\n')}`)),
          timeoutMs,
        );
        waiters.push({
          re,
          after,
          resolve: (l) => {
            clearTimeout(t);
            resolve(l);
          },
        });
      });
    },
  };
}
