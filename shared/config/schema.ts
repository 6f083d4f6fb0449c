/**
 * The one configuration schema (zod). Human-friendly YAML/JSON is validated here once at start-up, every
 * problem reported together with its path, then frozen. `docs/configuration.md` is generated from it.
 */
import { z } from 'zod';

/** Server names become tool prefixes: no `__`, no leading or trailing `_`, so `{server}__{tool}` parses back. */
const serverName = z
  .string()
  .regex(
    /^[A-Za-z0-9-]+(?:_[A-Za-z0-9-]+)*$/,
    'letters, digits, "-" and single "_" between them (no "__", no leading or trailing "_")',
  )
  .max(32)
  .describe(
    'Unique server name; the prefix of its tools and prompts on /mcp and the {name} of /servers/{name}/mcp.',
  );

const timeouts = z
  .object({
    requestMs: z
      .number()
      .int()
      .positive()
      .default(120_000)
      .describe('How long a request to this backend may take; progress notifications restart the clock.'),
    connectMs: z
      .number()
      .int()
      .positive()
      .default(15_000)
      .describe('How long connecting and the initialize handshake may take.'),
  })
  .strict()
  .prefault({});

// ---------------------------------------------------------------- backend pools (issue 6)
// Replicas, balancing, health, breakers, retries, response cache and per-tool policy; see docs/pools.md.

const poolUrl = z.url({ protocol: /^https?$/ });

const replicaEntry = z.union([
  poolUrl.describe('A replica URL (weight 1).'),
  z
    .object({
      url: poolUrl.describe("The replica's MCP endpoint."),
      weight: z
        .number()
        .int()
        .min(1)
        .max(1000)
        .default(1)
        .describe('Relative share of new sessions and calls (`weighted` balancer; also scales the others).'),
    })
    .strict(),
]);

const toolPolicy = z
  .object({
    readOnly: z
      .boolean()
      .optional()
      .describe(
        "Overrides the tool's `readOnlyHint` (annotations are untrusted): safe to retry and to cache.",
      ),
    idempotent: z
      .boolean()
      .optional()
      .describe("Overrides the tool's `idempotentHint`: safe to retry (never cached unless read-only)."),
    timeoutMs: z
      .number()
      .int()
      .positive()
      .optional()
      .describe(
        "Timeout of this tool's calls (instead of the server's `timeouts.requestMs`), retries included.",
      ),
    cacheTtlMs: z
      .number()
      .int()
      .min(0)
      .optional()
      .describe("Response cache lifetime of this (read-only) tool's results; 0 disables caching it."),
    staleIfErrorMs: z
      .number()
      .int()
      .min(0)
      .optional()
      .describe('How long after expiry a cached result may still be served while the backend fails.'),
  })
  .strict();

const poolFields = {
  balancer: z
    .enum(['round-robin', 'least-connections', 'weighted', 'latency'])
    .default('round-robin')
    .describe(
      "How a replica is chosen: for a new backend session (HTTP, sticky for the client session) or per call (stdio pools, stateless backends). `latency`: power of two choices over each replica's EWMA latency.",
    ),
  health: z
    .object({
      intervalMs: z
        .number()
        .int()
        .min(0)
        .default(5000)
        .describe('Active check (MCP ping) interval per replica; 0 turns active checks off.'),
      timeoutMs: z.number().int().positive().default(2000).describe('A ping slower than this failed.'),
      healthyThreshold: z
        .number()
        .int()
        .positive()
        .default(2)
        .describe('Consecutive successful checks that bring an unhealthy replica back.'),
      unhealthyThreshold: z
        .number()
        .int()
        .positive()
        .default(3)
        .describe(
          'Consecutive failures (checks or real calls: unavailable, timeout) that take a replica out.',
        ),
      slowStartMs: z
        .number()
        .int()
        .min(0)
        .default(10_000)
        .describe("A recovered replica's weight ramps from 10% to 100% over this time."),
    })
    .strict()
    .prefault({})
    .describe('Active and passive health checks of each replica.'),
  breaker: z
    .object({
      errorThresholdPercentage: z
        .number()
        .min(1)
        .max(100)
        .default(50)
        .describe("Failure share in the rolling window that opens a replica's breaker."),
      volumeThreshold: z
        .number()
        .int()
        .min(0)
        .default(5)
        .describe('Calls in the window before the breaker may open.'),
      resetTimeoutMs: z
        .number()
        .int()
        .positive()
        .default(5000)
        .describe('An open breaker lets one probe call through (half-open) after this long.'),
      rollingWindowMs: z.number().int().positive().default(10_000).describe('The statistics window.'),
    })
    .strict()
    .prefault({})
    .describe(
      'A circuit breaker per replica (opossum). Backend failures trip it; tool errors and caller mistakes do not.',
    ),
  retry: z
    .object({
      maxAttempts: z
        .number()
        .int()
        .min(1)
        .max(10)
        .default(3)
        .describe('Attempts of a call that is safe to repeat (read-only or idempotent, or never sent).'),
      initialBackoffMs: z.number().int().min(0).default(20).describe('First backoff (full jitter).'),
      maxBackoffMs: z.number().int().min(0).default(1000).describe('Backoff ceiling.'),
      budgetPercent: z
        .number()
        .min(0)
        .max(100)
        .default(10)
        .describe(
          'Retries allowed as a share of requests (token bucket), so retries cannot swamp a backend.',
        ),
      budgetBurst: z
        .number()
        .int()
        .min(0)
        .default(20)
        .describe('Retry tokens the bucket holds (and starts with).'),
    })
    .strict()
    .prefault({}),
  cache: z
    .object({
      ttlMs: z
        .number()
        .int()
        .min(0)
        .default(0)
        .describe(
          "Response cache lifetime of read-only tools' results; 0: no caching unless a tool sets one.",
        ),
      negativeTtlMs: z
        .number()
        .int()
        .min(0)
        .default(1000)
        .describe('Lifetime of a cached tool error (`isError`) of a cached tool.'),
      staleIfErrorMs: z
        .number()
        .int()
        .min(0)
        .default(0)
        .describe('How long after expiry a cached result may be served while the backend fails.'),
      scope: z
        .enum(['user', 'tenant', 'shared'])
        .default('user')
        .describe('Whose calls share cached results: the same user, the same tenant, or everyone.'),
    })
    .strict()
    .prefault({}),
  trustAnnotations: z
    .boolean()
    .default(true)
    .describe("Believe the backend's readOnlyHint/idempotentHint (otherwise only `tools` overrides count)."),
  tools: z
    .record(z.string(), toolPolicy)
    .default({})
    .describe(
      "Per-tool policy by the backend's own tool name: `{readOnly, idempotent, timeoutMs, cacheTtlMs, staleIfErrorMs}` (see docs/pools.md).",
    ),
};

const stdioPoolFields = {
  processes: z
    .number()
    .int()
    .min(1)
    .max(64)
    .default(1)
    .describe('Processes in the pool; calls spread over them. Never grows with sessions.'),
  pool: z
    .object({
      minProcesses: z
        .number()
        .int()
        .min(1)
        .default(1)
        .describe('Processes kept running when idle reaping is on.'),
      idleTimeoutMs: z
        .number()
        .int()
        .min(0)
        .default(0)
        .describe(
          'A process beyond `minProcesses` idle this long is stopped (started again under load); 0: never.',
        ),
      maxRestarts: z
        .number()
        .int()
        .min(1)
        .default(10)
        .describe('Restarts of one process within `restartWindowMs` after which it is given up.'),
      restartWindowMs: z.number().int().positive().default(60_000).describe('See `maxRestarts`.'),
    })
    .strict()
    .prefault({}),
};

export const poolsSchema = z
  .object({
    sharedState: z
      .enum(['memory', 'redis'])
      .default('memory')
      .describe(
        'Where breaker/ejection state and the second tier of the response cache live: `memory` (this process) or `redis` (every core instance of the region; needs `redis.url`).',
      ),
    cacheMaxEntries: z
      .number()
      .int()
      .min(1)
      .default(10_000)
      .describe('Entries of the in-process response cache (LRU).'),
    cacheMaxEntryBytes: z
      .number()
      .int()
      .min(1)
      .default(1024 * 1024)
      .describe('Results larger than this (serialized) are not cached.'),
  })
  .strict()
  .prefault({});
// ---------------------------------------------------------------- end of backend pools

const common = {
  name: serverName,
  description: z.string().optional().describe('Free text for operators.'),
  enabled: z.boolean().default(true).describe('A disabled server is neither started nor listed.'),
  timeouts,
  ...poolFields,
};

const stdioServer = z
  .object({
    ...common,
    transport: z.literal('stdio'),
    command: z.string().min(1).describe('Executable to run (no shell).'),
    args: z.array(z.string()).default([]).describe('Arguments.'),
    env: z
      .record(z.string(), z.string())
      .default({})
      .describe('Environment added to a minimal inherited one (PATH, HOME...). Values may use ${VAR}.'),
    cwd: z.string().optional().describe('Working directory.'),
    restart: z
      .object({
        initialDelayMs: z
          .number()
          .int()
          .positive()
          .default(500)
          .describe('First restart delay after the process dies.'),
        maxDelayMs: z.number().int().positive().default(30_000).describe('Backoff ceiling.'),
        failedAfter: z
          .number()
          .int()
          .positive()
          .default(3)
          .describe(
            'Consecutive failed starts after which the server counts as failed for /readyz (restarts go on).',
          ),
      })
      .strict()
      .prefault({}),
    shutdownGraceMs: z
      .number()
      .int()
      .positive()
      .default(2_000)
      .describe('Wait after closing stdin, and again after SIGTERM, before escalating.'),
    ...stdioPoolFields,
  })
  .strict();

const httpServer = (transport: 'streamable-http' | 'sse') =>
  z
    .object({
      ...common,
      transport: z.literal(transport),
      url: z
        .url({ protocol: /^https?$/ })
        .optional()
        .describe(
          transport === 'sse'
            ? 'The legacy SSE endpoint (GET) of a 2024-11-05 server (one replica).'
            : 'The MCP endpoint (one replica). Give either `url` or `replicas`.',
        ),
      replicas: z
        .array(replicaEntry)
        .min(1)
        .max(64)
        .optional()
        .describe('Several replicas of the server, as URLs or `{url, weight}`; instead of `url`.'),
      headers: z
        .record(z.string(), z.string())
        .default({})
        .describe('Headers sent to this backend (for example an API key). Values may use ${VAR}.'),
    })
    .strict()
    .superRefine((s, ctx) => {
      if ((s.url === undefined) === (s.replicas === undefined))
        ctx.addIssue({
          code: 'custom',
          path: ['url'],
          message: 'give either "url" (one replica) or "replicas"',
        });
    });

export const serverSchema = z.discriminatedUnion('transport', [
  stdioServer,
  httpServer('streamable-http'),
  httpServer('sse'),
]);

const pluginSchema = z
  .object({
    module: z
      .string()
      .min(1)
      .describe('A local module path (relative to the config file) or an npm package name.'),
    options: z.record(z.string(), z.unknown()).default({}).describe('Passed to the plugin factory.'),
  })
  .strict();

export const configSchema = z
  .object({
    role: z
      .enum(['single'])
      .default('single')
      .describe('What this process runs. `single`: edge and core in one process.'),
    region: z
      .string()
      .regex(/^[a-z0-9-]{1,32}$/)
      .default('local')
      .describe('Region this node belongs to.'),
    listen: z
      .object({
        host: z.string().default('127.0.0.1').describe('Address to listen on.'),
        port: z.number().int().min(0).max(65535).default(8080).describe('Port (0 picks a free one).'),
      })
      .strict()
      .prefault({}),
    auth: z
      .discriminatedUnion('mode', [
        z
          .object({ mode: z.literal('none') })
          .strict()
          .describe('No authentication: accepted only when listening on loopback.'),
      ])
      .default({ mode: 'none' })
      .describe('Client authentication.'),
    http: z
      .object({
        maxBodyBytes: z
          .number()
          .int()
          .positive()
          .default(4 * 1024 * 1024)
          .describe('Largest accepted POST body (413 beyond).'),
        allowedOrigins: z
          .array(z.string())
          .default([])
          .describe(
            'Origins allowed besides loopback ones (exact match, e.g. https://app.example.com). Requests with another Origin get 403.',
          ),
        allowedHosts: z
          .array(z.string())
          .default([])
          .describe(
            'Host header values allowed besides loopback names (DNS-rebinding protection). Requests with another Host get 403.',
          ),
      })
      .strict()
      .prefault({}),
    sessions: z
      .object({
        store: z
          .enum(['memory', 'redis'])
          .default('memory')
          .describe(
            'Where sessions and SSE event logs live: `memory` (one node) or `redis` (shared by every replica, so that any replica continues any session; needs `redis.url`).',
          ),
        idleTimeoutMs: z
          .number()
          .int()
          .positive()
          .default(30 * 60_000)
          .describe('A client session idle this long is ended and its backend sessions closed.'),
        sseRetryMs: z
          .number()
          .int()
          .min(0)
          .default(1000)
          .describe(
            'The `retry` hint sent with the priming event of each SSE stream (2025-11-25): how long a client waits before resuming a dropped stream.',
          ),
        eventRetention: z
          .object({
            maxEventsPerStream: z
              .number()
              .int()
              .positive()
              .default(1000)
              .describe('SSE events kept per stream for replay; older ones can no longer be resumed.'),
            maxAgeMs: z
              .number()
              .int()
              .positive()
              .default(15 * 60_000)
              .describe('SSE events older than this can no longer be replayed.'),
          })
          .strict()
          .prefault({})
          .describe('How much of each SSE stream is kept so that a client can resume it with Last-Event-ID.'),
      })
      .strict()
      .prefault({}),
    redis: z
      .object({
        url: z
          .string()
          .regex(/^rediss?:\/\//, 'must be a redis:// or rediss:// URL')
          .describe('Redis to share state between replicas, e.g. redis://127.0.0.1:6379/0.'),
        keyPrefix: z
          .string()
          .regex(/^[A-Za-z0-9_.-]{1,64}$/, 'letters, digits, _ . - only')
          .default('mcpgw')
          .describe('Prefix of every key the gateway writes (one per deployment sharing a Redis).'),
      })
      .strict()
      .optional()
      .describe('The Redis the cluster features use (sessions today; quotas and breakers later).'),
    aggregate: z
      .object({
        separator: z.literal('__').default('__').describe('Between server and tool/prompt names on /mcp.'),
        pageSize: z
          .number()
          .int()
          .min(1)
          .max(10_000)
          .default(100)
          .describe('Items per page of merged lists on /mcp.'),
      })
      .strict()
      .prefault({}),
    log: z
      .object({
        level: z
          .enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'])
          .default('info')
          .describe('Log level (pino, JSON on stdout).'),
      })
      .strict()
      .prefault({}),
    plugins: z.array(pluginSchema).default([]).describe('Pipeline plugins, run in this order.'),
    pools: poolsSchema.describe(
      'Backend pools: shared breaker state and response cache (see docs/pools.md).',
    ),
    // Runtime form: every HTTP server gets `url` (its first replica) and `replicas` as {url, weight}.
    servers: z.array(serverSchema.transform(normalizeServer)).default([]).describe('Backend MCP servers.'),
  })
  .strict()
  .superRefine((cfg, ctx) => {
    if (cfg.sessions.store === 'redis' && !cfg.redis)
      ctx.addIssue({
        code: 'custom',
        path: ['sessions', 'store'],
        message: 'sessions.store "redis" needs redis.url',
      });
    const seen = new Set<string>();
    cfg.servers.forEach((s, i) => {
      if (seen.has(s.name))
        ctx.addIssue({
          code: 'custom',
          path: ['servers', i, 'name'],
          message: `duplicate server name "${s.name}"`,
        });
      seen.add(s.name);
    });
    if (cfg.pools.sharedState === 'redis' && !cfg.redis)
      ctx.addIssue({
        code: 'custom',
        path: ['pools', 'sharedState'],
        message: 'pools.sharedState "redis" needs redis.url',
      });
  });

/** `url` and `replicas` compiled to one form; `url` stays the first replica for code that knows one. */
function normalizeServer(s: RawServerConfig): ServerConfig {
  if (s.transport === 'stdio') return s;
  const replicas = (s.replicas ?? [s.url!]).map((r) => (typeof r === 'string' ? { url: r, weight: 1 } : r));
  return { ...s, url: replicas[0]!.url, replicas };
}

type RawServerConfig = z.infer<typeof serverSchema>;
type RawHttpServerConfig = Exclude<RawServerConfig, { transport: 'stdio' }>;

export type GatewayConfig = z.infer<typeof configSchema>;
export type StdioServerConfig = Extract<RawServerConfig, { transport: 'stdio' }>;
export type ReplicaConfig = { url: string; weight: number };
export type HttpServerConfig = RawHttpServerConfig extends infer S
  ? S extends RawHttpServerConfig
    ? Omit<S, 'url' | 'replicas'> & { url: string; replicas: ReplicaConfig[] }
    : never
  : never;
export type ServerConfig = StdioServerConfig | HttpServerConfig;
export type PoolsConfig = z.infer<typeof poolsSchema>;
export type ToolPolicy = z.infer<typeof toolPolicy>;
