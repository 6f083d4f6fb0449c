/**
 * The process-wide "draining" state. On SIGTERM the process turns not-ready at once (GET /readyz answers 503
 * with status "draining", so a load balancer or Kubernetes stops sending new work) while liveness (GET
 * /healthz) stays 200; after the drain delay the node closes (stops listening, ends sessions, leaves the
 * federation, stops its backends).
 */
let draining = false;

export function beginDrain(): void {
  draining = true;
}

export function isDraining(): boolean {
  return draining;
}

/**
 * Milliseconds between SIGTERM and closing: MCPGW_DRAIN_DELAY_MS (default 0, i.e. close at once). Give the
 * load balancer this long to notice /readyz turned 503 (Kubernetes: a few seconds, below
 * terminationGracePeriodSeconds). A value that is not a non-negative integer is an error.
 */
export function drainDelayMs(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.MCPGW_DRAIN_DELAY_MS;
  if (raw === undefined || raw === '') return 0;
  if (!/^\d+$/.test(raw))
    throw new Error(`MCPGW_DRAIN_DELAY_MS must be a whole number of milliseconds, not "${raw}"`);
  return Number(raw);
}
