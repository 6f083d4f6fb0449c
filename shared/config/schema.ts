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

const common = {
  name: serverName,
  description: z.string().optional().describe('Free text for operators.'),
  enabled: z.boolean().default(true).describe('A disabled server is neither started nor listed.'),
  timeouts,
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
  })
  .strict();

const httpServer = (transport: 'streamable-http' | 'sse') =>
  z
    .object({
      ...common,
      transport: z.literal(transport),
      url: z
        .url({ protocol: /^https?$/ })
        .describe(
          transport === 'sse' ? 'The legacy SSE endpoint (GET) of a 2024-11-05 server.' : 'The MCP endpoint.',
        ),
      headers: z
        .record(z.string(), z.string())
        .default({})
        .describe('Headers sent to this backend (for example an API key). Values may use ${VAR}.'),
    })
    .strict();

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

// ---------------------------------------------------------------- quotas and admission control (issue 5)

const storeFailure = z
  .enum(['open', 'closed', 'local'])
  .describe(
    'While the quota store (Redis) is unreachable: `open` admits without counting, `closed` refuses (503 GW_QUOTA_UNAVAILABLE), `local` counts in this process with the limit divided by `quotas.expectedReplicas`.',
  );

const rateLimit = (what: string, limit: number, windowMs: number) =>
  z
    .object({
      limit: z.number().int().positive().default(limit).describe(`Requests per window (${what}).`),
      windowMs: z.number().int().positive().default(windowMs).describe('The window, in milliseconds.'),
      burst: z
        .number()
        .int()
        .positive()
        .optional()
        .describe(
          'How many may be spent at once (GCRA capacity); default: the whole limit. After a burst, requests are admitted at limit/window.',
        ),
      onStoreFailure: storeFailure.optional().describe('Overrides quotas.onStoreFailure for this dimension.'),
    })
    .strict();

/** A dimension: its limits, or `false` to switch it off. */
const dimension = (what: string, limit: number, windowMs: number) =>
  z.union([rateLimit(what, limit, windowMs), z.literal(false).describe('`false`: this dimension is off.')]);

const overrideLimit = z
  .object({
    limit: z.number().int().positive().describe('Requests per window.'),
    windowMs: z.number().int().positive().describe('The window, in milliseconds.'),
    burst: z.number().int().positive().optional().describe('Spent at once (default: the limit).'),
    onStoreFailure: storeFailure.optional(),
  })
  .strict();

const quotasSchema = z
  .object({
    enabled: z
      .boolean()
      .default(false)
      .describe(
        'Quotas and admission control. Off by default (with `auth.mode: none` every caller is the one anonymous user); when on, every dimension not configured gets the reference defaults shown here.',
      ),
    store: z
      .enum(['memory', 'redis'])
      .default('memory')
      .describe(
        'Where counters live: `memory` (this process) or `redis` (exact across replicas; needs redis.url).',
      ),
    redisTimeoutMs: z
      .number()
      .int()
      .positive()
      .default(100)
      .describe('A quota decision waiting longer than this on Redis counts as a store failure.'),
    expectedReplicas: z
      .number()
      .int()
      .positive()
      .default(1)
      .describe('Replicas sharing the limits; the `local` fallback divides each limit by it.'),
    onStoreFailure: storeFailure.default('local'),
    user: dimension('per user, all tools', 1000, 3_600_000)
      .prefault({})
      .describe('Per user (tenant + subject), counted on every POST before the body is read.'),
    clientApp: dimension('per client application', 10_000, 3_600_000)
      .prefault({})
      .describe('Per client application (OAuth client id, API key id), when the caller has one.'),
    tenant: z
      .union([overrideLimit, z.literal(false).describe('`false` (the default): no tenant-wide limit.')])
      .default(false)
      .describe('Per tenant, all its users together (off unless set here or under quotas.tenants).'),
    tool: dimension('per user and tool', 100, 60_000)
      .prefault({})
      .describe('Per user and tool: tools/call to one tool by one user.'),
    server: dimension('per backend server, all users', 5000, 60_000)
      .prefault({})
      .describe('Per backend server, all users together: every request routed to it.'),
    global: dimension('the whole gateway', 100_000, 60_000)
      .prefault({})
      .describe('Everything the gateway admits; refusals are 503 for everyone.'),
    concurrency: z
      .object({
        perUser: z
          .union([
            z
              .number()
              .int()
              .positive()
              .describe('POST requests one user may have in flight at once, across replicas (default 20).'),
            z.literal(false).describe('`false`: no concurrency limit.'),
          ])
          .default(20),
        mode: z
          .enum(['reject', 'queue'])
          .default('reject')
          .describe(
            'Beyond perUser: `reject` (429 GW_QUOTA_CONCURRENCY) or `queue` (wait up to queueTimeoutMs).',
          ),
        queueTimeoutMs: z
          .number()
          .int()
          .positive()
          .default(10_000)
          .describe('How long a queued request waits for a slot before GW_QUEUE_TIMEOUT.'),
        leaseMs: z
          .number()
          .int()
          .min(1000)
          .default(30_000)
          .describe(
            'A slot whose gateway died is freed after this long (live gateways renew their slots every leaseMs/3).',
          ),
        onStoreFailure: storeFailure.optional(),
      })
      .strict()
      .prefault({}),
    tenants: z
      .record(
        z.string().min(1),
        z
          .object({
            user: overrideLimit.optional().describe("This tenant's per-user limit."),
            clientApp: overrideLimit.optional(),
            tenant: overrideLimit.optional().describe('All users of this tenant together.'),
            tool: overrideLimit.optional(),
            concurrencyPerUser: z.number().int().positive().optional(),
          })
          .strict(),
      )
      .default({})
      .describe('Per-tenant overrides (keyed by tenant name).'),
    servers: z
      .record(
        z.string().min(1),
        z
          .object({
            server: overrideLimit.optional().describe('This server, all users together.'),
            tool: overrideLimit.optional().describe('Per user and tool, for every tool of this server.'),
            tools: z
              .record(z.string().min(1), overrideLimit)
              .default({})
              .describe('Per user, for the named tools (backend names) of this server.'),
          })
          .strict(),
      )
      .default({})
      .describe('Per-server and per-tool overrides (keyed by server name).'),
    admission: z
      .object({
        connectionsPerIp: z
          .union([
            z
              .number()
              .int()
              .positive()
              .describe(
                'Open TCP connections one source address may hold; beyond, 429 before the request is read (default 1000).',
              ),
            z.literal(false).describe('`false`: no per-address limit.'),
          ])
          .default(1000),
        backend: z
          .object({
            maxConcurrent: z
              .number()
              .int()
              .positive()
              .default(64)
              .describe(
                'Requests in flight to one backend server from this replica; more wait in its queue.',
              ),
            maxQueue: z
              .number()
              .int()
              .min(0)
              .default(1000)
              .describe('Requests waiting per backend server; beyond, GW_QUEUE_FULL at once.'),
            queueTimeoutMs: z
              .number()
              .int()
              .positive()
              .default(30_000)
              .describe('How long a request waits in the queue before GW_QUEUE_TIMEOUT.'),
            priorities: z
              .array(
                z
                  .object({
                    name: z.string().min(1).describe('Class name (for logs and stats).'),
                    roles: z.array(z.string()).default([]).describe('Callers with any of these roles.'),
                    tenants: z.array(z.string()).default([]).describe('Callers of any of these tenants.'),
                  })
                  .strict(),
              )
              .default([])
              .describe(
                'Priority classes, highest first; a caller matching none is in the lowest class, `default`. Within a class users take turns (deficit round robin).',
              ),
          })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
  })
  .strict()
  .prefault({})
  .describe('Quotas and traffic management (docs/quotas.md).');

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
    servers: z.array(serverSchema).default([]).describe('Backend MCP servers.'),
    quotas: quotasSchema,
  })
  .strict()
  .superRefine((cfg, ctx) => {
    if (cfg.sessions.store === 'redis' && !cfg.redis)
      ctx.addIssue({
        code: 'custom',
        path: ['sessions', 'store'],
        message: 'sessions.store "redis" needs redis.url',
      });
    if (cfg.quotas.enabled && cfg.quotas.store === 'redis' && !cfg.redis)
      ctx.addIssue({
        code: 'custom',
        path: ['quotas', 'store'],
        message: 'quotas.store "redis" needs redis.url',
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
  });

export type GatewayConfig = z.infer<typeof configSchema>;
export type QuotasConfig = z.infer<typeof quotasSchema>;
export type ServerConfig = z.infer<typeof serverSchema>;
export type StdioServerConfig = Extract<ServerConfig, { transport: 'stdio' }>;
export type HttpServerConfig = Exclude<ServerConfig, { transport: 'stdio' }>;
