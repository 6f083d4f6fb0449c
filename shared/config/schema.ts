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

const regionId = z
  .string()
  .regex(/^[a-z0-9-]{1,32}$/, 'lowercase letters, digits and "-", at most 32 characters');

const common = {
  name: serverName,
  description: z.string().optional().describe('Free text for operators.'),
  enabled: z.boolean().default(true).describe('A disabled server is neither started nor listed.'),
  timeouts,
  // Federation (published with the server's registry entry; residency checks use them later).
  classification: z
    .enum(['public', 'internal', 'confidential', 'restricted'])
    .optional()
    .describe('Data classification of what this server handles, published to every region.'),
  residency: z
    .array(regionId)
    .optional()
    .describe("Regions where this server's data may be served; absent means no residency constraint."),
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
    federation: z
      .object({
        bus: z
          .enum(['memory', 'nats'])
          .default('memory')
          .describe(
            'Where the regional registries live: `memory` (in-process, one node) or `nats` (JetStream KV, one domain per region; needs `natsUrls`).',
          ),
        natsUrls: z
          .array(z.string().regex(/^(nats|tls):\/\/[^\s]+$/, 'must be a nats:// or tls:// URL'))
          .default([])
          .describe("NATS servers of this gateway's region, e.g. nats://127.0.0.1:4222."),
        region: regionId
          .optional()
          .describe(
            'Region this gateway publishes to (its JetStream domain); defaults to the top-level `region`.',
          ),
        regions: z
          .array(regionId)
          .default([])
          .describe(
            "Every region of the federation; each other region's registry is mirrored into this one.",
          ),
        gatewayId: z
          .string()
          .regex(/^[A-Za-z0-9_-]{1,64}$/, 'letters, digits, "-" and "_", at most 64 characters')
          .optional()
          .describe('Unique name of this gateway in the federation; defaults to host name and port.'),
        advertiseUrl: z
          .url({ protocol: /^https?$/ })
          .optional()
          .describe('Where other gateways reach this one; defaults to the listening URL.'),
        heartbeatMs: z
          .number()
          .int()
          .min(10)
          .default(500)
          .describe('How often this gateway heartbeats (and rechecks its servers for changes).'),
        downAfterMs: z
          .number()
          .int()
          .min(50)
          .default(2000)
          .describe(
            'A gateway silent this long is down; a region whose gateways are all down is down (its last known entries are kept).',
          ),
        antiEntropyMs: z
          .number()
          .int()
          .min(100)
          .default(30_000)
          .describe('How often every registry is re-read whole, repairing anything a watch missed.'),
      })
      .strict()
      .optional()
      .describe('Federation between gateways and regions (registry sync, heartbeats, region status).'),
  })
  .strict()
  .superRefine((cfg, ctx) => {
    if (cfg.sessions.store === 'redis' && !cfg.redis)
      ctx.addIssue({
        code: 'custom',
        path: ['sessions', 'store'],
        message: 'sessions.store "redis" needs redis.url',
      });
    if (cfg.federation) {
      const f = cfg.federation;
      if (f.bus === 'nats' && f.natsUrls.length === 0)
        ctx.addIssue({
          code: 'custom',
          path: ['federation', 'natsUrls'],
          message: 'federation.bus "nats" needs natsUrls',
        });
      if (f.heartbeatMs >= f.downAfterMs)
        ctx.addIssue({
          code: 'custom',
          path: ['federation', 'downAfterMs'],
          message: 'downAfterMs must be longer than heartbeatMs (a few heartbeats)',
        });
    }
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
export type ServerConfig = z.infer<typeof serverSchema>;
export type StdioServerConfig = Extract<ServerConfig, { transport: 'stdio' }>;
export type HttpServerConfig = Exclude<ServerConfig, { transport: 'stdio' }>;
