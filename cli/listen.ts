/** What every role's composition root returns, and the URL it listens on. */
import type { Server } from 'node:http';
import type { GatewayConfig } from '../shared/config/schema.js';
import type { DrainResult } from '../shared/lifecycle/drain.js';

export interface RunningTier {
  /** Base URL, e.g. https://127.0.0.1:9443 */
  url: string;
  /**
   * After the drain delay: stop accepting, wait until the requests in flight are done (at most
   * `timeoutMs`). `close` follows.
   */
  drain?(timeoutMs: number): Promise<DrainResult>;
  close(): Promise<void>;
}

export function listenUrl(server: Server, config: GatewayConfig): string {
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : config.listen.port;
  const host = config.listen.host.includes(':') ? `[${config.listen.host}]` : config.listen.host;
  return `${config.listen.tls ? 'https' : 'http'}://${host}:${port}`;
}
