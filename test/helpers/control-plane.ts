/**
 * Control-plane test support: `role: single` gateway processes (sidecars: memory stores, auth off, one
 * scripted stdio server `alpha` with tools `one` and `two`, quotas on) that follow one control-plane
 * bucket, and reading what each holds in force (GET /admin/api/v1/control-plane) without sleeping.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { configFile } from './cli.js';
import { freePort, ROOT, spawnUntil } from './net.js';
import type { SdkClient } from './sdk-clients.js';

const MAIN = `${ROOT}dist/cli/main.js`;
const SCRIPTED = `${ROOT}dist/test/fixtures/scripted-server.js`;

export interface ControlPlaneRun {
  nats: string;
  bucket: string;
  region: string;
  run: string;
  /** federation.controlPlane.region: the region whose JetStream holds the bucket (default: own). */
  controlRegion?: string;
  /** federation.antiEntropyMs (how often the whole bucket is read again). */
  antiEntropyMs?: number;
}

export interface Gateway {
  name: string;
  url: string;
  child: ChildProcess;
  output: string[];
}

export async function startGateway(name: string, r: ControlPlaneRun): Promise<Gateway> {
  const port = await freePort();
  const file = configFile({
    role: 'single',
    region: r.region,
    listen: { host: '127.0.0.1', port },
    log: { level: 'info' },
    store: { kind: 'memory' },
    auth: { mode: 'none' },
    servers: [
      {
        name: 'alpha',
        transport: 'stdio',
        command: process.execPath,
        args: [SCRIPTED],
        env: { FIXTURE_CATALOG: JSON.stringify({ tools: ['one', 'two'] }) },
      },
    ],
    // The file's own limits: generous; the bus narrows one tool.
    quotas: { enabled: true, store: 'memory' },
    federation: {
      bus: 'nats',
      natsUrls: [r.nats],
      gatewayId: `${name}-${r.run}`,
      ...(r.antiEntropyMs !== undefined && { antiEntropyMs: r.antiEntropyMs }),
      controlPlane: {
        policies: true,
        quotas: true,
        bucket: r.bucket,
        ...(r.controlRegion !== undefined && { region: r.controlRegion }),
      },
    },
  });
  const child = await spawnUntil(process.execPath, [MAIN, 'start', '--config', file], /mcpgw listening/);
  const output: string[] = [];
  child.stdout!.on('data', (b: Buffer) => output.push(b.toString()));
  child.stderr!.on('data', (b: Buffer) => output.push(b.toString()));
  return { name, url: `http://127.0.0.1:${port}`, child, output };
}

export async function api(gw: Gateway, method: string, path: string, body?: unknown, headers = {}) {
  const res = await fetch(`${gw.url}/admin/api/v1${path}`, {
    method,
    headers: { ...(body !== undefined && { 'content-type': 'application/json' }), ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : undefined };
}

export interface Status {
  connected: boolean;
  applied: Array<{ key: string; revision: number; updatedBy: string; gateway: string; appliedAt: number }>;
  refused: Array<{ key: string; revision: number; reason: string }>;
}

export const status = async (gw: Gateway) => (await api(gw, 'GET', '/control-plane')).json as Status;

/** Polls the gateway's control-plane status until `ok` holds (a bounded wait, not a sleep). */
export async function until(
  gw: Gateway,
  ok: (s: Status) => boolean,
  what: string,
  ms = 10_000,
): Promise<Status> {
  const deadline = Date.now() + ms;
  for (;;) {
    const s = await status(gw);
    if (ok(s)) return s;
    if (Date.now() > deadline) assert.fail(`${gw.name}: ${what} not seen in ${ms} ms: ${JSON.stringify(s)}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

export const hasRevision = (key: string, revision: number) => (s: Status) =>
  s.applied.some((a) => a.key === key && a.revision >= revision) ||
  s.refused.some((r) => r.key === key && r.revision >= revision);

export const names = async (c: SdkClient) =>
  ((await c.listTools()).tools as { name: string }[]).map((t) => t.name);

export async function refusal(p: Promise<unknown>): Promise<{ code: number; message: string; data?: any }> {
  try {
    const r = await p;
    assert.fail(`expected a JSON-RPC error, got ${JSON.stringify(r)}`);
  } catch (err) {
    if (err instanceof assert.AssertionError) throw err;
    return err as { code: number; message: string; data?: any };
  }
}

export function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}
