/**
 * The `http` server type: a plain REST API served as MCP tools, declared in the config (one entry per
 * tool: method, URL template, argument mapping, response selection) or generated from an OpenAPI 3
 * document. Credentials are named, never written here: they live in the vault (docs/rest-tools.md).
 */
import { z } from 'zod';

const jsonSchemaObject = z
  .record(z.string(), z.unknown())
  .refine((s) => s.type === undefined || s.type === 'object', {
    message: 'a tool schema must be of type "object"',
  });

const tokenBudget = z
  .number()
  .int()
  .min(16)
  .optional()
  .describe(
    'Most tokens (o200k_base) a result of this tool may hold; a longer one is truncated, marked as such, and stays valid.',
  );

export const restToolSchema = z
  .object({
    name: z
      .string()
      .regex(/^[A-Za-z0-9_.-]{1,64}$/)
      .describe('Tool name.'),
    description: z.string().optional().describe('Shown to the model.'),
    method: z.enum(['GET', 'POST', 'PUT', 'PATCH', 'DELETE']).describe('HTTP method.'),
    path: z
      .string()
      .startsWith('/')
      .describe('Path under the server `url`; `{name}` is replaced by the argument `name`, URL-encoded.'),
    query: z.array(z.string()).default([]).describe('Arguments sent as query parameters.'),
    body: z
      .union([z.enum(['rest', 'none']), z.object({ argument: z.string() }).strict()])
      .optional()
      .describe(
        'The JSON body: `rest` (the arguments not used by the path or query), `none`, or `{argument}` (that argument as the whole body). Default: `rest` for POST, PUT and PATCH, `none` otherwise.',
      ),
    headers: z
      .record(z.string(), z.string())
      .default({})
      .describe("Headers of this tool's requests; `{name}` is replaced by the argument `name`."),
    inputSchema: jsonSchemaObject
      .default({ type: 'object' })
      .describe('JSON Schema of the arguments (type object).'),
    outputSchema: jsonSchemaObject
      .optional()
      .describe("JSON Schema of the (selected) JSON response, announced as the tool's outputSchema."),
    select: z
      .array(z.string().regex(/^(\/([^/~]|~[01])*)*$/, 'a JSON pointer such as /data/items'))
      .optional()
      .describe(
        "JSON pointers into the response: one pointer returns that value, several return an object keyed by each pointer's last segment.",
      ),
    timeoutMs: z.number().int().positive().optional().describe("Default: the server's timeouts.requestMs."),
    tokenBudget,
    annotations: z
      .record(z.string(), z.unknown())
      .optional()
      .describe(
        'Tool annotations; by default derived from the method (GET: read-only and idempotent, DELETE: destructive, PUT: idempotent).',
      ),
  })
  .strict();

export const restAuthSchema = z
  .discriminatedUnion('kind', [
    z
      .object({
        kind: z.literal('api-key'),
        credential: z.string().min(1).describe('Vault credential id (kind api-key).'),
        header: z.string().default('x-api-key').describe('Header carrying the key.'),
        prefix: z.string().default('').describe('Put before the key, e.g. `Token `.'),
      })
      .strict(),
    z
      .object({
        kind: z.literal('bearer'),
        credential: z
          .string()
          .min(1)
          .describe(
            'Vault credential id: an api-key, an oauth-client (client_credentials) or an oauth-token (refreshed before it expires).',
          ),
      })
      .strict(),
    z
      .object({
        kind: z.literal('user-oauth'),
      })
      .strict()
      .describe(
        "The calling user's own OAuth token: the vault credential of kind oauth-token with this server and owner = the caller's subject.",
      ),
    z
      .object({
        kind: z.literal('token-exchange'),
        tokenUrl: z.url({ protocol: /^https?$/ }).describe('The RFC 8693 token endpoint.'),
        audience: z.string().optional().describe('`audience` of the exchange.'),
        resource: z.string().optional().describe('`resource` of the exchange.'),
        scope: z.string().optional().describe('`scope` of the exchange.'),
        credential: z
          .string()
          .optional()
          .describe('Vault credential id (kind oauth-client) authenticating the gateway to the endpoint.'),
        refreshBeforeMs: z
          .number()
          .int()
          .min(0)
          .default(30_000)
          .describe('An exchanged token is reused until this long before it expires.'),
      })
      .strict()
      .describe(
        "RFC 8693: the caller's delegation token (servers[].identity must be `delegation`), never the client's own, exchanged for a backend token.",
      ),
  ])
  .optional();

export const restServerFields = {
  url: z.url({ protocol: /^https?$/ }).describe('Base URL of the REST API.'),
  headers: z
    .record(z.string(), z.string())
    .default({})
    .describe('Headers sent with every request (no secrets: use `auth`). Values may use ${VAR}.'),
  auth: restAuthSchema,
  endpoints: z
    .array(restToolSchema)
    .default([])
    .describe(
      'The tools, declared one by one: each one endpoint of the API. (`tools` holds per-tool policies, as for every server.)',
    ),
  openapi: z
    .object({
      source: z
        .string()
        .min(1)
        .describe('An OpenAPI 3 document: a file (relative to the working directory) or an http(s) URL.'),
      operations: z.array(z.string()).optional().describe('operationIds to serve; absent: every operation.'),
    })
    .strict()
    .optional()
    .describe('Generate a tool per operation of an OpenAPI 3 document (after the declared tools).'),
  tokenBudget,
};

export type RestTool = z.infer<typeof restToolSchema>;
export type RestAuth = NonNullable<z.infer<typeof restAuthSchema>>;
