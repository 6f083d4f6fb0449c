/**
 * Replicas of the pool-backend fixture as child processes, and a raw MCP caller for load: the pool tests
 * kill, restart and slow replicas and count what each one saw.
 */
import type { ChildProcess } from 'node:child_process';
import { readFileSync, existsSync } from 'node:fs';
import { MCP_HEADERS, raw, rawSession } from './gateway.js';
import { freePort, ROOT, spawnUntil, stopChild } from './net.js';

const FIXTURE = `${ROOT}dist/test/fixtures/pool-backend.js`;

export class FixtureReplica {
  child: ChildProcess | undefined;
  constructor(
    readonly name: string,
    readonly port: number,
    readonly log: string,
    private readonly delayMs = 0,
  ) {}

  static async start(name: string, log: string, delayMs = 0): Promise<FixtureReplica> {
    const r = new FixtureReplica(name, await freePort(), log, delayMs);
    await r.restart();
    return r;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}/mcp`;
  }

  async restart(): Promise<void> {
    this.child = await spawnUntil(
      process.execPath,
      [
        FIXTURE,
        '--port',
        String(this.port),
        '--name',
        this.name,
        '--delay-ms',
        String(this.delayMs),
        '--log',
        this.log,
      ],
      /listening/,
    );
  }

  /** SIGKILL: the replica dies mid-whatever, as a crashed host would. */
  async kill(): Promise<void> {
    const c = this.child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const gone = new Promise((r) => c.once('exit', r));
    c.kill('SIGKILL');
    await gone;
  }

  async stop(): Promise<void> {
    await stopChild(this.child);
  }

  /** Every entry the replica logged (its calls and the cancellations it received), across restarts. */
  entries(): any[] {
    if (!existsSync(this.log)) return [];
    return readFileSync(this.log, 'utf8')
      .split('\n')
      .filter((l) => l.length > 0)
      .map((l) => JSON.parse(l));
  }

  calls(tool?: string): any[] {
    return this.entries().filter((e) => e.tool !== undefined && (tool === undefined || e.tool === tool));
  }
}

/** A client session on the gateway, calling tools with raw JSON-RPC. */
export class RawCaller {
  private nextId = 1;
  private constructor(
    readonly url: string,
    readonly sid: string,
  ) {}

  static async open(url: string): Promise<RawCaller> {
    return new RawCaller(url, await rawSession(url));
  }

  async call(name: string, args: Record<string, unknown> = {}, meta?: Record<string, unknown>): Promise<any> {
    const id = this.nextId++;
    const r = await raw(this.url, {
      headers: { ...MCP_HEADERS, 'mcp-session-id': this.sid, 'mcp-protocol-version': '2025-11-25' },
      body: {
        jsonrpc: '2.0',
        id,
        method: 'tools/call',
        params: { name, arguments: args, ...(meta && { _meta: meta }) },
      },
    });
    if (r.status !== 200 || !r.json) throw new Error(`HTTP ${r.status}: ${r.text}`);
    return r.json;
  }

  async close(): Promise<void> {
    await raw(this.url, { method: 'DELETE', headers: { 'mcp-session-id': this.sid } });
  }
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** Polls `check` until it returns a value (not undefined), or fails after `ms`. */
export async function until<T>(
  what: string,
  check: () => Promise<T | undefined> | T | undefined,
  ms = 30_000,
): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
