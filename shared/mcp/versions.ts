/** Protocol versions of the 2025 (stateful) era the gateway speaks with clients and backends. */
export const LATEST_PROTOCOL_VERSION = '2025-11-25';
export const SUPPORTED_PROTOCOL_VERSIONS: readonly string[] = [
  '2025-11-25',
  '2025-06-18',
  '2025-03-26',
  '2024-11-05',
];
/** Versions of the 2026 (stateless) era: never offered by initialize, never mixed with the list above. */
export const MODERN_PROTOCOL_VERSIONS: readonly string[] = ['2026-07-28'];

/** Assumed when a request carries no MCP-Protocol-Version header (spec: 2025-03-26). */
export const DEFAULT_PROTOCOL_VERSION = '2025-03-26';

export function negotiateVersion(requested: string): string {
  return SUPPORTED_PROTOCOL_VERSIONS.includes(requested) ? requested : LATEST_PROTOCOL_VERSION;
}
