/**
 * Child processes for the benchmark: spawn, wait until ready, sample CPU time, and kill them all on exit
 * (normal end, error, SIGINT, SIGTERM). Each child gets its own process group so that its own children
 * (e.g. the stdio backend under mcp-proxy or the gateway) go down with it.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { request } from 'undici';

export interface Child {
  name: string;
  proc: ChildProcess;
  pid: number;
  /** The last few KiB of the child's stdout and stderr, for diagnostics. */
  tail(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  hasExited(): boolean;
}

const children = new Set<Child>();
let stopping = false;

/** True once a signal asked us to stop (errors seen after that are our own doing). */
export function isStopping(): boolean {
  return stopping;
}

function killGroup(c: Child, signal: NodeJS.Signals): void {
  try {
    process.kill(-c.pid, signal);
  } catch {
    try {
      c.proc.kill(signal);
    } catch {
      // already gone
    }
  }
}

/** Stops one child: SIGTERM to its process group, then SIGKILL after `graceMs`. */
export async function stopChild(c: Child, graceMs = 2000): Promise<void> {
  if (!c.hasExited()) {
    killGroup(c, 'SIGTERM');
    const t = setTimeout(() => killGroup(c, 'SIGKILL'), graceMs);
    await c.exited;
    clearTimeout(t);
  }
  // Anything left in the group (grandchildren that ignored SIGTERM) goes too.
  killGroup(c, 'SIGKILL');
  children.delete(c);
}

export async function stopAll(): Promise<void> {
  await Promise.all([...children].map((c) => stopChild(c)));
}

let handlersInstalled = false;
function installHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  // Last resort, synchronous: whatever is still running dies with us.
  process.on('exit', () => {
    for (const c of children) killGroup(c, 'SIGKILL');
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      stopping = true;
      process.stderr.write(`\n${sig}: stopping ${children.size} child process(es)\n`);
      void stopAll().finally(() => process.exit(130));
    });
  }
}

export function spawnChild(name: string, command: string, args: string[], cwd?: string): Child {
  installHandlers();
  const proc = spawn(command, args, {
    cwd,
    stdio: ['pipe', 'pipe', 'pipe'],
    detached: true,
    env: { ...process.env, NODE_ENV: 'production' },
  });
  if (proc.pid === undefined) throw new Error(`${name}: could not spawn ${command}`);
  let buf = '';
  const keep = (chunk: Buffer): void => {
    buf += chunk.toString();
    if (buf.length > 16_384) buf = buf.slice(-8192);
  };
  proc.stdout?.on('data', keep);
  proc.stderr?.on('data', keep);
  let done = false;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    proc.once('exit', (code, signal) => {
      done = true;
      resolve({ code, signal });
    });
    proc.once('error', (err) => {
      done = true;
      keep(Buffer.from(`spawn error: ${err.message}\n`));
      resolve({ code: null, signal: null });
    });
  });
  const child: Child = {
    name,
    proc,
    pid: proc.pid,
    tail: () => buf,
    exited,
    hasExited: () => done,
  };
  children.add(child);
  return child;
}

/** Waits for a stdout line `listening <url>`; returns the url. */
export function waitForListening(c: Child, timeoutMs = 10_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let line = '';
    const timer = setTimeout(() => fail(`no "listening" line within ${timeoutMs} ms`), timeoutMs);
    const onData = (chunk: Buffer): void => {
      line += chunk.toString();
      const m = /^listening (\S+)$/m.exec(line);
      if (m) {
        cleanup();
        resolve(m[1]!);
      }
    };
    const fail = (why: string): void => {
      cleanup();
      reject(new Error(`${c.name}: ${why}\n${c.tail()}`));
    };
    const cleanup = (): void => {
      clearTimeout(timer);
      c.proc.stdout?.off('data', onData);
    };
    c.proc.stdout?.on('data', onData);
    void c.exited.then(({ code, signal }) => fail(`exited early (code ${code}, signal ${signal})`));
  });
}

/**
 * Polls `url` until `ok(status)` holds; rejects when the child exits or the time runs out.
 */
export async function waitForHttp(
  c: Child,
  url: string,
  ok: (status: number) => boolean,
  timeoutMs = 30_000,
  init: { method?: 'GET' | 'POST'; headers?: Record<string, string>; body?: string } = {},
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer';
  while (Date.now() < deadline) {
    if (c.hasExited()) {
      const { code, signal } = await c.exited;
      throw new Error(`${c.name} exited (code ${code}, signal ${signal}) before ${url} was ready`);
    }
    try {
      const res = await request(url, {
        method: init.method ?? 'GET',
        headers: init.headers,
        body: init.body,
      });
      await res.body.dump();
      if (ok(res.statusCode)) return;
      last = `HTTP ${res.statusCode}`;
    } catch (err) {
      last = err instanceof Error ? err.message : String(err);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${c.name}: ${url} not ready within ${timeoutMs} ms (last: ${last})`);
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

let clkTck = 0;
function ticksPerSecond(): number {
  if (clkTck === 0) {
    try {
      clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clkTck = 100;
    }
  }
  return clkTck;
}

/** CPU time (user + system) of one process in ms, from /proc; undefined if unavailable. */
export function cpuMs(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // After "pid (comm) ", fields[0] is state (field 3); utime is field 14, stime field 15.
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    return ((utime + stime) * 1000) / ticksPerSecond();
  } catch {
    return undefined;
  }
}

/**
 * CPU time (ms) of every process whose command name is `comm` (Linux /proc), e.g. `postgres`: the server
 * and its per-connection backends. A process that ends between two readings takes its time with it, so
 * only differences over a span in which the processes live say anything.
 */
export function commandCpuMs(comm: string): number {
  let total = 0;
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readFileSync(`/proc/${d}/comm`, 'utf8').trim() !== comm) continue;
    } catch {
      continue;
    }
    total += cpuMs(Number(d)) ?? 0;
  }
  return total;
}

/** The direct children of a process (Linux /proc), or [] if unknown. */
export function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
      .trim()
      .split(/\s+/)
      .filter((s) => s.length > 0)
      .map(Number);
  } catch {
    return [];
  }
}
