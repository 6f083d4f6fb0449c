/**
 * The pinned part of a tool definition and its hash: what an approval covers. `title`, `icons` and
 * `_meta` are presentation and are not pinned; name, description, schemas and annotations are what a
 * model reads and what a "rug pull" rewrites.
 */
import { createHash } from 'node:crypto';
import { canonicalJson } from '../../shared/canonical-json.js';
import type { JsonObject } from '../../shared/mcp/jsonrpc.js';

export const PINNED_FIELDS = ['name', 'description', 'inputSchema', 'outputSchema', 'annotations'] as const;

export function pinnedPart(tool: JsonObject): JsonObject {
  const out: JsonObject = {};
  for (const f of PINNED_FIELDS) if (tool[f] !== undefined) out[f] = tool[f];
  return out;
}

export function definitionHash(tool: JsonObject): string {
  return createHash('sha256')
    .update(canonicalJson(pinnedPart(tool)))
    .digest('hex');
}
