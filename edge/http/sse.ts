/** Server-Sent Events framing for MCP messages, and the SSE responses a draining node ends. */
import type { ServerResponse } from 'node:http';
import { notInflight } from '../../shared/lifecycle/inflight.js';

export function sseEvent(data: unknown, id?: string): string {
  return `${id === undefined ? '' : `id: ${id}\n`}event: message\ndata: ${JSON.stringify(data)}\n\n`;
}

export interface OpenSseOptions {
  /**
   * No end of its own (GET stream, legacy SSE, listen), not a request's answer: not a request in
   * flight, ended (with a retry hint) when the node drains.
   */
  longLived?: boolean;
  /** Ends the stream the way its protocol ends it (default: the response ends). */
  finish?: () => void;
}

/** Every SSE response open in this process. */
const streams = new Map<ServerResponse, OpenSseOptions>();

/** SSE responses open to clients in this process (the `mcpgw_sse_streams` gauge). */
export function openSseStreams(): number {
  return streams.size;
}

export function openSse(res: ServerResponse, headers: Record<string, string>, o: OpenSseOptions = {}): void {
  streams.set(res, o);
  res.once('close', () => streams.delete(res));
  // A drain waits for requests in flight; a stream that never ends by itself is none.
  if (o.longLived) notInflight(res);
  res.writeHead(200, {
    'content-type': 'text/event-stream',
    'cache-control': 'no-cache, no-transform',
    connection: 'keep-alive',
    ...headers,
  });
  res.flushHeaders();
}

/**
 * Ends the SSE streams of one listener (`owner`: the long-lived ones, or all) with a `retry:` field first, so that
 * clients reconnect after `retryMs` (through the load balancer, to a replica that is not draining) and
 * resume with Last-Event-ID. Returns how many were ended.
 */
export function endSseStreams(
  owner: { owns(res: ServerResponse): boolean },
  retryMs: number,
  which: 'long-lived' | 'all' = 'long-lived',
): number {
  let n = 0;
  for (const [res, s] of [...streams]) {
    if ((which === 'long-lived' && !s.longLived) || !owner.owns(res)) continue;
    if (res.destroyed || res.writableEnded) continue;
    n++;
    res.write(`retry: ${retryMs}\n\n`);
    if (s.finish) s.finish();
    if (!res.writableEnded) res.end();
  }
  return n;
}
