/**
 * The security part of the configuration schema (issue 4, client-facing): authentication (`auth`),
 * authorization (`policy`), result filtering (`pii`), argument validation (`validation`) and the HTTP
 * hardening keys under `http` (CORS, header limit, Host-header routing). Kept apart from schema.ts so
 * that the one schema stays readable; schema.ts composes it.
 */
import { z } from 'zod';

/** Asymmetric algorithms only: an HS* secret would have to be shared with every issuer, and `none` is no signature. */
export const JWT_ALGORITHMS = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
] as const;

const tenantName = z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'letters, digits, _ . - (at most 64)');
const nameList = z.array(z.string().min(1));
const glob = z.string().min(1).describe('A glob: `*` any run of characters, `?` one character.');

const claims = z
  .object({
    subject: z.string().default('sub').describe('Claim holding the subject.'),
    tenant: z
      .string()
      .default('tenant')
      .describe('Claim holding the tenant (a dotted path is followed into nested objects).'),
    roles: z
      .string()
      .default('roles')
      .describe('Claim holding the roles: an array or a space-separated string (e.g. `realm_access.roles`).'),
    scopes: z
      .string()
      .default('scope')
      .describe('Claim holding the scopes: a space-separated string (`scope`) or an array (`scp`).'),
    regions: z
      .string()
      .default('regions')
      .describe(
        "Claim holding the regions the caller's data may go to (an array or a space-separated string): narrows the tenant's `federation.tenants` allowed regions; absent: no narrowing.",
      ),
    client: z
      .string()
      .default('azp')
      .describe('Claim naming the client application (`client_id` is tried when it is absent).'),
  })
  .strict()
  .prefault({});

const jwtSchema = z
  .object({
    issuer: z.string().min(1).describe('Expected `iss`, exactly.'),
    audience: z
      .union([z.string().min(1), z.array(z.string().min(1)).min(1)])
      .describe(
        'This gateway as the token audience (`aud` must contain it): tokens for other resources are refused.',
      ),
    jwksUrl: z.url({ protocol: /^https?$/ }).describe("The authorization server's JWKS (its public keys)."),
    algorithms: z
      .array(z.enum(JWT_ALGORITHMS))
      .min(1)
      .default(['RS256', 'ES256'])
      .describe('Accepted signature algorithms (asymmetric only; `none` and HS* are never accepted).'),
    clockSkewSec: z
      .number()
      .int()
      .min(0)
      .max(300)
      .default(30)
      .describe('Tolerance for `exp` and `nbf` against clock drift.'),
    claims,
    defaultTenant: tenantName.default('default').describe('Tenant of a token without a tenant claim.'),
    jwksCooldownMs: z
      .number()
      .int()
      .min(0)
      .default(30_000)
      .describe('Least time between two JWKS refetches triggered by an unknown `kid` (protects the issuer).'),
    jwksCacheMaxAgeMs: z
      .number()
      .int()
      .positive()
      .default(10 * 60_000)
      .describe('How long fetched keys are used before the JWKS is fetched again.'),
    jwksTimeoutMs: z
      .number()
      .int()
      .positive()
      .default(5_000)
      .describe('How long a JWKS fetch may take; beyond it the token is refused (401), never held.'),
    cacheMaxEntries: z
      .number()
      .int()
      .min(0)
      .default(10_000)
      .describe(
        'Verified tokens kept (until their expiry) so that a token is verified once, not per request.',
      ),
  })
  .strict();

const declaredKey = z
  .object({
    id: z
      .string()
      .regex(/^[A-Za-z0-9]{6,32}$/, 'letters and digits, 6 to 32')
      .describe('The `<id>` of `mcpgw_<id>_<secret>`.'),
    hash: z
      .string()
      .regex(/^hmac-sha256:[A-Za-z0-9_-]{43}$/, 'a hash printed by `mcpgw keys create` (hmac-sha256:...)')
      .describe('The key hash (never the key itself).'),
    owner: z.string().min(1).describe('Subject of the principal the key authenticates.'),
    tenant: tenantName.default('default').describe("The caller's tenant."),
    roles: nameList.default([]).describe("The caller's roles."),
    scopes: nameList.default([]).describe("The caller's scopes."),
    expiresAt: z.iso.datetime().optional().describe('ISO 8601; the key is refused from then on.'),
    revoked: z.boolean().default(false).describe('A revoked key is refused.'),
  })
  .strict();

const apiKeysSchema = z
  .object({
    pepper: z
      .string()
      .min(16)
      .describe(
        'Server secret mixed into every key hash (HMAC-SHA256), e.g. ${MCPGW_API_KEY_PEPPER}: a leaked store alone cannot be brute-forced.',
      ),
    store: z
      .enum(['memory', 'redis'])
      .default('memory')
      .describe(
        'Where keys made with `mcpgw keys` live: `memory` (this process) or `redis` (every edge; needs `redis.url`).',
      ),
    cacheTtlMs: z
      .number()
      .int()
      .min(0)
      .default(30_000)
      .describe(
        'Redis store: how long an edge keeps a key record locally. Changes (revocations) reach every edge at once by pub/sub; the TTL bounds a missed message. 0: no local cache.',
      ),
    keys: z.array(declaredKey).default([]).describe('Keys declared in the config (hashes only).'),
  })
  .strict();

const mtlsSchema = z
  .object({
    subjectFrom: z
      .enum(['cn', 'san-uri', 'san-dns', 'san-email'])
      .default('cn')
      .describe('Which part of the verified client certificate names the caller.'),
    tenant: tenantName
      .default('default')
      .describe('Tenant of certificate callers (unless `identities` says otherwise).'),
    roles: nameList.default([]).describe('Roles every certificate caller gets.'),
    scopes: nameList.default([]).describe('Scopes every certificate caller gets.'),
    identities: z
      .record(
        z.string(),
        z
          .object({ tenant: tenantName.optional(), roles: nameList.optional(), scopes: nameList.optional() })
          .strict(),
      )
      .default({})
      .describe('Per subject: its tenant, roles and scopes.'),
  })
  .strict();

const authMethod = z.enum(['jwt', 'api-key', 'mtls']);

export const authSchema = z
  .object({
    mode: z
      .enum(['none', 'jwt', 'api-key', 'mtls'])
      .optional()
      .describe(
        'One authentication method. `none`: no authentication, accepted only when listening on loopback.',
      ),
    modes: z
      .array(authMethod)
      .min(1)
      .optional()
      .describe(
        'Several methods, tried in this order: the first whose credential is present decides (an invalid credential is 401, never anonymous).',
      ),
    publicUrl: z
      .url({ protocol: /^https?$/ })
      .optional()
      .describe(
        'Base URL clients use (e.g. https://mcp.example.com): the `resource` of the OAuth metadata. Default: from the request.',
      ),
    authorizationServers: z
      .array(z.url())
      .optional()
      .describe('Advertised in /.well-known/oauth-protected-resource (default: [jwt.issuer]).'),
    scopesSupported: nameList.optional().describe('Advertised in the metadata (default: requiredScopes).'),
    requiredScopes: nameList
      .default([])
      .describe('Scopes every JWT or API key must carry (403 insufficient_scope otherwise).'),
    jwt: jwtSchema.optional().describe('OAuth 2.1 resource server: bearer JWTs verified against a JWKS.'),
    apiKeys: apiKeysSchema.optional().describe('API keys (`mcpgw_<id>_<secret>`), as Bearer or X-API-Key.'),
    mtls: mtlsSchema.optional().describe('Identity from a client certificate the TLS listener verified.'),
  })
  .strict()
  .superRefine((a, ctx) => {
    if (a.mode !== undefined && a.modes !== undefined)
      ctx.addIssue({ code: 'custom', path: ['modes'], message: 'give either "mode" or "modes", not both' });
    const methods = a.modes ?? (a.mode && a.mode !== 'none' ? [a.mode] : []);
    if (a.mode === undefined && a.modes === undefined)
      ctx.addIssue({ code: 'custom', path: ['mode'], message: 'give "mode" or "modes"' });
    if (methods.includes('jwt') && !a.jwt)
      ctx.addIssue({ code: 'custom', path: ['jwt'], message: 'mode "jwt" needs auth.jwt' });
    if (methods.includes('api-key') && !a.apiKeys)
      ctx.addIssue({ code: 'custom', path: ['apiKeys'], message: 'mode "api-key" needs auth.apiKeys' });
    if (methods.includes('mtls') && !a.mtls)
      ctx.addIssue({ code: 'custom', path: ['mtls'], message: 'mode "mtls" needs auth.mtls' });
    if (new Set(methods).size !== methods.length)
      ctx.addIssue({ code: 'custom', path: ['modes'], message: 'a method is listed twice' });
  })
  .default({ mode: 'none', requiredScopes: [] })
  .describe('Client authentication.');

const argumentConstraint = z
  .object({
    enum: z
      .array(z.union([z.string(), z.number(), z.boolean()]))
      .min(1)
      .optional(),
    pattern: z
      .string()
      .refine((p) => {
        try {
          new RegExp(p, 'u');
          return true;
        } catch {
          return false;
        }
      }, 'not a valid regular expression')
      .optional()
      .describe('The whole string value must match (anchored).'),
    maxLength: z.number().int().min(0).optional(),
    minimum: z.number().optional(),
    maximum: z.number().optional(),
    required: z.boolean().default(false).describe('The argument must be present.'),
  })
  .strict();

const policyRule = z
  .object({
    description: z.string().optional().describe('Free text for operators.'),
    effect: z
      .enum(['allow', 'deny'])
      .default('allow')
      .describe('`deny` beats any `allow` covering the same item.'),
    roles: nameList.optional().describe('The caller has at least one of these roles.'),
    scopes: nameList.optional().describe('The caller has every one of these scopes.'),
    tenants: nameList.optional().describe("The caller's tenant is one of these."),
    subjects: z.array(glob).optional().describe("The caller's subject matches one of these globs."),
    servers: z.array(glob).default(['*']).describe('Servers the rule covers.'),
    tools: z.array(glob).optional().describe('Backend tool names the rule covers.'),
    prompts: z.array(glob).optional().describe('Backend prompt names the rule covers.'),
    resources: z
      .array(glob)
      .optional()
      .describe('Backend resource URIs (and URI templates) the rule covers.'),
    arguments: z
      .record(z.string(), argumentConstraint)
      .optional()
      .describe('Allow rules: constraints on tools/call arguments of the tools covered.'),
  })
  .strict();

export const policySchema = z
  .object({
    default: z
      .enum(['allow', 'deny'])
      .default('deny')
      .describe('What a caller may use when no rule covers it.'),
    rules: z.array(policyRule).default([]).describe('Rules; a matching deny beats any allow.'),
  })
  .strict()
  .optional()
  .describe(
    'Authorization: which callers (roles, scopes, tenants) may see and use which servers, tools, prompts and resources. Absent: everything is allowed (tenancy still applies).',
  );

const piiRule = z
  .object({
    servers: z.array(glob).default(['*']),
    tools: z
      .array(glob)
      .optional()
      .describe(
        'tools/call results of these tools. A rule naming none of tools, prompts and resources covers every result of its servers; one naming some covers only those.',
      ),
    prompts: z.array(glob).optional().describe('prompts/get results of these prompts.'),
    resources: z.array(glob).optional().describe('resources/read results of these (backend) URIs.'),
    tenants: nameList.optional().describe('Callers of these tenants (absent: every tenant).'),
    detect: z
      .array(z.enum(['email', 'card', 'iban']))
      .default(['email', 'card', 'iban'])
      .describe('Built-in detectors: emails, card numbers (Luhn-checked), IBANs (mod-97-checked).'),
    patterns: z
      .array(
        z
          .object({
            name: z.string().regex(/^[A-Za-z0-9_-]{1,32}$/),
            regex: z.string().refine((p) => {
              try {
                new RegExp(p, 'gu');
                return true;
              } catch {
                return false;
              }
            }, 'not a valid regular expression'),
          })
          .strict(),
      )
      .default([])
      .describe('Custom patterns, masked as [REDACTED:<name>].'),
  })
  .strict();

export const piiSchema = z
  .object({ rules: z.array(piiRule).default([]) })
  .strict()
  .optional()
  .describe(
    'Masking of personal data in results: tools/call (text content, embedded resources, structuredContent), prompts/get messages and resources/read contents.',
  );

export const validationSchema = z
  .object({
    toolArguments: z
      .boolean()
      .default(true)
      .describe(
        "tools/call arguments are checked against the tool's inputSchema before forwarding (-32602 on violations).",
      ),
  })
  .strict()
  .prefault({});

const corsSchema = z
  .object({
    origins: z
      .array(z.string().regex(/^https?:\/\/[^/]+$/, 'an origin: scheme://host[:port]'))
      .default([])
      .describe('Browser origins allowed to call the gateway (CORS); none: no CORS headers at all.'),
    maxAgeSec: z
      .number()
      .int()
      .min(0)
      .default(600)
      .describe('How long a browser may cache a preflight answer.'),
  })
  .strict()
  .prefault({});

export const httpSecurityKeys = {
  maxHeaderBytes: z
    .number()
    .int()
    .min(1024)
    .default(16 * 1024)
    .describe('Largest accepted request header section (431 beyond).'),
  cors: corsSchema,
  hostRouting: z
    .object({
      pattern: z
        .string()
        .regex(
          /^[a-z0-9.-]*\{service\}[a-z0-9.-]*$/,
          'a host name containing {service}, e.g. {service}-mcp.example.com',
        )
        .describe(
          'Host names that each serve one server: `{service}-mcp.example.com` serves /servers/{service}/mcp at /mcp.',
        ),
    })
    .strict()
    .optional()
    .describe('Host-header routing (one host name per server); matching hosts are allowed hosts.'),
};

export type AuthConfig = z.infer<typeof authSchema>;
export type PolicyConfig = NonNullable<z.infer<typeof policySchema>>;
export type PiiConfig = NonNullable<z.infer<typeof piiSchema>>;
