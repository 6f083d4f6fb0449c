/**
 * Virtual servers (docs/registry.md): a named endpoint `/v/{name}/mcp` exposing a chosen set of tools,
 * prompts and resources of several servers, under their own names or aliases. Declared in the config
 * file (`virtualServers`) or through the admin API; both go through this schema.
 */
import { z } from 'zod';

const name = z
  .string()
  .regex(
    /^[A-Za-z0-9-]+(?:_[A-Za-z0-9-]+)*$/,
    'letters, digits, "-" and single "_" between them (no "__", no leading or trailing "_")',
  )
  .max(64);

/** What clients see as a tool or prompt name (what deployed clients enforce). */
const clientName = z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, '1-64 of letters, digits, "_" and "-"');

const serverRef = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/, 'a server name or id')
  .describe(
    'A server id (`payments-v2`), or a server name: then its default version, following the default when it moves.',
  );

const tool = z
  .object({
    server: serverRef,
    tool: z.string().min(1).max(128).describe("The backend's own tool name."),
    alias: clientName.optional().describe("The name clients see (default: the backend's own name)."),
    description: z.string().max(2000).optional().describe("Replaces the backend's description."),
  })
  .strict();

const prompt = z
  .object({
    server: serverRef,
    prompt: z.string().min(1).max(128).describe("The backend's own prompt name."),
    alias: clientName.optional().describe("The name clients see (default: the backend's own name)."),
  })
  .strict();

const resource = z
  .object({
    server: serverRef,
    uri: z.string().min(1).max(2048).optional().describe('One resource, by its URI.'),
    uriTemplate: z
      .string()
      .min(1)
      .max(2048)
      .optional()
      .describe('A resource template of the server: its resources are readable through it.'),
  })
  .strict()
  .refine((r) => (r.uri === undefined) !== (r.uriTemplate === undefined), {
    message: 'exactly one of uri and uriTemplate',
  });

export const virtualServerSchema = z
  .object({
    name: name.describe('The {name} of /v/{name}/mcp.'),
    description: z
      .string()
      .max(2000)
      .optional()
      .describe('Shown to clients as the instructions of the initialize result.'),
    tenant: z
      .string()
      .regex(/^[A-Za-z0-9_.-]{1,64}$/)
      .optional()
      .describe("Only this tenant's callers reach it (others get 404). Absent: every tenant."),
    tools: z.array(tool).default([]).describe('The tools it exposes, in this order.'),
    prompts: z.array(prompt).default([]).describe('The prompts it exposes.'),
    resources: z.array(resource).default([]).describe('The resources and resource templates it exposes.'),
  })
  .strict()
  .superRefine((v, ctx) => {
    // Names clients see must be unique: a call must reach exactly one backend item.
    for (const [kind, items] of [
      ['tools', v.tools.map((t) => t.alias ?? t.tool)],
      ['prompts', v.prompts.map((p) => p.alias ?? p.prompt)],
      ['resources', v.resources.map((r) => r.uri ?? r.uriTemplate!)],
    ] as const) {
      const seen = new Set<string>();
      items.forEach((n, i) => {
        if (seen.has(n))
          ctx.addIssue({
            code: 'custom',
            path: [kind, i, kind === 'resources' ? 'uri' : 'alias'],
            message: `"${n}" is exposed twice in virtual server "${v.name}"${kind === 'resources' ? '' : ': give one an alias'}`,
          });
        seen.add(n);
      });
    }
    v.tools.forEach((t, i) => {
      if (t.alias === undefined && !/^[a-zA-Z0-9_-]{1,64}$/.test(t.tool))
        ctx.addIssue({
          code: 'custom',
          path: ['tools', i, 'alias'],
          message: `tool "${t.tool}" is not a name every client accepts: give it an alias`,
        });
    });
  });

export type VirtualServerConfig = z.infer<typeof virtualServerSchema>;

/** Every server a virtual server refers to (ids or names), with where each reference is. */
export function virtualServerRefs(v: VirtualServerConfig): { server: string; path: (string | number)[] }[] {
  return [
    ...v.tools.map((t, i) => ({ server: t.server, path: ['tools', i, 'server'] })),
    ...v.prompts.map((p, i) => ({ server: p.server, path: ['prompts', i, 'server'] })),
    ...v.resources.map((r, i) => ({ server: r.server, path: ['resources', i, 'server'] })),
  ];
}
