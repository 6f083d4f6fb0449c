/**
 * Ids of the requests the gateway sends to clients (sampling, elicitation, roots). Each names the replica
 * that sent it, so that the client's answer reaches that replica whichever replica it lands on.
 */
const PREFIX = 'mcpgw-';

export function serverRequestId(replicaId: string, seq: number): string {
  return `${PREFIX}${replicaId}-${seq}`;
}

/** The replica that issued a gateway request id; undefined for ids the gateway did not make. */
export function replicaOfRequestId(id: unknown): string | undefined {
  if (typeof id !== 'string' || !id.startsWith(PREFIX)) return undefined;
  const cut = id.lastIndexOf('-');
  return cut > PREFIX.length ? id.slice(PREFIX.length, cut) : undefined;
}
