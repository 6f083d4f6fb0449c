/**
 * Watches a few files (keys, certificates) and calls back when any of their contents changed. Operators
 * rotate by rewriting or atomically renaming a file, so the parent directories are watched (a watch on the
 * file itself dies with a rename), and a slow stat poll backs it up where directory events are unreliable
 * (network filesystems, some container mounts). Unchanged contents never call back.
 */
import { createHash } from 'node:crypto';
import { readFileSync, watch, type FSWatcher } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';

export interface FileWatch {
  close(): void;
}

export interface WatchOptions {
  /** Events are collected this long before calling back (an editor writes in several steps). */
  debounceMs?: number;
  /** The backup poll. */
  pollMs?: number;
}

export function watchFiles(files: readonly string[], onChange: () => void, o: WatchOptions = {}): FileWatch {
  const paths = [...new Set(files.map((f) => resolve(f)))];
  const digest = () => paths.map((p) => fingerprint(p)).join(',');
  let last = digest();
  let timer: NodeJS.Timeout | undefined;
  const check = () => {
    timer = undefined;
    const now = digest();
    if (now === last) return;
    last = now;
    onChange();
  };
  const soon = () => {
    clearTimeout(timer);
    timer = setTimeout(check, o.debounceMs ?? 30);
    timer.unref();
  };
  const watchers: FSWatcher[] = [];
  const byDir = new Map<string, Set<string>>();
  for (const p of paths) {
    const d = dirname(p);
    if (!byDir.has(d)) byDir.set(d, new Set());
    byDir.get(d)!.add(basename(p));
  }
  for (const [d, names] of byDir) {
    try {
      const w = watch(d, { persistent: false }, (_event, name) => {
        if (name === null || names.has(String(name))) soon();
      });
      w.on('error', () => {});
      watchers.push(w);
    } catch {
      // a directory that cannot be watched is still polled
    }
  }
  const poll = setInterval(check, o.pollMs ?? 2000);
  poll.unref();
  return {
    close() {
      clearTimeout(timer);
      clearInterval(poll);
      for (const w of watchers) w.close();
    },
  };
}

function fingerprint(path: string): string {
  try {
    return createHash('sha256').update(readFileSync(path)).digest('base64url').slice(0, 16);
  } catch {
    return 'missing';
  }
}
