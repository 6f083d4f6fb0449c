/**
 * The logger type every module receives (pino's shape), and the one place that creates it: JSON lines,
 * with credentials redacted wherever they appear.
 */
import { pino } from 'pino';

export interface Logger {
  trace(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  fatal(obj: object, msg?: string): void;
  child(bindings: Record<string, unknown>): Logger;
}

export const REDACT_PATHS = [
  'headers.authorization',
  'headers["x-api-key"]',
  'headers.cookie',
  '*.headers.authorization',
  '*.headers["x-api-key"]',
  '*.env',
  'env',
  'token',
  '*.token',
  'password',
  '*.password',
  'secret',
  '*.secret',
  // credentials of the vault and OAuth token answers, wherever an object carrying them is logged
  'apiKey',
  '*.apiKey',
  'clientSecret',
  '*.clientSecret',
  'accessToken',
  '*.accessToken',
  'refreshToken',
  '*.refreshToken',
  'access_token',
  '*.access_token',
  'refresh_token',
  '*.refresh_token',
  'client_secret',
  '*.client_secret',
  '*.*.secret',
  'MCPGW_VAULT_KEY',
  '*.MCPGW_VAULT_KEY',
];

export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  return pino(
    { level, base: { svc: 'mcpgw' }, redact: { paths: REDACT_PATHS, censor: '[redacted]' } },
    destination as never,
  ) as unknown as Logger;
}
