/**
 * The logger type every module receives (pino's shape), and the one place that creates it: JSON lines,
 * with credentials redacted wherever they appear and, inside a traced request, its trace and span ids.
 * Tool arguments are never logged (at most a hash of them); the redaction of `arguments` is the backstop.
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
  /** pino's: lets a caller skip building a line nobody will see. */
  isLevelEnabled?(level: string): boolean;
}

/** Header names that carry credentials, wherever a headers object is logged. */
const SECRET_HEADERS = [
  'authorization',
  '["proxy-authorization"]',
  '["x-api-key"]',
  'cookie',
  '["set-cookie"]',
];
/** Keys that hold a secret or a tool's arguments, at the top level and one or two levels down. */
const SECRET_KEYS = [
  'token',
  'password',
  'secret',
  'clientSecret',
  'refreshToken',
  'accessToken',
  'apiKey',
  'bearerToken',
  // credentials of the vault and OAuth token answers, wherever an object carrying them is logged
  'access_token',
  'refresh_token',
  'client_secret',
  'MCPGW_VAULT_KEY',
  'arguments',
  'env',
];

export const REDACT_PATHS = [
  ...SECRET_HEADERS.flatMap((h) => {
    const path = h.startsWith('[') ? h : `.${h}`;
    return [`headers${path}`, `*.headers${path}`, `*.*.headers${path}`];
  }),
  ...SECRET_KEYS.flatMap((k) => [k, `*.${k}`, `*.*.${k}`]),
];

export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  return pino(
    {
      level,
      base: { svc: 'mcpgw' },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    },
    destination as never,
  ) as unknown as Logger;
}
