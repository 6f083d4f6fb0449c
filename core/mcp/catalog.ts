/**
 * Backend catalogs: every page of a backend's tools/prompts/resources/templates, cached per backend
 * session and dropped when the backend says the list changed (or the backend goes away).
 */
import { GatewayError } from '../../shared/errors.js';
import type { JsonObject } from '../../shared/mcp/jsonrpc.js';
import type { BackendClient } from '../backends/backend-client.js';

export type ListKind = 'tools' | 'prompts' | 'resources' | 'resourceTemplates';

export const LIST_METHOD: Record<ListKind, string> = {
  tools: 'tools/list',
  prompts: 'prompts/list',
  resources: 'resources/list',
  resourceTemplates: 'resources/templates/list',
};

/** The server capability that must be declared for a list to exist. */
export const LIST_CAPABILITY: Record<ListKind, string> = {
  tools: 'tools',
  prompts: 'prompts',
  resources: 'resources',
  resourceTemplates: 'resources',
};

/** Which cached lists a list_changed notification invalidates. */
export const INVALIDATES: Record<string, ListKind[]> = {
  'notifications/tools/list_changed': ['tools'],
  'notifications/prompts/list_changed': ['prompts'],
  'notifications/resources/list_changed': ['resources', 'resourceTemplates'],
};

const MAX_PAGES = 1000;

export class CatalogCache {
  private readonly cache = new WeakMap<BackendClient, Map<ListKind, Promise<JsonObject[]>>>();
  /** 2026 backends' cache hints (the least `ttlMs` of a list's pages) and when each list was fetched. */
  private readonly hints = new WeakMap<BackendClient, Map<ListKind, { ttlMs: number; at: number }>>();
  private readonly indexes = new WeakMap<JsonObject[], Map<string, JsonObject>>();

  constructor(private readonly timeoutMs: (server: string) => number) {}

  declares(client: BackendClient, kind: ListKind): boolean {
    const caps = client.initializeResult?.capabilities as Record<string, unknown> | undefined;
    return caps?.[LIST_CAPABILITY[kind]] !== undefined;
  }

  list(client: BackendClient, kind: ListKind): Promise<JsonObject[]> {
    let byKind = this.cache.get(client);
    if (!byKind) this.cache.set(client, (byKind = new Map()));
    let p = byKind.get(kind);
    const hint = this.hints.get(client)?.get(kind);
    // A 2026 list whose server cannot announce changes is good for its ttlMs only.
    if (p && hint && !this.announces(client, kind) && Date.now() - hint.at >= hint.ttlMs) p = undefined;
    if (!p) {
      p = this.fetchAll(client, kind);
      byKind.set(kind, p);
      p.catch(() => byKind!.delete(kind));
    }
    return p;
  }

  /** The `ttlMs` a 2026 backend gave the list last fetched (undefined for 2025 backends). */
  ttlOf(client: BackendClient, kind: ListKind): number | undefined {
    return this.hints.get(client)?.get(kind)?.ttlMs;
  }

  private announces(client: BackendClient, kind: ListKind): boolean {
    const caps = client.initializeResult?.capabilities as
      Record<string, { listChanged?: unknown }> | undefined;
    return caps?.[LIST_CAPABILITY[kind]]?.listChanged === true;
  }

  /** One item of a backend's list by name (tools, prompts) from the cached catalog. */
  async find(
    client: BackendClient,
    kind: 'tools' | 'prompts',
    name: string,
  ): Promise<JsonObject | undefined> {
    const items = await this.list(client, kind);
    let index = this.indexes.get(items);
    if (!index) {
      index = new Map(items.map((it) => [String(it.name), it]));
      this.indexes.set(items, index);
    }
    return index.get(name);
  }

  invalidate(client: BackendClient, kinds: readonly ListKind[]): void {
    const byKind = this.cache.get(client);
    for (const k of kinds) byKind?.delete(k);
  }

  private async fetchAll(client: BackendClient, kind: ListKind): Promise<JsonObject[]> {
    const items: JsonObject[] = [];
    const at = Date.now();
    let ttlMs: number | undefined;
    let cursor: unknown;
    for (let page = 0; page < MAX_PAGES; page++) {
      const res = await client.call(LIST_METHOD[kind], cursor === undefined ? undefined : { cursor }, {
        timeoutMs: this.timeoutMs(client.server),
      });
      if ('error' in res)
        throw new GatewayError(
          'GW_BACKEND_UNAVAILABLE',
          `backend "${client.server}" failed ${LIST_METHOD[kind]}: ${res.error.message}`,
          { server: client.server, backendError: res.error },
        );
      const got = res.result[kind];
      if (!Array.isArray(got))
        throw new GatewayError(
          'GW_BACKEND_PROTOCOL_ERROR',
          `backend "${client.server}" answered ${LIST_METHOD[kind]} without a "${kind}" array`,
          { server: client.server },
        );
      for (const it of got) if (typeof it === 'object' && it !== null) items.push(it as JsonObject);
      const t = res.result.ttlMs;
      if (typeof t === 'number' && Number.isFinite(t) && t >= 0) ttlMs = Math.min(ttlMs ?? t, t);
      cursor = res.result.nextCursor;
      if (typeof cursor !== 'string' || cursor === '') break;
    }
    if (ttlMs !== undefined) {
      let byKind = this.hints.get(client);
      if (!byKind) this.hints.set(client, (byKind = new Map()));
      byKind.set(kind, { ttlMs, at });
    }
    return items;
  }
}
