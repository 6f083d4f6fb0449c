/**
 * The process-wide "draining" state. On SIGTERM the process turns not-ready at once (GET /readyz answers 503
 * with status "draining", so a load balancer, Kubernetes or an edge stops sending new work) while liveness
 * (GET /healthz) stays 200. After the drain delay the node stops accepting, waits until its requests in
 * flight are done (at most the drain timeout), then closes: leaves the federation, ends its sessions and
 * stops its backends (docs/runbooks/rolling-restart.md).
 */
/** How a drain ended: idle, or the timeout passed with `inflight` requests still running. */
export interface DrainResult {
  idle: boolean;
  inflight: number;
  /** Long-lived streams (SSE GET streams, an edge's events stream) ended. */
  streams: number;
}

/**
 * On every answer of a draining core to an edge (internal API). With status 503 it says the request was
 * refused before anything ran, so the edge may send it to another core.
 */
export const DRAINING_HEADER = 'x-mcpgw-draining';

let draining = false;
const listeners = new Set<() => void>();

/** Turns the process not-ready and tells every listener (each once). */
export function beginDrain(): void {
  if (draining) return;
  draining = true;
  for (const fn of [...listeners]) fn();
}

export function isDraining(): boolean {
  return draining;
}

/** Calls `fn` when the drain begins (at once if it has). Returns the unsubscribe. */
export function onDrain(fn: () => void): () => void {
  if (draining) {
    fn();
    return () => {};
  }
  listeners.add(fn);
  return () => listeners.delete(fn);
}

/**
 * Milliseconds between SIGTERM and no longer accepting: MCPGW_DRAIN_DELAY_MS when set (the container
 * image sets it), else `lifecycle.drainDelayMs`. Give load balancers this long to notice /readyz turned
 * 503. A variable that is not a non-negative integer is an error.
 */
export function drainDelayMs(configured: number, env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.MCPGW_DRAIN_DELAY_MS;
  if (raw === undefined || raw === '') return configured;
  if (!/^\d+$/.test(raw))
    throw new Error(`MCPGW_DRAIN_DELAY_MS must be a whole number of milliseconds, not "${raw}"`);
  return Number(raw);
}
