/**
 * One tools/call of a REST tool: the request built from the arguments (path, query, headers, body), the
 * answer turned into a tool result. An HTTP error status or a network failure is a result with isError
 * (the model can read it and react), naming the status and a short excerpt of the body.
 */
import type { RestServerConfig } from '../../shared/config/schema.js';
import type { JsonObject } from '../../shared/mcp/jsonrpc.js';
import type { CompiledTool } from './rest-tools.js';
import { applyTokenBudget, TOKENS_META, type TokenCounter } from './token-budget.js';

const EXCERPT_CHARS = 300;

export async function callEndpoint(
  config: RestServerConfig,
  tool: CompiledTool,
  args: JsonObject,
  auth: Record<string, string>,
  signal: AbortSignal,
  counter: TokenCounter,
): Promise<JsonObject> {
  const e = tool.endpoint;
  const used = new Set<string>();
  const missing: string[] = [];
  const path = e.path.replace(/\{([^}]+)\}/g, (_, name: string) => {
    used.add(name);
    const v = args[name];
    if (v === undefined || v === null || v === '') missing.push(name);
    return encodeURIComponent(String(v));
  });
  if (missing.length > 0) return failure(`Missing path argument(s): ${missing.join(', ')}`);
  const url = new URL(config.url.replace(/\/+$/, '') + path);
  for (const q of e.query) {
    used.add(q);
    const v = args[q];
    if (v === undefined || v === null) continue;
    for (const item of Array.isArray(v) ? v : [v])
      url.searchParams.append(q, typeof item === 'object' ? JSON.stringify(item) : String(item));
  }
  const headers: Record<string, string> = { accept: 'application/json, */*;q=0.5' };
  for (const [k, v] of Object.entries({ ...config.headers, ...e.headers }))
    headers[k.toLowerCase()] = v.replace(/\{([^}]+)\}/g, (_, name: string) => {
      used.add(name);
      return String(args[name] ?? '');
    });
  // Credentials last: nothing in the config or the arguments replaces them.
  Object.assign(headers, auth);
  const mode = e.body ?? (['POST', 'PUT', 'PATCH'].includes(e.method) ? 'rest' : 'none');
  let body: string | undefined;
  if (mode === 'rest')
    body = JSON.stringify(Object.fromEntries(Object.entries(args).filter(([k]) => !used.has(k))));
  else if (mode !== 'none' && args[mode.argument] !== undefined) body = JSON.stringify(args[mode.argument]);
  if (body !== undefined) headers['content-type'] = 'application/json';

  const timeoutMs = e.timeoutMs ?? config.timeouts.requestMs;
  const where = `${e.method} ${url.pathname}`;
  let res: Response;
  let text: string;
  try {
    res = await fetch(url, {
      method: e.method,
      headers,
      ...(body !== undefined && { body }),
      redirect: 'manual',
      signal: AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]),
    });
    text = await res.text();
  } catch (err) {
    const why =
      (err as Error).name === 'TimeoutError'
        ? `no answer within ${timeoutMs} ms`
        : (((err as Error).cause as Error | undefined)?.message ?? (err as Error).message);
    return failure(`${where} failed: ${why}`);
  }
  if (res.status >= 300) {
    const excerpt = text.length > EXCERPT_CHARS ? `${text.slice(0, EXCERPT_CHARS)}…` : text;
    return {
      ...failure(`${where} answered HTTP ${res.status} ${res.statusText}${excerpt ? `: ${excerpt}` : ''}`),
      _meta: { 'mcpgw/httpStatus': res.status },
    };
  }
  let result: JsonObject;
  const json = /[/+]json\b/i.test(res.headers.get('content-type') ?? '') ? parseJson(text) : undefined;
  if (json !== undefined) {
    const value = select(json.value, e.select);
    const out = JSON.stringify(value);
    // structuredContent is an object; a list or a scalar is given as text only.
    result = {
      content: [{ type: 'text', text: out }],
      ...(isObject(value) && { structuredContent: value }),
    };
  } else result = { content: [{ type: 'text', text: text || `HTTP ${res.status}` }] };
  const budget = e.tokenBudget ?? config.tokenBudget;
  if (budget !== undefined) return applyTokenBudget(result, budget, counter);
  return { ...result, _meta: { [TOKENS_META]: counter.ofResult(result) } };
}

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function failure(text: string): JsonObject {
  return { isError: true, content: [{ type: 'text', text }] };
}

function parseJson(text: string): { value: unknown } | undefined {
  try {
    return { value: JSON.parse(text) as unknown };
  } catch {
    return undefined;
  }
}

/** One pointer: its value; several: an object keyed by each pointer's last segment. */
export function select(value: unknown, pointers: string[] | undefined): unknown {
  if (!pointers || pointers.length === 0) return value;
  if (pointers.length === 1) return resolvePointer(value, pointers[0]!);
  return Object.fromEntries(
    pointers.map((p) => [unescape(p.split('/').pop() ?? '') || 'value', resolvePointer(value, p)]),
  );
}

/** RFC 6901. */
function resolvePointer(value: unknown, pointer: string): unknown {
  if (pointer === '') return value;
  let cur = value;
  for (const raw of pointer.slice(1).split('/')) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[unescape(raw)];
  }
  return cur;
}

function unescape(segment: string): string {
  return segment.replace(/~1/g, '/').replace(/~0/g, '~');
}
