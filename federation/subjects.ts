/**
 * Names on the bus. Each region writes one registry bucket, `reg_<region>`, that every other region
 * mirrors as `KV_reg_<region>_mirror`; inside it one key per gateway (its heartbeat), one per server of
 * each gateway, and the region's leases:
 *
 *   gw.<gateway>              gateway envelope (heartbeat, url, server names)
 *   srv.<gateway>.<server>    server envelope (capabilities, health, classification, residency)
 *   lease.<name>              lease envelope (holder; fenced by the key's revision)
 */
export const registryBucket = (region: string): string => `reg_${region}`;
export const gatewayKey = (gateway: string): string => `gw.${gateway}`;
export const serverKey = (gateway: string, server: string): string => `srv.${gateway}.${server}`;
export const serverPrefix = (gateway: string): string => `srv.${gateway}.`;
export const leaseKey = (name: string): string => `lease.${name}`;

export type RegistryKey =
  | { type: 'gateway'; gateway: string }
  | { type: 'server'; gateway: string; server: string }
  | { type: 'lease'; name: string };

/** Parses a registry key; undefined for keys this version does not know (they are ignored). */
export function parseRegistryKey(key: string): RegistryKey | undefined {
  const t = key.split('.');
  if (t[0] === 'gw' && t.length === 2 && t[1]) return { type: 'gateway', gateway: t[1] };
  if (t[0] === 'srv' && t.length === 3 && t[1] && t[2])
    return { type: 'server', gateway: t[1], server: t[2] };
  if (t[0] === 'lease' && t.length === 2 && t[1]) return { type: 'lease', name: t[1] };
  return undefined;
}
