/**
 * The reference pages say what the code does. docs/errors.md has one row per code of the table in
 * shared/errors.ts, with its HTTP status and JSON-RPC code; no page names an error code, a metric or a
 * page that does not exist; the log lines the runbooks quote are written by the code; product code makes
 * no GW_* code outside the table; and the example configs under deploy/ and in the pages load. (docs-current.test.ts
 * checks that configuration.md is the generated one.)
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { test } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { loadConfigFile, validateConfig } from '../../shared/config/load.js';
import { configSchema } from '../../shared/config/schema.js';
import { ERRORS } from '../../shared/errors.js';
import { GatewayMetrics } from '../../shared/telemetry/metrics.js';
import { ROOT } from '../helpers/net.js';

/** Files under `dir` (relative to the repository) whose name ends with `suffix`, recursively. */
function filesUnder(dir: string, suffix: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (name.endsWith(suffix)) out.push(p);
    }
  };
  walk(join(ROOT, dir));
  return out.sort();
}

const read = (file: string) => readFileSync(file, 'utf8');
const rel = (file: string) => relative(ROOT, file);

/** Every page a reader is sent to: README.md and docs/, decisions (docs/adr) included. */
const PAGES = [join(ROOT, 'README.md'), ...filesUnder('docs', '.md')];
/** Pages that describe the code as it is (ADRs also record what was decided and later retired). */
const CURRENT_PAGES = PAGES.filter((f) => !rel(f).startsWith('docs/adr/'));

test('docs/errors.md has one row per error code, with the HTTP status and JSON-RPC code of the table', () => {
  const doc = read(join(ROOT, 'docs/errors.md'));
  const rows = new Map<string, { http: string; rpc: string }[]>();
  for (const m of doc.matchAll(/^\|\s*`(GW_[A-Z0-9_]+)`\s*\|\s*([^|]*?)\s*\|\s*([^|]*?)\s*\|/gm)) {
    const list = rows.get(m[1]!) ?? [];
    list.push({ http: m[2]!, rpc: m[3]! });
    rows.set(m[1]!, list);
  }
  const problems: string[] = [];
  for (const [code, spec] of Object.entries(ERRORS)) {
    const found = rows.get(code);
    if (!found) problems.push(`${code}: no row`);
    else if (found.length > 1) problems.push(`${code}: ${found.length} rows`);
    else if (found[0]!.http !== String(spec.http) || found[0]!.rpc !== String(spec.rpc))
      problems.push(
        `${code}: documented ${found[0]!.http} / ${found[0]!.rpc}, the table says ${spec.http} / ${spec.rpc}`,
      );
  }
  for (const code of rows.keys())
    if (!(code in ERRORS)) problems.push(`${code}: documented, not in shared/errors.ts`);
  assert.deepEqual(problems, []);
});

test('every GW_* code the pages name exists (a name ending in _* must start at least one code)', () => {
  const codes = Object.keys(ERRORS);
  const unknown: string[] = [];
  for (const page of CURRENT_PAGES)
    for (const m of read(page).matchAll(/(?<![A-Za-z0-9_])(GW_[A-Z0-9_]*[A-Z0-9])(_\*)?/g)) {
      const [, name, wildcard] = m;
      const ok = wildcard ? codes.some((c) => c.startsWith(`${name}_`)) : codes.includes(name!);
      if (!ok) unknown.push(`${rel(page)}: ${name}${wildcard ?? ''}`);
    }
  assert.deepEqual([...new Set(unknown)], []);
});

test('product code makes no GW_* code outside shared/errors.ts', () => {
  const outside: string[] = [];
  for (const dir of ['shared', 'edge', 'core', 'federation', 'cli', 'demo'])
    for (const file of filesUnder(dir, '.ts'))
      for (const m of read(file).matchAll(/['"`](GW_[A-Z0-9_]+)['"`]/g))
        if (!(m[1]! in ERRORS)) outside.push(`${rel(file)}: ${m[1]}`);
  assert.deepEqual(outside, []);
});

test('every mcpgw_* metric the pages name is one the gateway exports', async () => {
  const metrics = new GatewayMetrics({ region: 'test', maxTools: 1, maxTenants: 1 });
  const exported = new Set(metrics.registry.getMetricsAsArray().map((m) => m.name));
  // Histograms are named in queries by their series.
  for (const name of [...exported])
    for (const suffix of ['_bucket', '_sum', '_count']) exported.add(`${name}${suffix}`);
  const unknown: string[] = [];
  for (const page of CURRENT_PAGES)
    for (const m of read(page).matchAll(/(?<![A-Za-z0-9_<])mcpgw_[a-z][a-z0-9_]*/g))
      // `mcpgw_cluster_<region>`: the Postgres schemas of `npm run cluster`, not metrics.
      if (!exported.has(m[0]) && !m[0].startsWith('mcpgw_cluster_')) unknown.push(`${rel(page)}: ${m[0]}`);
  assert.ok(exported.has('mcpgw_requests_total'), 'the registry lists the hot counters too');
  assert.deepEqual([...new Set(unknown)], []);
});

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens. */
function anchorOf(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');
}

/** A page without its fenced code blocks (indented ones too, inside list items). */
const prose = (file: string) => read(file).replace(/^[ \t]*```[\s\S]*?^[ \t]*```/gm, '');

function anchorsOf(file: string): Set<string> {
  const text = prose(file);
  return new Set([...text.matchAll(/^#{1,6}\s+(.+)$/gm)].map((m) => anchorOf(m[1]!)));
}

test('relative links of README.md and docs/ name files and headings that exist', () => {
  const broken: string[] = [];
  for (const page of PAGES) {
    const text = prose(page);
    for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      const target = m[1]!;
      if (/^[a-z]+:/i.test(target) || target.startsWith('<')) continue; // https:, mailto:
      const [path, anchor] = target.split('#') as [string, string | undefined];
      const file = path === '' ? page : resolve(dirname(page), decodeURIComponent(path));
      if (!existsSync(file)) {
        broken.push(`${rel(page)}: ${target} (no such file)`);
        continue;
      }
      if (anchor !== undefined && file.endsWith('.md') && !anchorsOf(file).has(anchor))
        broken.push(`${rel(page)}: ${target} (no such heading)`);
    }
  }
  assert.deepEqual(broken, []);
});

test('the example configs of deploy/demo and deploy/local load', async () => {
  const files = [...filesUnder('deploy/demo', '.yaml'), ...filesUnder('deploy/local', '.yaml')];
  assert.ok(files.length >= 5, `found ${files.length} example configs`);
  const problems: string[] = [];
  for (const file of files)
    await loadConfigFile(file, {}).catch((err: Error) => problems.push(`${rel(file)}: ${err.message}`));
  assert.deepEqual(problems, []);
});

test('every log line the runbooks quote is one the code writes', () => {
  const source = ['shared', 'edge', 'core', 'federation', 'cli']
    .flatMap((dir) => filesUnder(dir, '.ts'))
    .map(read)
    .join('\n');
  const quoted: string[] = [];
  const missing: string[] = [];
  for (const page of filesUnder('docs/runbooks', '.md')) {
    const text = prose(page);
    for (const m of text.matchAll(/`([^`]+)`/g)) {
      // A log line is a code span right after "warn", "info", "error", "logs", "line"...
      if (
        !/\b(?:warn|info|error|debug|logs?|line)\b[^`.;]*$/.test(
          text.slice(Math.max(0, m.index - 20), m.index),
        )
      )
        continue;
      const msg = m[1]!.replace(/\s+/g, ' ').trim();
      // ...and not a code, a metric, a field, a key or a value.
      if (/^GW_|^mcpgw_|^[a-z]+[A-Z]|^[\w.]+$|=|^\w+:\s*"/.test(msg)) continue;
      quoted.push(msg);
      // `<r>` and `...` stand for what the code fills in.
      const pattern = msg
        .split(/<[^>]+>|\.\.\./)
        .map((part) => part.trim())
        .filter((part) => part !== '')
        .map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace(/ /g, '\\s+'))
        .join('.*?');
      if (!new RegExp(pattern).test(source)) missing.push(`${rel(page)}: ${msg}`);
    }
  }
  assert.ok(quoted.length >= 20, `found ${quoted.length} quoted log lines`);
  assert.deepEqual(missing, []);
});

test('the YAML examples of README.md and docs/ that are configs validate', () => {
  const keys = new Set(Object.keys(configSchema.shape));
  // `${VAR}` in an example stands for a secret from the environment: any value of the right length.
  const env = new Proxy({} as NodeJS.ProcessEnv, {
    get: (_t, name) => (typeof name === 'string' ? 'placeholder-value-0123456789' : undefined),
    ownKeys: () => [],
  });
  let checked = 0;
  const problems: string[] = [];
  for (const page of CURRENT_PAGES)
    for (const m of read(page).matchAll(/^[ \t]*```ya?ml\n([\s\S]*?)^[ \t]*```/gm)) {
      let doc: unknown;
      try {
        doc = parseYaml(m[1]!);
      } catch (err) {
        problems.push(`${rel(page)}: not YAML: ${(err as Error).message.split('\n')[0]}`);
        continue;
      }
      // Only what is meant as (part of) a config file: every top-level key is a config key.
      if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) continue;
      if (!Object.keys(doc).every((k) => keys.has(k))) continue;
      checked++;
      try {
        validateConfig(doc, rel(page), env);
      } catch (err) {
        problems.push(`${rel(page)}: ${(err as Error).message}`);
      }
    }
  assert.ok(checked >= 10, `checked ${checked} examples`);
  assert.deepEqual(problems, []);
});
