/**
 * `subscriptions/listen` for 2026-07-28 clients: one SSE stream per listen request, fed by the
 * unrelated messages of the caller's core context (the same list_changed and resources/updated that
 * 2025 sessions get on their GET stream, from 2025 and 2026 backends alike).
 *
 * The stream opens with `notifications/subscriptions/acknowledged` naming what is honored (the
 * requested list kinds the scope can announce; URIs when it supports subscriptions), then carries only
 * those notifications, each with `_meta["io.modelcontextprotocol/subscriptionId"]` = the listen id, and
 * `: keepalive` comments. The client ends it by closing the stream; the gateway ends it gracefully at
 * shutdown with a final `complete` result. No resume (2026-07-28 has none).
 */
import type { ServerResponse } from 'node:http';
import type { JsonObject, JsonRpcMessage, JsonRpcRequest } from '../../shared/mcp/jsonrpc.js';
import type { MessageSink } from '../../shared/ports/core-service.js';
import { openSse, sseEvent } from './sse.js';

const SUBSCRIPTION_ID = 'io.modelcontextprotocol/subscriptionId';
const SERVER_INFO = 'io.modelcontextprotocol/serverInfo';
const KEEPALIVE_MS = 15_000;

const KINDS: Record<string, { capability: string; method: string }> = {
  toolsListChanged: { capability: 'tools', method: 'notifications/tools/list_changed' },
  promptsListChanged: { capability: 'prompts', method: 'notifications/prompts/list_changed' },
  resourcesListChanged: { capability: 'resources', method: 'notifications/resources/list_changed' },
};

/** What a listen asks for and what the scope can honor (requested ∩ capabilities). */
export function honoredFilter(requested: JsonObject, capabilities: JsonObject): JsonObject {
  const honored: JsonObject = {};
  for (const [key, k] of Object.entries(KINDS)) {
    const cap = capabilities[k.capability] as { listChanged?: unknown } | undefined;
    if (requested[key] === true && cap?.listChanged === true) honored[key] = true;
  }
  const res = capabilities.resources as { subscribe?: unknown } | undefined;
  const uris = requested.resourceSubscriptions;
  if (res?.subscribe === true && Array.isArray(uris)) {
    const valid = uris.filter((u): u is string => typeof u === 'string');
    if (valid.length > 0) honored.resourceSubscriptions = [...new Set(valid)];
  }
  return honored;
}

export interface ListenStream {
  /** Receives the context's unrelated messages; forwards those the listen asked for. */
  readonly sink: MessageSink;
  /** Ends the stream with the final result (gateway shutdown). */
  end(): void;
  /** Resolves when the client closed the stream or it was ended. */
  readonly closed: Promise<void>;
}

/** Opens the listen stream on `res` and acknowledges `honored`. */
export function openListenStream(
  res: ServerResponse,
  request: JsonRpcRequest,
  honored: JsonObject,
  serverInfo: JsonObject,
): ListenStream {
  const id = request.id;
  const methods = new Set(
    Object.entries(KINDS)
      .filter(([key]) => honored[key] === true)
      .map(([, k]) => k.method),
  );
  const uris = new Set((honored.resourceSubscriptions as string[] | undefined) ?? []);
  openSse(res, {}, { longLived: true, finish: () => end() });
  const write = (m: JsonRpcMessage) => {
    if (!res.destroyed && !res.writableEnded) res.write(sseEvent(m));
  };
  write({
    jsonrpc: '2.0',
    method: 'notifications/subscriptions/acknowledged',
    params: { notifications: honored, _meta: { [SUBSCRIPTION_ID]: id } },
  });
  const keepalive = setInterval(() => {
    if (!res.destroyed && !res.writableEnded) res.write(': keepalive\n\n');
  }, KEEPALIVE_MS).unref();
  let resolveClosed!: () => void;
  const closed = new Promise<void>((r) => (resolveClosed = r));
  res.on('close', () => {
    clearInterval(keepalive);
    resolveClosed();
  });
  return {
    closed,
    sink: {
      send(m) {
        if (!('method' in m) || 'id' in m) return;
        const p = (m.params ?? {}) as JsonObject;
        if (m.method === 'notifications/resources/updated') {
          if (!uris.has(String(p.uri))) return;
        } else if (!methods.has(m.method)) return;
        const meta = { ...(p._meta as JsonObject | undefined), [SUBSCRIPTION_ID]: id };
        write({ jsonrpc: '2.0', method: m.method, params: { ...p, _meta: meta } });
      },
    },
    end,
  };
  function end(): void {
    clearInterval(keepalive);
    write({
      jsonrpc: '2.0',
      id,
      result: { resultType: 'complete', _meta: { [SUBSCRIPTION_ID]: id, [SERVER_INFO]: serverInfo } },
    });
    if (!res.writableEnded) res.end();
  }
}
