/** Server-Sent Events framing for MCP messages. */
import type { ServerResponse } from 'node:http';

export function sseEvent(data: unknown, id?: string): string {
  return `${id === undefined ? '' : `id: ${id}\n`}event: message\ndata: ${JSON.stringify(data)}\n\n`;
}

let open = 0;

/** SSE responses open to clients in this process (the `mcpgw_sse_streams` gauge). */
export function openSseStreams(): number {
  return open;
}

export function openSse(res: ServerResponse, headers: Record<string, string>): void {
  open++;
  res.once('close', () => open--);
  res.writeHead(200, {
    'content-type': 'text/event-stream',
    'cache-control': 'no-cache, no-transform',
    connection: 'keep-alive',
    ...headers,
  });
  res.flushHeaders();
}
