/**
 * The one configuration schema (zod). Human-friendly YAML/JSON is validated here once at start-up, every
 * problem reported together with its path, then frozen. `docs/configuration.md` is generated from it.
 */
import { isIP } from 'node:net';
import { z } from 'zod';
import { restServerFields } from './rest-schema.js';
import { governanceSchema, serverGovernanceFields, toolGovernanceSchema } from './governance-schema.js';
import { serverId, VERSION_PATTERN } from '../mcp/server-versions.js';
import { virtualServerRefs, virtualServerSchema } from './virtual-schema.js';
import {
  authSchema,
  httpSecurityKeys,
  piiSchema,
  policySchema,
  validationSchema,
} from './security-schema.js';

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
    // Lifecycle, risk, compliance tags and classification of the tool (docs/governance.md).
    ...toolGovernanceSchema.shape,
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
  version: z
    .string()
    .regex(VERSION_PATTERN, 'letters, digits and inner "-", at most 16 characters (e.g. v2, 2024-06)')
    .optional()
    .describe(
      'A version of the server `name` (docs/registry.md): several versions run at once, each as the server `{name}-{version}` (its tools `payments-v2__charge`, `/servers/payments-v2/mcp`); the default version is also served under the plain `name`.',
    ),
  defaultVersion: z
    .boolean()
    .optional()
    .describe(
      'Serve this version under the plain `name`. Unmarked: an unversioned server of that name, else the highest version (`v10` > `v9`).',
    ),
  identity: z
    .enum(['none', 'headers', 'delegation'])
    .default('none')
    .describe(
      'How the core tells this HTTP backend who is calling: `none`; `headers` (X-MCPGW-User/Tenant/Roles plus an HMAC signature in X-MCPGW-Signature, key `backendIdentity.hmacKeyFile`); `delegation` (a short-lived JWT with aud = this server name in Authorization, signed with `backendIdentity.delegationKey`). Ignored for stdio servers.',
    ),
  description: z.string().optional().describe('Free text for operators.'),
  enabled: z.boolean().default(true).describe('A disabled server is neither started nor listed.'),
  timeouts,
  ...serverGovernanceFields,
  classification: z
    .enum(['Public', 'Internal', 'Confidential', 'Restricted'])
    .default('Internal')
    .describe(
      'Data classification of what this server handles; recorded with every audit record, and `audit.refuseOnFailure` names the classes whose calls are refused while the audit sink fails.',
    ),
  tenant: z
    .string()
    .regex(/^[A-Za-z0-9_.-]{1,64}$/)
    .optional()
    .describe(
      'The tenant this server belongs to: only callers of that tenant see or reach it. Absent: shared by every tenant.',
    ),
  residency: z
    .array(regionId)
    .optional()
    .describe("Regions where this server's data may be served; absent means no residency constraint."),
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
    protocol: z
      .enum(['2025', '2026'])
      .default('2025')
      .describe(
        'Protocol era of this process: `2025` (initialize) or `2026` (2026-07-28: server/discover and an envelope on each request). No `auto`: it would probe at every spawn.',
      ),
    ...stdioPoolFields,
  })
  .strict();

/** Protocol eras of a backend (docs/adr/0004-protocol-eras.md). */
const httpProtocol = z
  .enum(['auto', '2025', '2026'])
  .default('auto')
  .describe(
    'Protocol era of this server: `2026` (2026-07-28, stateless: server/discover, one POST per request), `2025` (initialize and a backend session per client session), or `auto` (probe with server/discover at start, as the SDK v2 client does, and probe again when calls start failing as if the server changed era).',
  );

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
      ...(transport === 'streamable-http' ? { protocol: httpProtocol } : {}),
    })
    .strict()
    .superRefine((s, ctx) => {
      // Both may appear only in the runtime form (url = the first replica), as the registry stores it.
      const first = s.replicas?.[0];
      const firstUrl = typeof first === 'string' ? first : first?.url;
      if (s.url === undefined ? s.replicas === undefined : s.replicas !== undefined && s.url !== firstUrl)
        ctx.addIssue({
          code: 'custom',
          path: ['url'],
          message: 'give either "url" (one replica) or "replicas"',
        });
    });

/** A REST API served as MCP tools (shared/config/rest-schema.ts, docs/rest-tools.md). */
const restServer = z
  .object({ ...common, transport: z.literal('http'), ...restServerFields })
  .strict()
  .superRefine((s, ctx) => {
    if (s.endpoints.length === 0 && !s.openapi)
      ctx.addIssue({ code: 'custom', path: ['endpoints'], message: 'declare "endpoints" or give "openapi"' });
    if (s.auth?.kind === 'token-exchange' && s.identity !== 'delegation')
      ctx.addIssue({
        code: 'custom',
        path: ['identity'],
        message: 'auth "token-exchange" exchanges the delegation token: set identity "delegation"',
      });
  });

export const serverSchema = z.discriminatedUnion('transport', [
  stdioServer,
  httpServer('streamable-http'),
  httpServer('sse'),
  restServer,
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

// ---------------------------------------------------------------- observability (issue 9)

const ipList = (what: string) =>
  z
    .array(
      z.string().refine(
        (v) => {
          const [addr = '', bits, extra] = v.split('/');
          const family = isIP(addr);
          if (family === 0 || extra !== undefined) return false;
          return bits === undefined || (/^\d+$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128));
        },
        { message: 'an IP address or a CIDR range, e.g. 10.0.0.0/8 or fd00::/8' },
      ),
    )
    .default([])
    .describe(what);

const observabilityKeys = {
  telemetry: z
    .object({
      tracing: z
        .object({
          enabled: z.boolean().default(false).describe('Make OpenTelemetry spans for every request stage.'),
          exporter: z
            .enum(['otlp', 'none'])
            .default('otlp')
            .describe(
              '`otlp`: send spans over OTLP/HTTP to `endpoint`; `none`: make spans (trace ids in logs, `traceparent` to backends) but export nothing.',
            ),
          endpoint: z
            .url({ protocol: /^https?$/ })
            .default('http://127.0.0.1:4318/v1/traces')
            .describe('OTLP/HTTP traces endpoint of the collector.'),
          sampleRatio: z
            .number()
            .min(0)
            .max(1)
            .default(0.01)
            .describe(
              "Share of new traces sampled, decided once at the request's root (parent-based: a sampled incoming `traceparent` is always followed, an unsampled one never). A request not sampled makes no span at all. The default, 1 %, keeps tracing within its cost budget (docs/observability.md); 1 records every request.",
            ),
          serviceName: z.string().min(1).default('mcpgw').describe('`service.name` of the spans.'),
          exportThread: z
            .enum(['main', 'worker'])
            .default('main')
            .describe(
              '`main`: spans are turned into OTLP and sent on the event loop; `worker`: in a worker thread (less work on the event loop, a little more CPU in all: for hosts with a core to spare).',
            ),
        })
        .strict()
        .prefault({}),
      metrics: z
        .object({
          enabled: z.boolean().default(true).describe('Serve Prometheus metrics.'),
          path: z
            .string()
            .regex(/^\/[A-Za-z0-9/_-]*$/, 'an absolute path')
            .refine(
              (p) =>
                !['/', '/mcp', '/sse', '/message', '/healthz', '/readyz', '/dashboard'].includes(p) &&
                !/^\/(servers|admin)(\/|$)/.test(p),
              'collides with a gateway route (/mcp, /sse, /message, /servers/..., /admin/..., /healthz, /readyz, /dashboard)',
            )
            .default('/metrics')
            .describe('Path of the metrics endpoint, on the main port.'),
          bearerToken: z
            .string()
            .min(16)
            .optional()
            .describe('When set, scrapes must send `Authorization: Bearer <token>` (401 otherwise).'),
          maxToolLabels: z
            .number()
            .int()
            .positive()
            .default(50)
            .describe('Distinct tool names kept as the `tool` label; the rest are counted as `other`.'),
          maxTenantLabels: z
            .number()
            .int()
            .positive()
            .default(50)
            .describe('Distinct tenants kept as the `tenant` label; the rest are counted as `other`.'),
        })
        .strict()
        .prefault({}),
      usage: z
        .object({
          windowMinutes: z
            .number()
            .int()
            .min(1)
            .max(1440)
            .default(60)
            .describe('Minutes of per-process usage analytics kept in memory (`/admin/usage`).'),
          maxKeys: z
            .number()
            .int()
            .positive()
            .default(1000)
            .describe(
              'Distinct servers, tenants, users or tools kept per minute; the rest count as `other`.',
            ),
        })
        .strict()
        .prefault({}),
    })
    .strict()
    .prefault({})
    .describe('Tracing, metrics and usage analytics (see docs/observability.md).'),
  admin: z
    .object({
      token: z
        .string()
        .min(16)
        .optional()
        .describe(
          'Bearer token of `/admin/*` and `/dashboard` data. Without it, those answer loopback clients only.',
        ),
    })
    .strict()
    .prefault({})
    .describe('The admin API and the dashboard.'),
  security: z
    .object({
      allowIps: ipList(
        'When not empty, only these source addresses or CIDR ranges may connect (403 GW_SOURCE_DENIED otherwise).',
      ),
      denyIps: ipList(
        'Source addresses or CIDR ranges refused with 403 GW_SOURCE_DENIED (wins over allowIps).',
      ),
      authFailures: z
        .object({
          threshold: z
            .number()
            .int()
            .positive()
            .default(10)
            .describe('Failed authentications from one source within `windowMs` that raise an alert.'),
          windowMs: z
            .number()
            .int()
            .positive()
            .default(60_000)
            .describe('Window the failures are counted in.'),
          blockMs: z
            .number()
            .int()
            .min(0)
            .default(300_000)
            .describe('How long an alerted source is refused with 429 GW_SOURCE_BLOCKED (0: alert only).'),
        })
        .strict()
        .prefault({}),
    })
    .strict()
    .prefault({})
    .describe('Source-address security at the edge.'),
};

// ---------------------------------------------------------------- tiers: roles, TLS, identity between tiers

const pemFile = (what: string) => z.string().min(1).describe(what);

const listenTls = z
  .object({
    cert: pemFile('Certificate chain file (PEM).'),
    key: pemFile('Private key file (PEM).'),
    ca: pemFile('Extra CA certificates sent with the chain (PEM).').optional(),
    minVersion: z
      .enum(['TLSv1.2', 'TLSv1.3'])
      .default('TLSv1.2')
      .describe('Oldest TLS version accepted (TLS 1.3 is preferred whenever the peer has it).'),
    clientCa: pemFile(
      'mTLS: CA certificates (PEM) that client certificates must chain to. Set, clients without a valid certificate are refused at the handshake.',
    ).optional(),
    requestCert: z
      .boolean()
      .optional()
      .describe(
        'Ask for a client certificate (default: true when clientCa is set). The verified certificate is on request.raw.socket.getPeerCertificate().',
      ),
  })
  .strict();

const coreTls = z
  .object({
    ca: pemFile('CA certificates (PEM) the core certificate must chain to.').optional(),
    cert: pemFile('mTLS: the edge client certificate (PEM).').optional(),
    key: pemFile('mTLS: the edge client private key (PEM).').optional(),
    serverName: z.string().optional().describe('TLS server name to verify (default: the URL host).'),
  })
  .strict();

const coreTarget = z
  .object({
    region: z
      .string()
      .regex(/^[a-z0-9-]{1,32}$/)
      .describe('Region of this core.'),
    url: z
      .url({ protocol: /^https?$/ })
      .describe('Base URL of the core internal listener, e.g. https://core-eu-1:9443.'),
    id: z
      .string()
      .regex(/^[A-Za-z0-9_.:-]{1,64}$/)
      .optional()
      .describe('The core id the internal token is addressed to (its `aud`); default: the region.'),
    tls: coreTls.optional().describe('TLS toward this core; files are reloaded when they change.'),
  })
  .strict();

const tierKeys = {
  cores: z
    .array(coreTarget)
    .default([])
    .describe(
      'role edge: the cores this edge forwards to. A session is pinned to one core of its region by a hash of its id (the same on every edge), so any edge reaches the core side of any session.',
    ),
  internal: z
    .object({
      id: z
        .string()
        .regex(/^[A-Za-z0-9_.:-]{1,64}$/)
        .optional()
        .describe(
          'This node in internal tokens: the `iss` an edge signs as, the `aud` a core accepts. Default: `edge-{region}` / the region.',
        ),
      signingKey: pemFile(
        'role edge: private key file (PKCS#8 PEM or JWK, EdDSA or ES256) signing internal tokens. Rewriting the file switches keys without a restart.',
      ).optional(),
      signingKid: z
        .string()
        .optional()
        .describe('The `kid` of the signing key (default: the JWK `kid`, else its RFC 7638 thumbprint).'),
      trustedKeys: z
        .array(z.string().min(1))
        .default([])
        .describe(
          'role core: public key files (SPKI PEM, JWK or JWKS) of the edges it trusts; reloaded on change, so old and new keys overlap during rotation.',
        ),
      jwksUrl: z
        .url({ protocol: /^https?$/ })
        .optional()
        .describe('role core: a JWKS URL of trusted edge keys (refetched every 60 s and on an unknown kid).'),
      tokenTtlSeconds: z
        .number()
        .int()
        .min(5)
        .max(60)
        .default(60)
        .describe('Lifetime of an internal token; an edge reuses one per principal for half of it.'),
      insecureNoTrustOnLoopback: z
        .boolean()
        .default(false)
        .describe(
          'TEST MODE ONLY: a core on loopback accepts requests without any internal token. Refused off loopback.',
        ),
    })
    .strict()
    .prefault({})
    .describe('The signed identity between tiers (edge -> core).'),
  backendIdentity: z
    .object({
      hmacKeyFile: pemFile('Secret (file, at least 32 bytes) for `identity: headers` signatures.').optional(),
      delegationKey: pemFile(
        'Private key file (PKCS#8 PEM or JWK, EdDSA or ES256) signing `identity: delegation` tokens.',
      ).optional(),
      ttlSeconds: z.number().int().min(5).max(300).default(60).describe('Lifetime of a delegation token.'),
    })
    .strict()
    .prefault({})
    .describe('Keys the core uses to tell backends who is calling (see servers[].identity).'),
};

type TierView = {
  role: string;
  federation?: { discoverCores: boolean } | undefined;
  listen: { host: string; tls?: { clientCa?: string; requestCert?: boolean } | undefined };
  cores: { region: string; id?: string | undefined }[];
  internal: { signingKey?: string | undefined; trustedKeys: string[]; jwksUrl?: string | undefined };
  backendIdentity: { hmacKeyFile?: string | undefined; delegationKey?: string | undefined };
  servers: { transport: string; identity: string }[];
};

function checkTiers(cfg: TierView, ctx: z.RefinementCtx): void {
  const issue = (path: (string | number)[], message: string) =>
    ctx.addIssue({ code: 'custom', path, message });
  if (cfg.role === 'edge') {
    if (cfg.cores.length === 0 && !cfg.federation?.discoverCores)
      issue(
        ['cores'],
        'role edge needs at least one core (cores: [{ region, url }], or federation to discover them)',
      );
    if (!cfg.internal.signingKey)
      issue(['internal', 'signingKey'], 'role edge needs internal.signingKey to sign internal tokens');
    if (cfg.servers.length > 0) issue(['servers'], 'role edge has no backends: servers belong to the core');
    const ids = new Set<string>();
    cfg.cores.forEach((c, i) => {
      const id = c.id ?? c.region;
      if (ids.has(id)) issue(['cores', i, 'id'], `two cores share the id "${id}": give each its own id`);
      ids.add(id);
    });
  } else if (cfg.cores.length > 0) issue(['cores'], `cores are for role edge, not role ${cfg.role}`);
  if (cfg.role !== 'core' && cfg.internal.trustedKeys.length > 0)
    issue(['internal', 'trustedKeys'], 'trustedKeys are for role core');
  cfg.servers.forEach((s, i) => {
    if (s.identity === 'headers' && !cfg.backendIdentity.hmacKeyFile)
      issue(['servers', i, 'identity'], 'identity "headers" needs backendIdentity.hmacKeyFile');
    if (s.identity === 'delegation' && !cfg.backendIdentity.delegationKey)
      issue(['servers', i, 'identity'], 'identity "delegation" needs backendIdentity.delegationKey');
    if (s.identity !== 'none' && s.transport === 'stdio')
      issue(
        ['servers', i, 'identity'],
        'identity is for HTTP servers (a stdio process is shared by every caller)',
      );
  });
  if (cfg.listen.tls?.requestCert === false && cfg.listen.tls.clientCa)
    issue(
      ['listen', 'tls', 'requestCert'],
      'clientCa without requestCert would never check a client certificate',
    );
}

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
        'Where counters live: `memory` (this process) or `redis` (exact across replicas; needs redis.url or quotas.redisCluster).',
      ),
    redisCluster: z
      .array(z.string().regex(/^rediss?:\/\//, 'must be a redis:// or rediss:// URL'))
      .min(1)
      .optional()
      .describe(
        'Seed nodes of a Redis Cluster for the quota counters (used instead of redis.url by quotas only; the client discovers the other nodes). Keys are grouped by hash slot, one script per slot (docs/quotas.md).',
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
    server: dimension('per replica of a backend server, all users', 5000, 60_000)
      .prefault({})
      .describe(
        'Per replica of a backend server, all users together: every request sent to it. A spent replica hands the call to another replica; GW_QUOTA_SERVER only when none can serve.',
      ),
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

/** The parts of `quotas` that are limits: what the control plane may set (federation.controlPlane.quotas). */
export const QUOTA_LIMIT_KEYS = [
  'user',
  'clientApp',
  'tenant',
  'tool',
  'server',
  'global',
  'tenants',
  'servers',
] as const;

/**
 * A quota-limits document of the control plane: any of QUOTA_LIMIT_KEYS, as in the config file's
 * `quotas`, nothing else. Parse with `parseQuotaLimits`: the result holds only the keys the input names.
 */
export const quotaLimitsSchema = quotasSchema
  .unwrap()
  .pick(Object.fromEntries(QUOTA_LIMIT_KEYS.map((k) => [k, true])) as Record<QuotaLimitKey, true>)
  .strict();

export type QuotaLimitKey = (typeof QUOTA_LIMIT_KEYS)[number];
export type QuotaLimits = Partial<Pick<QuotasConfig, QuotaLimitKey>>;

/** Checks a quota-limits document; the result keeps the keys it names only (the others stay the file's). */
export function parseQuotaLimits(
  input: unknown,
): { ok: true; limits: QuotaLimits } | { ok: false; problem: string; field: string } {
  const r = quotaLimitsSchema.safeParse(input);
  if (!r.success) {
    const i = r.error.issues[0]!;
    const keys = (i as { keys?: string[] }).keys;
    const field = [...i.path.map(String), ...(keys ?? [])].join('.') || 'body';
    return { ok: false, problem: `${field}: ${i.message}`, field };
  }
  const named = new Set(Object.keys(input as object));
  const limits = Object.fromEntries(Object.entries(r.data).filter(([k]) => named.has(k))) as QuotaLimits;
  return { ok: true, limits };
}

export const configSchema = z
  .object({
    role: z
      .enum(['single', 'edge', 'core'])
      .default('single')
      .describe(
        'What this process runs. `single`: edge and core in one process. `edge`: the client-facing tier (TLS, auth, sessions), forwarding to `cores`. `core`: the backends, reached by edges over the internal API with a signed internal token.',
      ),
    region: z
      .string()
      .regex(/^[a-z0-9-]{1,32}$/)
      .default('local')
      .describe('Region this node belongs to.'),
    listen: z
      .object({
        host: z.string().default('127.0.0.1').describe('Address to listen on.'),
        port: z.number().int().min(0).max(65535).default(8080).describe('Port (0 picks a free one).'),
        tls: listenTls.optional().describe('Serve HTTPS (files are reloaded when they change).'),
      })
      .strict()
      .prefault({}),
    ...tierKeys,
    auth: authSchema,
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
        ...httpSecurityKeys,
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
    lifecycle: z
      .object({
        drainDelayMs: z
          .number()
          .int()
          .min(0)
          .default(0)
          .describe(
            'After SIGTERM, how long the node goes on serving while not ready (/readyz 503), so that load balancers and edges move away, before it stops accepting. Above the readiness probe period times its failure threshold. `MCPGW_DRAIN_DELAY_MS` overrides it.',
          ),
        drainTimeoutMs: z
          .number()
          .int()
          .min(0)
          .default(20_000)
          .describe(
            'After it stops accepting, how long the node waits for requests in flight to finish before it closes anyway (the longest tool call you expect). Kubernetes: terminationGracePeriodSeconds above drainDelayMs + drainTimeoutMs.',
          ),
      })
      .strict()
      .prefault({})
      .describe('Graceful shutdown on SIGTERM (docs/runbooks/rolling-restart.md).'),
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
    mrtr: z
      .object({
        maxRounds: z
          .number()
          .int()
          .min(1)
          .max(100)
          .default(8)
          .describe(
            'Rounds of input a 2026 backend may ask of a 2025 client in one call (sampling, elicitation, roots) before the call fails with GW_TOO_MANY_INPUT_ROUNDS.',
          ),
        continuationTtlMs: z
          .number()
          .int()
          .positive()
          .default(600_000)
          .describe(
            'How long a 2026 client has to come back with its answers to an input_required round (a person may be answering) before the call is cancelled.',
          ),
      })
      .strict()
      .prefault({})
      .describe('Multi round-trip requests between protocol eras (docs/adr/0004-protocol-eras.md).'),
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
        listTtlMs: z
          .number()
          .int()
          .min(0)
          .default(0)
          .describe(
            'The `ttlMs` a 2025 server contributes to a merged list on /mcp answered to a 2026 client (2026 servers give their own; the list gets the least).',
          ),
        mergedListCacheItems: z
          .number()
          .int()
          .min(0)
          .default(200_000)
          .describe(
            'Merged tools and prompts kept between listings, in items across all sessions (least recently listed dropped first; 0 keeps none). A kept list is reused while no policy, registry, approval or backend catalog it was made from changed.',
          ),
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
    // ---- stores, vault and audit (registry branch)
    store: z
      .object({
        kind: z
          .enum(['embedded', 'postgres', 'memory'])
          .default('embedded')
          .describe(
            'Where the registry, the credential vault and the audit trail live: `embedded` (PGlite, Postgres in-process, no server needed), `postgres` (a server shared by every gateway; needs `store.url`), or `memory` (nothing kept; tests and throwaway nodes).',
          ),
        url: z
          .string()
          .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// or postgresql:// URL')
          .optional()
          .describe('Postgres connection URL for `kind: postgres`, e.g. postgres://mcpgw@db:5432/mcpgw.'),
        schema: z
          .string()
          .regex(
            /^[a-z_][a-z0-9_]{0,39}$/,
            'lowercase letters, digits and "_" (at most 40), not starting with a digit',
          )
          .default('mcpgw')
          .describe('Schema holding every table (one per deployment or tenant sharing a database).'),
        dataDir: z
          .string()
          .optional()
          .describe(
            'Data directory of the embedded store (relative to the config file); absent keeps it in memory, lost at exit.',
          ),
        poolSize: z.number().int().min(1).max(100).default(10).describe('Postgres connections per gateway.'),
      })
      .strict()
      .prefault({})
      .describe('The store of the registry, vault and audit trail.'),
    vault: z
      .object({
        keyFile: z
          .string()
          .optional()
          .describe(
            'File holding the vault key (base64 of 32 bytes), relative to the config file. The environment variable MCPGW_VAULT_KEY takes precedence.',
          ),
        previousKeyFiles: z
          .array(z.string())
          .default([])
          .describe(
            'Older keys still able to decrypt (during a rotation); MCPGW_VAULT_PREVIOUS_KEYS (comma-separated base64) adds more.',
          ),
        refreshBeforeMs: z
          .number()
          .int()
          .positive()
          .default(60_000)
          .describe('OAuth access tokens are refreshed this long before they expire.'),
      })
      .strict()
      .prefault({})
      .describe('The credential vault: upstream API keys and OAuth credentials, encrypted with AES-256-GCM.'),
    audit: z
      .object({
        enabled: z
          .boolean()
          .default(false)
          .describe('Write an audit record for every tools/call, prompts/get and resources/read.'),
        sink: z
          .enum(['memory', 'postgres'])
          .default('postgres')
          .describe(
            '`postgres`: the hash-chained table in the store (`store`); `memory`: this process only.',
          ),
        flushMs: z
          .number()
          .int()
          .min(1)
          .default(200)
          .describe('Buffered records are written at least this often.'),
        batchSize: z
          .number()
          .int()
          .min(1)
          .max(10_000)
          .default(500)
          .describe('A batch is written as soon as it has this many records.'),
        maxPending: z
          .number()
          .int()
          .min(1)
          .default(100_000)
          .describe('Records held while the sink fails; beyond this the oldest are dropped (and counted).'),
        refuseOnFailure: z
          .array(z.enum(['Public', 'Internal', 'Confidential', 'Restricted']))
          .default(['Restricted'])
          .describe(
            'Classifications whose calls are refused (GW_AUDIT_UNAVAILABLE) while the sink fails, rather than run unaudited.',
          ),
        retentionDays: z
          .number()
          .int()
          .positive()
          .optional()
          .describe(
            'Records older than this are pruned (a checkpoint keeps the chain verifiable); absent keeps them all.',
          ),
      })
      .strict()
      .prefault({})
      .describe('The audit trail (docs/audit.md).'),
    // ---- end of stores, vault and audit
    policy: policySchema,
    pii: piiSchema,
    validation: validationSchema,
    governance: governanceSchema,
    plugins: z.array(pluginSchema).default([]).describe('Pipeline plugins, run in this order.'),
    ...observabilityKeys,
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
        discoverCores: z
          .boolean()
          .default(true)
          .describe('role edge: learn cores (URL, region, health) from the bus, beside any static `cores`.'),
        coreTls: coreTls
          .optional()
          .describe('role edge: TLS toward cores learned from the bus (static `cores` carry their own).'),
        tenants: z
          .record(
            z.string().min(1).max(128),
            z
              .object({
                homeRegion: regionId
                  .optional()
                  .describe("The tenant's home region: its users are served by that region's cores."),
                allowedRegions: z
                  .array(regionId)
                  .optional()
                  .describe(
                    "Regions the tenant's data may go to (absent: any). A call is never routed elsewhere.",
                  ),
                nearerAllowed: z
                  .boolean()
                  .default(false)
                  .describe("Policy: serve the tenant from the edge's own region when it serves the scope."),
              })
              .strict(),
          )
          .default({})
          .describe(
            'Data residency and home region per tenant (the `regions` claim of a JWT, `auth.jwt.claims.regions`, narrows it further).',
          ),
        domain: serverName
          .optional()
          .describe(
            "role core: join the federation as a domain team's core under this namespace (e.g. `finance`): every edge serves its servers as the one scope `<domain>`, its tools as `<domain>__<server>__<tool>` on /mcp, and `/servers/<domain>/mcp` as this core's aggregate. Must not be the name of any region's server.",
          ),
        mergeRemote: z
          .boolean()
          .default(true)
          .describe(
            "role edge: `/mcp` also lists the tools and prompts only other regions' cores and domain cores serve (residency and `policy` applied), and routes their calls there.",
          ),
        drPartners: z
          .record(regionId, regionId)
          .default({})
          .describe(
            "DR pairing, active -> passive: `{ a: b }` has region b serve region a's servers (where b has them and residency allows) while a has no live core, under a lease fenced by KV revision; a's sessions never go to a third region.",
          ),
        drWitness: regionId
          .optional()
          .describe(
            "DR pairing with a witness: the region (its NATS JetStream, which both partners reach) that holds the DR leases and the active region's presences, so that a partition between two live regions never has both serve (docs/federation.md). Give every core the same one; a NATS topology where both partners reach it without each other (e.g. the witness as the leaf-node hub).",
          ),
        controlPlane: z
          .object({
            policies: z
              .boolean()
              .default(false)
              .describe(
                "Access policies come from the bus: a bus entry of a scope replaces that scope (the file's `policy` stays the baseline of `*` while the bus has none); the admin API's /policies and `mcpgw policies` write the bus.",
              ),
            quotas: z
              .boolean()
              .default(false)
              .describe(
                "Quota limits come from the bus: each limit the bus document names replaces the file's (`quotas.enabled`, the store and admission stay the file's); /admin/api/v1/quota-limits and `mcpgw quota-limits` write it.",
              ),
            bucket: z
              .string()
              .regex(/^[A-Za-z0-9_-]{1,64}$/, 'letters, digits, "-" and "_", at most 64 characters')
              .default('mcpgw-control')
              .describe(
                "The KV bucket of this region's control plane (shared by every gateway of the region).",
              ),
            region: z
              .string()
              .regex(/^[A-Za-z0-9_-]{1,64}$/, 'letters, digits, "-" and "_", at most 64 characters')
              .optional()
              .describe(
                "The region whose JetStream holds the control plane's bucket. Give every region's gateways the same one and a change written anywhere reaches every gateway of every region; absent: this region's own bucket (one control plane per region). While that region is unreachable, gateways elsewhere keep the values last applied and writes answer 503.",
              ),
          })
          .strict()
          .optional()
          .describe(
            'Policies and quota limits distributed through the bus, applied live by every gateway that opts in (docs/federation.md).',
          ),
      })
      .strict()
      .optional()
      .describe('Federation between gateways and regions (registry sync, heartbeats, region status).'),
    quotas: quotasSchema,
    pools: poolsSchema.describe(
      'Backend pools: shared breaker state and response cache (see docs/pools.md).',
    ),
    // Runtime form: every HTTP server gets `url` (its first replica) and `replicas` as {url, weight}.
    servers: z.array(serverSchema.transform(normalizeServer)).default([]).describe('Backend MCP servers.'),
    virtualServers: z
      .array(virtualServerSchema)
      .default([])
      .describe(
        'Named endpoints /v/{name}/mcp exposing chosen tools, prompts and resources of several servers, with aliases (docs/registry.md).',
      ),
  })
  .strict()
  .superRefine((cfg, ctx) => {
    if (cfg.sessions.store === 'redis' && !cfg.redis)
      ctx.addIssue({
        code: 'custom',
        path: ['sessions', 'store'],
        message: 'sessions.store "redis" needs redis.url',
      });
    if (cfg.quotas.enabled && cfg.quotas.store === 'redis' && !cfg.redis && !cfg.quotas.redisCluster)
      ctx.addIssue({
        code: 'custom',
        path: ['quotas', 'store'],
        message: 'quotas.store "redis" needs redis.url or quotas.redisCluster',
      });
    if (cfg.store.kind === 'postgres' && !cfg.store.url)
      ctx.addIssue({
        code: 'custom',
        path: ['store', 'url'],
        message: 'store.kind "postgres" needs store.url',
      });
    if (cfg.audit.enabled && cfg.audit.sink === 'postgres' && cfg.store.kind === 'memory')
      ctx.addIssue({
        code: 'custom',
        path: ['audit', 'sink'],
        message: 'audit.sink "postgres" needs store.kind embedded or postgres (not memory)',
      });
    if (cfg.auth.apiKeys?.store === 'redis' && !cfg.redis)
      ctx.addIssue({
        code: 'custom',
        path: ['auth', 'apiKeys', 'store'],
        message: 'auth.apiKeys.store "redis" needs redis.url',
      });
    if (cfg.federation) {
      const f = cfg.federation;
      if (f.bus === 'nats' && f.natsUrls.length === 0)
        ctx.addIssue({
          code: 'custom',
          path: ['federation', 'natsUrls'],
          message: 'federation.bus "nats" needs natsUrls',
        });
      if (f.domain !== undefined && cfg.role !== 'core')
        ctx.addIssue({
          code: 'custom',
          path: ['federation', 'domain'],
          message: "federation.domain is for role core (a domain team's core gateway)",
        });
      if (f.heartbeatMs >= f.downAfterMs)
        ctx.addIssue({
          code: 'custom',
          path: ['federation', 'downAfterMs'],
          message: 'downAfterMs must be longer than heartbeatMs (a few heartbeats)',
        });
      if (f.controlPlane?.quotas && !cfg.quotas.enabled)
        ctx.addIssue({
          code: 'custom',
          path: ['federation', 'controlPlane', 'quotas'],
          message:
            'federation.controlPlane.quotas needs quotas.enabled: true (the bus sets limits, not the store)',
        });
      const known = new Set([...f.regions, f.region ?? cfg.region]);
      for (const [active, passive] of Object.entries(f.drPartners)) {
        if (active === passive)
          ctx.addIssue({
            code: 'custom',
            path: ['federation', 'drPartners', active],
            message: `region "${active}" cannot be its own DR partner`,
          });
        for (const r of [active, passive])
          if (f.regions.length > 0 && !known.has(r))
            ctx.addIssue({
              code: 'custom',
              path: ['federation', 'drPartners', active],
              message: `region "${r}" is not in federation.regions (${[...known].join(', ')})`,
            });
      }
    }
    const seen = new Set<string>();
    checkTiers(cfg, ctx);
    const marked = new Set<string>();
    cfg.servers.forEach((s, i) => {
      const id = serverId(s);
      if (seen.has(id))
        ctx.addIssue({
          code: 'custom',
          path: ['servers', i, 'name'],
          message:
            s.version === undefined
              ? `duplicate server name "${id}"`
              : `duplicate server "${id}" (name "${s.name}", version "${s.version}")`,
        });
      seen.add(id);
      if (s.defaultVersion !== undefined && s.version === undefined)
        ctx.addIssue({
          code: 'custom',
          path: ['servers', i, 'defaultVersion'],
          message: 'defaultVersion needs a version',
        });
      if (s.defaultVersion === true && marked.has(s.name))
        ctx.addIssue({
          code: 'custom',
          path: ['servers', i, 'defaultVersion'],
          message: `another version of "${s.name}" is the default already`,
        });
      if (s.defaultVersion === true) marked.add(s.name);
    });
    const virtualNames = new Set<string>();
    cfg.virtualServers.forEach((v, i) => {
      if (virtualNames.has(v.name))
        ctx.addIssue({
          code: 'custom',
          path: ['virtualServers', i, 'name'],
          message: `duplicate virtual server "${v.name}"`,
        });
      virtualNames.add(v.name);
      for (const ref of virtualServerRefs(v))
        if (!seen.has(ref.server) && !cfg.servers.some((s) => s.name === ref.server))
          ctx.addIssue({
            code: 'custom',
            path: ['virtualServers', i, ...ref.path],
            message: `no server "${ref.server}" in servers`,
          });
    });
    if (cfg.pools.sharedState === 'redis' && !cfg.redis)
      ctx.addIssue({
        code: 'custom',
        path: ['pools', 'sharedState'],
        message: 'pools.sharedState "redis" needs redis.url',
      });
  });

/** A server as the gateway runs it (HTTP: `url` and `replicas` compiled to one form). */
export const runtimeServerSchema = serverSchema.transform((s) => normalizeServer(s));

/** `url` and `replicas` compiled to one form; `url` stays the first replica for code that knows one. */
function normalizeServer(s: RawServerConfig): ServerConfig {
  if (s.transport === 'stdio') return s;
  if (s.transport === 'http') return { ...s, replicas: [{ url: s.url, weight: 1 }] };
  const replicas = (s.replicas ?? [s.url!]).map((r) => (typeof r === 'string' ? { url: r, weight: 1 } : r));
  return { ...s, url: replicas[0]!.url, replicas };
}

type RawServerConfig = z.infer<typeof serverSchema>;
type RawHttpServerConfig = Exclude<RawServerConfig, { transport: 'stdio' | 'http' }>;

export type GatewayConfig = z.infer<typeof configSchema>;
export type StdioServerConfig = Extract<RawServerConfig, { transport: 'stdio' }>;
export type ReplicaConfig = { url: string; weight: number };
export type HttpServerConfig = RawHttpServerConfig extends infer S
  ? S extends RawHttpServerConfig
    ? Omit<S, 'url' | 'replicas'> & { url: string; replicas: ReplicaConfig[] }
    : never
  : never;
/** A REST API as tools; `replicas` is its one base URL, so that a pool treats it as any HTTP server. */
export type RestServerConfig = Extract<RawServerConfig, { transport: 'http' }> & {
  replicas: ReplicaConfig[];
};
export type ServerConfig = StdioServerConfig | HttpServerConfig | RestServerConfig;
export type PoolsConfig = z.infer<typeof poolsSchema>;
export type QuotasConfig = z.infer<typeof quotasSchema>;
export type ToolPolicy = z.infer<typeof toolPolicy>;
export type StoreConfig = GatewayConfig['store'];
export type AuditConfig = GatewayConfig['audit'];
export type VaultConfig = GatewayConfig['vault'];
