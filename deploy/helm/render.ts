/**
 * Renders the Helm chart without a helm binary: Go's own text/template (compiled to WebAssembly, from
 * @evertdespiegeleer/go-template) over the objects Helm gives templates. The chart uses Go template
 * builtins only (no Sprig functions, no `include`), so this output is what `helm template` prints.
 *
 *   npm run chart:render -- [-f values.yaml]... [--release NAME] [--namespace NS]
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as renderTemplate } from '@evertdespiegeleer/go-template';
import { parseAllDocuments, parse as parseYaml } from 'yaml';

/** The chart in this repository (from dist/deploy/helm/ or deploy/helm/). */
export const defaultChartDir = fileURLToPath(new URL('../../../deploy/helm/mcpgw', import.meta.url));

export interface RenderOptions {
  chartDir?: string;
  /** Deep-merged over values.yaml (maps merge, anything else replaces; null removes a key, as in Helm). */
  values?: Record<string, unknown>;
  releaseName?: string;
  namespace?: string;
}

export interface RenderedManifest {
  /** e.g. templates/deployment-edge.yaml */
  source: string;
  object: Record<string, any>;
}

const isMap = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

export function mergeValues(
  base: Record<string, unknown>,
  over: Record<string, unknown>,
): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    if (v === null) delete out[k];
    else if (isMap(v) && isMap(out[k])) out[k] = mergeValues(out[k], v);
    else out[k] = v;
  }
  return out;
}

function readYamlMap(file: string): Record<string, unknown> {
  const v: unknown = parseYaml(readFileSync(file, 'utf8'));
  if (v !== null && v !== undefined && !isMap(v)) throw new Error(`${file}: not a YAML map`);
  return v ?? {};
}

/** Renders every template of the chart; returns each file's text (helpers and NOTES.txt excluded). */
export async function renderChartText(o: RenderOptions = {}): Promise<{ source: string; text: string }[]> {
  return renderFiles(o, (f) => !f.startsWith('_') && /\.(ya?ml|tpl)$/.test(f));
}

/** Renders templates/NOTES.txt, which `helm install` prints. */
export async function renderNotes(o: RenderOptions = {}): Promise<string> {
  const [notes] = await renderFiles(o, (f) => f === 'NOTES.txt');
  if (!notes) throw new Error('the chart has no templates/NOTES.txt');
  return notes.text;
}

async function renderFiles(
  o: RenderOptions,
  wanted: (file: string) => boolean,
): Promise<{ source: string; text: string }[]> {
  const dir = o.chartDir ?? defaultChartDir;
  const chart = readYamlMap(join(dir, 'Chart.yaml'));
  const values = mergeValues(readYamlMap(join(dir, 'values.yaml')), o.values ?? {});
  const tdir = join(dir, 'templates');
  const files = readdirSync(tdir).sort();
  // Helm makes every define of every file visible to each template: the helpers files are prepended.
  const helpers = files
    .filter((f) => f.startsWith('_') && f.endsWith('.tpl'))
    .map((f) => readFileSync(join(tdir, f), 'utf8'))
    .join('\n');
  const root = {
    Values: values,
    Release: {
      Name: o.releaseName ?? 'mcpgw',
      Namespace: o.namespace ?? 'default',
      Service: 'Helm',
      IsInstall: true,
      IsUpgrade: false,
      Revision: 1,
    },
    Chart: { Name: chart.name, Version: chart.version, AppVersion: chart.appVersion ?? '' },
    Capabilities: { KubeVersion: { Version: 'v1.31.0', Major: '1', Minor: '31' }, APIVersions: [] },
    Template: { BasePath: `${String(chart.name)}/templates` },
  };
  const out: { source: string; text: string }[] = [];
  for (const f of files) {
    if (!wanted(f)) continue;
    const source = `templates/${f}`;
    const body = readFileSync(join(tdir, f), 'utf8');
    let text: string;
    try {
      text = await renderTemplate(`${helpers}\n${body}`, {
        ...root,
        Template: { ...root.Template, Name: `${String(chart.name)}/${source}` },
      });
    } catch (e) {
      throw new Error(`${source}: ${(e as Error).message}`, { cause: e });
    }
    out.push({ source, text });
  }
  return out;
}

/** Renders the chart and parses it: one entry per non-empty YAML document. Invalid YAML throws. */
export async function renderChart(o: RenderOptions = {}): Promise<RenderedManifest[]> {
  const manifests: RenderedManifest[] = [];
  for (const { source, text } of await renderChartText(o)) {
    for (const doc of parseAllDocuments(text)) {
      if (doc.errors.length > 0) throw new Error(`${source}: ${doc.errors.map((e) => e.message).join('; ')}`);
      const object: unknown = doc.toJS();
      if (object === null || object === undefined) continue;
      if (!isMap(object)) throw new Error(`${source}: a document that is not a map`);
      manifests.push({ source, object });
    }
  }
  return manifests;
}

async function main(argv: string[]): Promise<void> {
  let values: Record<string, unknown> = {};
  const o: RenderOptions = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '-f' || a === '--values') values = mergeValues(values, readYamlMap(next()));
    else if (a === '--release') o.releaseName = next();
    else if (a === '--namespace' || a === '-n') o.namespace = next();
    else if (a === '--chart') o.chartDir = next();
    else throw new Error(`unknown argument ${a} (use -f FILE, --release NAME, --namespace NS, --chart DIR)`);
  }
  o.values = values;
  // Parse to check the YAML, then print each file as rendered under its source, like `helm template`.
  await renderChart(o);
  for (const { source, text } of await renderChartText(o)) {
    const body = text.replace(/^(\s*\n)+/, '').trimEnd();
    if (body !== '') process.stdout.write(`---\n# Source: mcpgw/${source}\n${body}\n`);
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main(process.argv.slice(2)).catch((e: unknown) => {
    process.stderr.write(`chart:render: ${(e as Error).message}\n`);
    process.exit(1);
  });
}
