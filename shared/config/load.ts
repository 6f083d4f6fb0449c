/**
 * Loading: read YAML or JSON, apply environment overrides, interpolate ${VAR}, validate against the one
 * schema, and deep-freeze. Every problem is reported at once, each with its path.
 */
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { parse as parseYaml } from 'yaml';
import { configSchema, type GatewayConfig } from './schema.js';

export interface ConfigProblem {
  path: string;
  message: string;
}

export class ConfigError extends Error {
  readonly problems: ConfigProblem[];
  constructor(file: string, problems: ConfigProblem[]) {
    super(
      `${file}: ${problems.length} problem(s)\n` +
        problems.map((p) => `  ${p.path || '(root)'}: ${p.message}`).join('\n'),
    );
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

const ENV_PREFIX = 'MCPGW_';

/**
 * Environment overrides: `MCPGW_<PATH>` where path segments are joined by `__`, case-insensitive, e.g.
 * `MCPGW_LISTEN__PORT=9000` or `MCPGW_LOG__LEVEL=debug`. Values are read as YAML scalars (numbers, booleans).
 */
export function applyEnvOverrides(
  raw: Record<string, unknown>,
  env: NodeJS.ProcessEnv,
): Record<string, unknown> {
  const out: Record<string, unknown> = structuredClone(raw);
  const topLevel = new Set(Object.keys(configSchema.shape));
  for (const [key, value] of Object.entries(env)) {
    if (!key.startsWith(ENV_PREFIX) || value === undefined) continue;
    const path = key.slice(ENV_PREFIX.length).toLowerCase().split('__').map(camel);
    // Only variables that name a configuration key are overrides; other MCPGW_* variables (tooling,
    // tests) are none of the configuration's business.
    if (!topLevel.has(path[0]!)) continue;
    // Numeric segments index arrays: MCPGW_SERVERS__0__URL sets servers[0].url.
    let node: Record<string, unknown> | unknown[] = out;
    for (let i = 0; i < path.length - 1; i++) {
      const seg = path[i]!;
      const wantArray = /^\d+$/.test(path[i + 1]!);
      const next = (node as Record<string, unknown>)[seg];
      const fits = typeof next === 'object' && next !== null && Array.isArray(next) === wantArray;
      if (!fits) (node as Record<string, unknown>)[seg] = wantArray ? [] : {};
      node = (node as Record<string, unknown>)[seg] as Record<string, unknown> | unknown[];
    }
    (node as Record<string, unknown>)[path[path.length - 1]!] = parseYaml(value);
  }
  return out;
}

function camel(s: string): string {
  return s.replace(/_([a-z])/g, (_m, c: string) => c.toUpperCase());
}

/** Replaces `${VAR}` in every string with the environment's value; a missing variable is a problem. */
function interpolate(
  node: unknown,
  env: NodeJS.ProcessEnv,
  path: string,
  problems: ConfigProblem[],
): unknown {
  if (typeof node === 'string') {
    return node.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_m, name: string) => {
      const v = env[name];
      if (v === undefined) {
        problems.push({ path, message: `environment variable ${name} is not set` });
        return '';
      }
      return v;
    });
  }
  if (Array.isArray(node)) return node.map((v, i) => interpolate(v, env, `${path}.${i}`, problems));
  if (typeof node === 'object' && node !== null) {
    return Object.fromEntries(
      Object.entries(node).map(([k, v]) => [k, interpolate(v, env, path ? `${path}.${k}` : k, problems)]),
    );
  }
  return node;
}

/** A core accepts only internal tokens of trusted edges; running without that trust is a loopback test mode. */
function coreTrustProblems(cfg: GatewayConfig): ConfigProblem[] {
  const { internal, listen, role } = cfg;
  const trusts = internal.trustedKeys.length > 0 || internal.jwksUrl !== undefined;
  if (internal.insecureNoTrustOnLoopback && !isLoopbackHost(listen.host))
    return [
      {
        path: 'internal.insecureNoTrustOnLoopback',
        message: `a test mode, accepted only when listening on loopback, not on ${listen.host}`,
      },
    ];
  if (role === 'core' && !trusts && !internal.insecureNoTrustOnLoopback)
    return [
      {
        path: 'internal.trustedKeys',
        message:
          'role core needs the public keys of its edges (internal.trustedKeys or internal.jwksUrl); without them it would trust anyone',
      },
    ];
  return [];
}

export function isLoopbackHost(host: string): boolean {
  if (host === 'localhost' || host === '::1' || host === '[::1]') return true;
  return isIP(host) === 4 && host.startsWith('127.');
}

/** Validates an already-parsed document. Returns the frozen config or throws ConfigError with every problem. */
export function validateConfig(
  doc: unknown,
  file: string,
  env: NodeJS.ProcessEnv = process.env,
): GatewayConfig {
  const problems: ConfigProblem[] = [];
  if (doc !== undefined && doc !== null && (typeof doc !== 'object' || Array.isArray(doc))) {
    throw new ConfigError(file, [{ path: '', message: 'the document must be a mapping (object)' }]);
  }
  const withEnv = applyEnvOverrides((doc ?? {}) as Record<string, unknown>, env);
  const interpolated = interpolate(withEnv, env, '', problems);
  const parsed = configSchema.safeParse(interpolated);
  if (!parsed.success) {
    for (const issue of parsed.error.issues)
      problems.push({ path: issue.path.join('.'), message: issue.message });
  }
  // A core authenticates no client: its callers are edges, proven by the internal token instead.
  if (
    parsed.success &&
    parsed.data.role !== 'core' &&
    parsed.data.auth.mode === 'none' &&
    !isLoopbackHost(parsed.data.listen.host)
  ) {
    problems.push({
      path: 'auth.mode',
      message: `"none" is accepted only when listening on loopback, not on ${parsed.data.listen.host}`,
    });
  }
  if (parsed.success) problems.push(...coreTrustProblems(parsed.data));
  if (problems.length > 0 || !parsed.success) throw new ConfigError(file, problems);
  return deepFreeze(parsed.data);
}

export async function loadConfigFile(
  file: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<GatewayConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ConfigError(file, [{ path: '', message: `cannot read: ${(err as Error).message}` }]);
  }
  let doc: unknown;
  try {
    doc = file.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    throw new ConfigError(file, [
      {
        path: '',
        message: `not valid ${file.endsWith('.json') ? 'JSON' : 'YAML'}: ${(err as Error).message}`,
      },
    ]);
  }
  return validateConfig(doc, file, env);
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
