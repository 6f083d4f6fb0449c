/**
 * Renders the configuration reference (docs/configuration.md) from the schema's JSON Schema, so the
 * document cannot drift from what the loader accepts.
 */
type Schema = Record<string, unknown>;

export function renderConfigDocs(root: Schema): string {
  const rows: string[] = [];
  walk(root, '', rows, root);
  return [
    '# Configuration reference',
    '',
    'Generated from the schema by `mcpgw config docs`; do not edit by hand (run `npm run docs:config`).',
    '',
    'Files are YAML or JSON. Unknown keys are rejected. `mcpgw config check FILE` lists every problem with its path.',
    '',
    '## Environment overrides',
    '',
    'Any key can be set from the environment as `MCPGW_<PATH>`, path segments joined by `__` (camelCase keys',
    'written with `_`): `MCPGW_LISTEN__PORT=9000`, `MCPGW_LOG__LEVEL=debug`, `MCPGW_SESSIONS__IDLE_TIMEOUT_MS=60000`.',
    'Numeric segments index arrays: `MCPGW_SERVERS__0__URL=http://127.0.0.1:9301/mcp`. Values are read as YAML',
    '(`MCPGW_SERVERS__1__ARGS=[server.js, stdio]`). Only variables whose first segment names a top-level key',
    'are overrides; other `MCPGW_*` variables are ignored. Any string value may reference `${VAR}`; an unset',
    'variable is an error.',
    '`MCPGW_CONFIG` names the config file when `--config` is not given.',
    '',
    '## Keys',
    '',
    '| key | type | default | description |',
    '| --- | --- | --- | --- |',
    ...rows,
    '',
  ].join('\n');
}

function typeOf(s: Schema): string {
  if (Array.isArray(s.enum))
    return (s.enum as unknown[]).map((v) => `\`${JSON.stringify(v)}\``).join(' \\| ');
  if (s.const !== undefined) return `\`${JSON.stringify(s.const)}\``;
  if (s.type === 'array') return `array of ${typeOf((s.items as Schema) ?? {})}`;
  if (s.type === 'object' && s.additionalProperties && typeof s.additionalProperties === 'object')
    return 'map of string';
  return String(s.type ?? (s.anyOf || s.oneOf ? 'one of below' : 'any'));
}

function walk(s: Schema, path: string, rows: string[], root: Schema): void {
  if (typeof s.$ref === 'string') {
    const ref = (s.$ref as string).replace('#/$defs/', '');
    s = ((root.$defs as Record<string, Schema>) ?? {})[ref] ?? s;
  }
  const variants = (s.oneOf ?? s.anyOf) as Schema[] | undefined;
  if (variants) {
    for (const v of variants) {
      const props = (v.properties ?? {}) as Record<string, Schema>;
      const tag = Object.entries(props).find(([, p]) => p.const !== undefined);
      walk(v, tag ? `${path} (${tag[0]}: ${JSON.stringify(tag[1].const)})` : path, rows, root);
    }
    return;
  }
  const props = s.properties as Record<string, Schema> | undefined;
  const primitiveItem = path.endsWith('[]') && !props && !(s.oneOf ?? s.anyOf);
  if (path && (!props || s.description) && !primitiveItem) {
    const def = s.default === undefined ? '' : `\`${JSON.stringify(s.default)}\``;
    rows.push(
      `| \`${path}\` | ${typeOf(s)} | ${def} | ${String(s.description ?? '').replace(/\|/g, '\\|')} |`,
    );
  }
  if (props) for (const [k, v] of Object.entries(props)) walk(v, path ? `${path}.${k}` : k, rows, root);
  if (s.type === 'array' && s.items) walk(s.items as Schema, `${path}[]`, rows, root);
}
