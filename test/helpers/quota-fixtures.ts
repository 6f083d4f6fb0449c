/**
 * What the quota tests share: the counting backend, gateways with quotas on and (test-only) several
 * principals named by an `x-test-user` header, and an SDK client acting as one of them.
 */
import type { ChildProcess } from 'node:child_process';
import type { FastifyRequest } from 'fastify';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { startSingleNode, type RunningNode } from '../../cli/single.js';
import { validateConfig } from '../../shared/config/load.js';
import { ANONYMOUS, type Principal } from '../../shared/identity/principal.js';
import { createLogger } from '../../shared/log.js';
import { freePort, ROOT, spawnUntil } from './net.js';

export const COUNTING = `${ROOT}dist/test/fixtures/counting-http.js`;

export async function startCountingBackend(): Promise<{ url: string; base: string; child: ChildProcess }> {
  const port = await freePort();
  const child = await spawnUntil(process.execPath, [COUNTING, '--port', String(port)], /listening/);
  return { url: `http://127.0.0.1:${port}/mcp`, base: `http://127.0.0.1:${port}`, child };
}

export async function backendStats(
  base: string,
): Promise<{ inFlight: number; maxInFlight: number; calls: number }> {
  return (await fetch(`${base}/stats`)).json() as Promise<{
    inFlight: number;
    maxInFlight: number;
    calls: number;
  }>;
}

/**
 * Test-only identity: `x-test-user: name[;tenant[;role,role]]`. The product has no such header; this
 * stands in for the authentication hook another issue builds.
 */
export function testCaller(req: FastifyRequest): Principal {
  const h = req.headers['x-test-user'];
  if (typeof h !== 'string') return ANONYMOUS;
  const [subject, tenant = 'default', roles = ''] = h.split(';');
  return {
    subject: subject!,
    tenant,
    roles: roles ? roles.split(',') : [],
    scopes: [],
    clientApp: req.headers['x-test-app'] as string | undefined,
    authMethod: 'api-key',
  };
}

export async function startQuotaGateway(
  doc: Record<string, unknown>,
  logTo?: NodeJS.WritableStream,
): Promise<RunningNode> {
  const config = validateConfig(
    {
      role: 'single',
      listen: { host: '127.0.0.1', port: 0 },
      log: { level: process.env.MCPGW_TEST_LOG ?? 'silent' },
      ...doc,
    },
    'test',
    {},
  );
  return startSingleNode(config, { log: createLogger(config.log.level, logTo), callerOf: testCaller });
}

/** The official v1 SDK client, as the user `user` (no header: anonymous). */
export async function clientAs(url: string, user?: string): Promise<Client> {
  const c = new Client({ name: 'quota-test', version: '1.0.0' });
  await c.connect(
    new StreamableHTTPClientTransport(new URL(url), {
      requestInit: { headers: user ? { 'x-test-user': user } : {} },
    }),
  );
  return c;
}
