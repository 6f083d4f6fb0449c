/**
 * A virtual server compiled for routing: what each name and URI clients see on /v/{name}/mcp stands
 * for, and the backend lists cut down to the chosen items under their aliases. Server references stay
 * names until a request: a reference to a server's plain name follows its default version.
 */
import type { VirtualServerConfig } from '../../shared/config/virtual-schema.js';
import type { JsonObject } from '../../shared/mcp/jsonrpc.js';
import type { ListKind } from './catalog.js';
import { matchUriTemplate } from './uri-template.js';

export { unknownScope, VIRTUAL_SCOPE_PREFIX } from '../../shared/mcp/scopes.js';

interface Chosen {
  server: string;
  name: string;
  description?: string | undefined;
}

export class VirtualView {
  readonly name: string;
  readonly tenant: string | undefined;
  readonly description: string | undefined;
  private readonly tools = new Map<string, Chosen>();
  private readonly prompts = new Map<string, Chosen>();

  constructor(readonly config: VirtualServerConfig) {
    this.name = config.name;
    this.tenant = config.tenant;
    this.description = config.description;
    for (const t of config.tools)
      this.tools.set(t.alias ?? t.tool, { server: t.server, name: t.tool, description: t.description });
    for (const p of config.prompts)
      this.prompts.set(p.alias ?? p.prompt, { server: p.server, name: p.prompt });
  }

  /** The server references it uses (names or ids). */
  refs(): string[] {
    return [
      ...new Set([
        ...this.config.tools.map((t) => t.server),
        ...this.config.prompts.map((p) => p.server),
        ...this.config.resources.map((r) => r.server),
      ]),
    ];
  }

  /** The backend item an exposed tool or prompt name stands for (its server still a reference). */
  resolve(kind: 'tools' | 'prompts', exposed: string): Chosen | undefined {
    return (kind === 'tools' ? this.tools : this.prompts).get(exposed);
  }

  /** The server reference a URI belongs to: a chosen resource, or a chosen template it matches. */
  resolveUri(uri: string): string | undefined {
    for (const r of this.config.resources) if (r.uri === uri) return r.server;
    for (const r of this.config.resources)
      if (r.uriTemplate !== undefined && matchUriTemplate(r.uriTemplate, uri)) return r.server;
    return undefined;
  }

  /**
   * The chosen items of `kind` out of the backends' lists (already filtered for the caller), renamed:
   * tools and prompts in the order the virtual server names them, under their aliases.
   */
  select(
    kind: ListKind,
    perServer: { server: string; items: readonly JsonObject[] }[],
    idOf: (ref: string) => string | undefined,
  ): JsonObject[] {
    const byServer = new Map(perServer.map((p) => [p.server, p.items]));
    const itemsOf = (ref: string) => {
      const id = idOf(ref);
      return (id !== undefined && byServer.get(id)) || [];
    };
    if (kind === 'tools' || kind === 'prompts') {
      // Each server's items by name, made once per listing (not one search per chosen item).
      const named = new Map<string, Map<string, JsonObject>>();
      const find = (ref: string, name: string) => {
        let index = named.get(ref);
        if (!index) {
          index = new Map();
          for (const it of itemsOf(ref)) if (!index.has(String(it.name))) index.set(String(it.name), it);
          named.set(ref, index);
        }
        return index.get(name);
      };
      const out: JsonObject[] = [];
      for (const [alias, c] of kind === 'tools' ? this.tools : this.prompts) {
        const item = find(c.server, c.name);
        if (!item) continue; // not offered now, or hidden from this caller
        out.push({
          ...item,
          name: alias,
          ...(c.description !== undefined && { description: c.description }),
        });
      }
      return out;
    }
    const out: JsonObject[] = [];
    const seen = new Set<string>();
    for (const r of this.config.resources)
      for (const it of itemsOf(r.server)) {
        if (kind === 'resourceTemplates') {
          if (r.uriTemplate !== undefined && it.uriTemplate === r.uriTemplate) out.push(it);
          continue;
        }
        if (typeof it.uri !== 'string') continue;
        const chosen = r.uri !== undefined ? it.uri === r.uri : matchUriTemplate(r.uriTemplate!, it.uri);
        if (chosen && !seen.has(it.uri)) {
          seen.add(it.uri);
          out.push(it);
        }
      }
    return out;
  }

  /** The chosen templates per server reference (for completion/complete on a ref/resource). */
  templates(): Map<string, string[]> {
    const m = new Map<string, string[]>();
    for (const r of this.config.resources)
      if (r.uriTemplate !== undefined) m.set(r.server, [...(m.get(r.server) ?? []), r.uriTemplate]);
    return m;
  }
}
