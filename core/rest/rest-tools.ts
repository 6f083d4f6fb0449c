/**
 * The tools of an `http` server: its declared endpoints, then one per operation of its OpenAPI 3
 * document. The document is dereferenced with @apidevtools/swagger-parser, which also validates it
 * against the OpenAPI schema: $refs across components (and files) resolve the way every other tool
 * reading the document resolves them, and a broken document is refused at start with its problem named.
 */
import SwaggerParser from '@apidevtools/swagger-parser';
import type { RestServerConfig } from '../../shared/config/schema.js';
import type { RestTool } from '../../shared/config/rest-schema.js';
import type { JsonObject } from '../../shared/mcp/jsonrpc.js';

export interface CompiledTool {
  endpoint: RestTool;
  /** The tool as tools/list shows it. */
  definition: JsonObject;
}

const METHODS = ['get', 'post', 'put', 'patch', 'delete'] as const;

/** Annotations an operation's method implies (RFC 9110 safe / idempotent methods). */
export function methodAnnotations(method: RestTool['method']): JsonObject {
  if (method === 'GET') return { readOnlyHint: true, idempotentHint: true, destructiveHint: false };
  if (method === 'DELETE') return { readOnlyHint: false, destructiveHint: true, idempotentHint: true };
  if (method === 'PUT') return { readOnlyHint: false, destructiveHint: false, idempotentHint: true };
  return { readOnlyHint: false, destructiveHint: false, idempotentHint: false };
}

export async function compileTools(config: RestServerConfig): Promise<CompiledTool[]> {
  const endpoints = [...config.endpoints];
  if (config.openapi)
    endpoints.push(...(await fromOpenApi(config.openapi.source, config.openapi.operations)));
  const seen = new Set<string>();
  return endpoints.map((e) => {
    if (seen.has(e.name)) throw new Error(`two tools named "${e.name}"`);
    seen.add(e.name);
    for (const p of pathParams(e.path))
      if (!(p in ((e.inputSchema.properties as object | undefined) ?? {})))
        throw new Error(`tool "${e.name}": path parameter {${p}} is not in its inputSchema`);
    return {
      endpoint: e,
      definition: {
        name: e.name,
        ...(e.description !== undefined && { description: e.description }),
        inputSchema: { type: 'object', ...e.inputSchema } as JsonObject,
        ...(e.outputSchema && { outputSchema: { type: 'object', ...e.outputSchema } as JsonObject }),
        annotations: { ...methodAnnotations(e.method), ...(e.annotations as JsonObject | undefined) },
      },
    };
  });
}

export function pathParams(path: string): string[] {
  return [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]!);
}

type Schema = Record<string, unknown>;
interface Operation {
  operationId?: string;
  summary?: string;
  description?: string;
  parameters?: { name: string; in: string; required?: boolean; schema?: Schema; description?: string }[];
  requestBody?: { required?: boolean; content?: Record<string, { schema?: Schema }> };
  responses?: Record<string, { content?: Record<string, { schema?: Schema }> }>;
}

async function fromOpenApi(source: string, only: string[] | undefined): Promise<RestTool[]> {
  let doc: { openapi?: string; paths?: Record<string, Record<string, unknown>> };
  try {
    doc = (await SwaggerParser.dereference(source)) as typeof doc;
  } catch (err) {
    throw new Error(`OpenAPI document ${source}: ${(err as Error).message}`, { cause: err });
  }
  if (!doc.openapi?.startsWith('3.'))
    throw new Error(`OpenAPI document ${source}: only OpenAPI 3 documents are supported`);
  const tools: RestTool[] = [];
  for (const [path, item] of Object.entries(doc.paths ?? {})) {
    const shared = (item.parameters as Operation['parameters']) ?? [];
    for (const m of METHODS) {
      const op = item[m] as Operation | undefined;
      if (!op) continue;
      const name = (op.operationId ?? `${m}_${path}`).replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 64);
      if (only && !only.includes(op.operationId ?? '')) continue;
      const params = [...shared, ...(op.parameters ?? [])].filter((p) => p.in === 'path' || p.in === 'query');
      const properties: Schema = {};
      const required: string[] = [];
      for (const p of params) {
        properties[p.name] = {
          ...(p.schema ?? {}),
          ...(p.description !== undefined && { description: p.description }),
        };
        if (p.required || p.in === 'path') required.push(p.name);
      }
      const bodySchema = op.requestBody?.content?.['application/json']?.schema;
      if (bodySchema) {
        properties.body = bodySchema;
        if (op.requestBody?.required) required.push('body');
      }
      const ok = Object.entries(op.responses ?? {}).find(([code]) => /^2\d\d$/.test(code))?.[1];
      const out = ok?.content?.['application/json']?.schema;
      const description = [op.summary, op.description].filter(Boolean).join('\n\n');
      tools.push({
        name,
        ...(description && { description }),
        method: m.toUpperCase() as RestTool['method'],
        path,
        query: params.filter((p) => p.in === 'query').map((p) => p.name),
        body: bodySchema ? { argument: 'body' } : 'none',
        headers: {},
        inputSchema: { type: 'object', properties, ...(required.length > 0 && { required }) },
        // MCP's outputSchema is an object schema: an array or scalar answer is announced without one.
        ...(out && out.type === 'object' && { outputSchema: out }),
      });
    }
  }
  return tools;
}
