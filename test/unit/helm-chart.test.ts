/**
 * The Helm chart (deploy/helm/mcpgw) renders with Go's text/template and every object it makes validates
 * against the Kubernetes OpenAPI schemas (kubernetes-models), with the defaults and with the options on.
 * The gateway config files it carries pass the gateway's own config validation.
 */
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { ConfigMap, Secret, Service } from 'kubernetes-models/v1';
import { Deployment } from 'kubernetes-models/apps/v1';
import { Ingress, NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
import {
  defaultChartDir,
  renderChart,
  renderNotes,
  type RenderedManifest,
} from '../../deploy/helm/render.js';
import { validateConfig } from '../../shared/config/load.js';

type Obj = Record<string, any>;
const models: Record<string, new (data: any) => { validate(): void }> = {
  'v1/ConfigMap': ConfigMap,
  'v1/Secret': Secret,
  'v1/Service': Service,
  'apps/v1/Deployment': Deployment,
  'networking.k8s.io/v1/Ingress': Ingress,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'monitoring.coreos.com/v1/ServiceMonitor': ServiceMonitor,
};

function validateAll(manifests: RenderedManifest[]): void {
  for (const { source, object } of manifests) {
    const key = `${object.apiVersion}/${object.kind}`;
    const Model = models[key];
    assert.ok(Model, `${source}: no schema for ${key}`);
    assert.doesNotThrow(() => new Model(object).validate(), `${source}: ${key} ${object.metadata?.name}`);
    assert.equal(object.metadata?.namespace, 'mcp', `${source}: ${key} in the release namespace`);
  }
}

const kinds = (ms: RenderedManifest[]) => ms.map((m) => `${m.object.kind}/${m.object.metadata.name}`).sort();
const find = (ms: RenderedManifest[], kind: string, name: string): Obj => {
  const m = ms.find((x) => x.object.kind === kind && x.object.metadata.name === name);
  assert.ok(m, `${kind}/${name} rendered (have: ${kinds(ms).join(', ')})`);
  return m.object;
};
/** Kubernetes label selection: every matchLabels pair is on the object. */
const selects = (matchLabels: Record<string, string>, labels: Record<string, string>) =>
  Object.keys(matchLabels).length > 0 && Object.entries(matchLabels).every(([k, v]) => labels[k] === v);
/** An Ingress wildcard host covers exactly one extra DNS label. */
const wildcardCovers = (pattern: string, host: string) =>
  pattern.startsWith('*.') &&
  host.endsWith(pattern.slice(1)) &&
  !host.slice(0, -pattern.length + 1).includes('.');

const render = (values: Record<string, unknown> = {}) =>
  renderChart({ releaseName: 'gw', namespace: 'mcp', values });
const env = {
  REDIS_URL: 'redis://redis:6379/0',
  STORE_URL: 'postgres://db/mcpgw',
  METRICS_TOKEN: 'a-scrape-token-of-32-characters!',
};
const configOf = (ms: RenderedManifest[], cm: string, key: string) => {
  const text = find(ms, 'ConfigMap', cm).data?.[key];
  assert.equal(typeof text, 'string', `${cm} has ${key}`);
  return validateConfig(parseYaml(text as string), `${cm}/${key}`, env);
};

test('defaults: the expected objects, each valid against the Kubernetes schemas', async () => {
  const ms = await render();
  validateAll(ms);
  assert.deepEqual(kinds(ms), [
    'ConfigMap/gw-mcpgw-config',
    'Deployment/gw-mcpgw-core',
    'Deployment/gw-mcpgw-edge',
    'HorizontalPodAutoscaler/gw-mcpgw-core',
    'HorizontalPodAutoscaler/gw-mcpgw-edge',
    'Ingress/gw-mcpgw',
    'NetworkPolicy/gw-mcpgw-backends',
    'NetworkPolicy/gw-mcpgw-core',
    'PodDisruptionBudget/gw-mcpgw-core',
    'PodDisruptionBudget/gw-mcpgw-edge',
    'Secret/gw-mcpgw',
    'Service/gw-mcpgw-core',
    'Service/gw-mcpgw-edge',
  ]);
  // With an HPA the Deployment leaves replicas to it (a fixed count would fight the autoscaler).
  assert.equal(find(ms, 'Deployment', 'gw-mcpgw-edge').spec.replicas, undefined);
  const fixed = await render({ edge: { autoscaling: { enabled: false }, replicas: 3 } });
  assert.equal(find(fixed, 'Deployment', 'gw-mcpgw-edge').spec.replicas, 3);
  assert.ok(!kinds(fixed).includes('HorizontalPodAutoscaler/gw-mcpgw-edge'));
});

test('the Ingress takes the wildcard host and sends it to the edges, which route by Host header', async () => {
  const ms = await render({ domain: 'mcp.acme.io' });
  const ing = find(ms, 'Ingress', 'gw-mcpgw');
  assert.equal(ing.spec.rules.length, 1);
  const rule = ing.spec.rules[0];
  assert.equal(rule.host, '*.mcp.acme.io');
  assert.ok(wildcardCovers(rule.host, 'hubspot-mcp.mcp.acme.io'));
  assert.ok(!wildcardCovers(rule.host, 'a.hubspot-mcp.mcp.acme.io'));
  const backend = rule.http.paths[0].backend.service;
  const svc = find(ms, 'Service', backend.name);
  assert.equal(svc.metadata.labels['app.kubernetes.io/component'], 'edge');
  assert.ok(svc.spec.ports.some((p: Obj) => p.name === backend.port.name));
  assert.equal(ing.spec.tls, undefined);
  const edge = configOf(ms, 'gw-mcpgw-config', 'edge.yaml');
  assert.equal(edge.http.hostRouting?.pattern, '{service}-mcp.mcp.acme.io');
});

test('NetworkPolicy: cores accept edge pods only, backends accept core pods only', async () => {
  const ms = await render();
  const podLabels = (name: string) => find(ms, 'Deployment', name).spec.template.metadata.labels;
  const edgePods = podLabels('gw-mcpgw-edge');
  const corePods = podLabels('gw-mcpgw-core');

  const core = find(ms, 'NetworkPolicy', 'gw-mcpgw-core');
  assert.ok(selects(core.spec.podSelector.matchLabels, corePods), 'selects the core pods');
  assert.ok(!selects(core.spec.podSelector.matchLabels, edgePods), 'not the edge pods');
  assert.deepEqual(core.spec.policyTypes, ['Ingress']);
  const peers = core.spec.ingress.flatMap((r: Obj) => r.from);
  assert.equal(peers.length, 1);
  assert.deepEqual(Object.keys(peers[0]), ['podSelector'], 'no namespace or IP peers');
  assert.ok(selects(peers[0].podSelector.matchLabels, edgePods));
  assert.ok(!selects(peers[0].podSelector.matchLabels, corePods));

  const backends = find(ms, 'NetworkPolicy', 'gw-mcpgw-backends');
  assert.deepEqual(backends.spec.podSelector.matchLabels, { 'mcpgw.io/backend': 'true' });
  const bPeers = backends.spec.ingress.flatMap((r: Obj) => r.from);
  assert.equal(bPeers.length, 1);
  assert.ok(selects(bPeers[0].podSelector.matchLabels, corePods));
  assert.ok(!selects(bPeers[0].podSelector.matchLabels, edgePods));

  const off = await render({ networkPolicy: { enabled: false } });
  assert.ok(!off.some((m) => m.object.kind === 'NetworkPolicy'));
});

test('selectors: Deployments, Services, HPAs and PDBs point at the right pods and ports', async () => {
  const ms = await render();
  for (const role of ['edge', 'core']) {
    const name = `gw-mcpgw-${role}`;
    const other = find(ms, 'Deployment', `gw-mcpgw-${role === 'edge' ? 'core' : 'edge'}`);
    const dep = find(ms, 'Deployment', name);
    const pods = dep.spec.template.metadata.labels;
    assert.ok(selects(dep.spec.selector.matchLabels, pods), `${name} selects its own pods`);
    const svc = find(ms, 'Service', name);
    assert.ok(selects(svc.spec.selector, pods), `Service ${name} selects the ${role} pods`);
    assert.ok(!selects(svc.spec.selector, other.spec.template.metadata.labels), `and not the others`);
    const container = dep.spec.template.spec.containers[0];
    for (const p of svc.spec.ports) {
      assert.ok(
        container.ports.some((cp: Obj) => cp.name === p.targetPort),
        `targetPort ${p.targetPort}`,
      );
    }
    assert.equal(container.readinessProbe.httpGet.path, '/readyz');
    assert.equal(container.livenessProbe.httpGet.path, '/healthz');
    assert.equal(dep.spec.template.spec.securityContext.runAsNonRoot, true);
    assert.equal(find(ms, 'HorizontalPodAutoscaler', name).spec.scaleTargetRef.name, name);
    assert.ok(selects(find(ms, 'PodDisruptionBudget', name).spec.selector.matchLabels, pods));
    // The file the container is started with is a key of the ConfigMap it mounts.
    const cfgKey = container.args[container.args.length - 1].split('/').pop();
    const mount = container.volumeMounts.find((v: Obj) => v.name === 'config');
    assert.equal(mount.subPath, cfgKey);
    const cmName = dep.spec.template.spec.volumes.find((v: Obj) => v.name === 'config').configMap.name;
    assert.ok(find(ms, 'ConfigMap', cmName).data[cfgKey]);
  }
});

test('the gateway config files pass the config validation, and the edge reaches the core Service', async () => {
  const ms = await render({ nats: { urls: ['nats://nats:4222'] }, regions: ['eu', 'us'] });
  const edge = configOf(ms, 'gw-mcpgw-config', 'edge.yaml');
  const core = configOf(ms, 'gw-mcpgw-config', 'core.yaml');
  assert.equal(edge.role, 'edge');
  assert.equal(core.role, 'core');
  assert.equal(edge.redis?.url, env.REDIS_URL);
  assert.equal(core.store.url, env.STORE_URL);
  assert.deepEqual(core.federation?.natsUrls, ['nats://nats:4222']);
  assert.deepEqual(core.federation?.regions, ['eu', 'us']);
  assert.deepEqual(
    core.servers.map((s) => s.name),
    ['everything'],
  );
  const url = new URL(edge.cores[0]!.url);
  const coreSvc = find(ms, 'Service', url.hostname);
  assert.equal(coreSvc.spec.ports[0].port, Number(url.port));
  assert.equal(edge.cores[0]!.id, core.internal.id, 'the edge addresses its tokens to the core');
  // The key files the configs name are keys of the Secret, mounted where the configs look.
  const secret = find(
    await render({
      secrets: { internalSigningKey: 'k', internalSigningPublicKey: 'p', backendHmacKey: 'h' },
    }),
    'Secret',
    'gw-mcpgw',
  );
  for (const file of [
    edge.internal.signingKey!,
    core.internal.trustedKeys[0]!,
    core.backendIdentity.hmacKeyFile!,
  ]) {
    assert.ok(file.startsWith('/etc/mcpgw/secrets/'), file);
    assert.ok(file.split('/').pop()! in secret.stringData, `${file} in the Secret`);
  }
});

test('options on: TLS, ServiceMonitor, metrics token, sidecar example; an existing Secret', async () => {
  const ms = await render({
    ingress: { tls: { enabled: true }, className: 'nginx' },
    serviceMonitor: { enabled: true, labels: { release: 'prom' } },
    metrics: { bearerToken: true },
    secrets: { metricsToken: 's3cret' },
    nats: { urls: ['nats://nats:4222'] },
    sidecar: { enabled: true },
  });
  validateAll(ms);
  const ing = find(ms, 'Ingress', 'gw-mcpgw');
  assert.deepEqual(ing.spec.tls, [{ hosts: ['*.example.com'], secretName: 'gw-mcpgw-tls' }]);
  assert.equal(ing.spec.ingressClassName, 'nginx');

  const sm = find(ms, 'ServiceMonitor', 'gw-mcpgw');
  assert.equal(sm.metadata.labels.release, 'prom');
  for (const role of ['edge', 'core']) {
    const svc = find(ms, 'Service', `gw-mcpgw-${role}`);
    assert.ok(selects(sm.spec.selector.matchLabels, svc.metadata.labels), `scrapes the ${role} Service`);
    assert.ok(svc.spec.ports.some((p: Obj) => p.name === sm.spec.endpoints[0].port));
  }
  assert.equal(sm.spec.endpoints[0].authorization.credentials.key, 'metrics-token');
  assert.equal(find(ms, 'Secret', 'gw-mcpgw').stringData['metrics-token'], 's3cret');
  assert.equal(configOf(ms, 'gw-mcpgw-config', 'core.yaml').telemetry.metrics.bearerToken, env.METRICS_TOKEN);
  // Prometheus may now scrape the cores too (a second rule, from its namespace only).
  const np = find(ms, 'NetworkPolicy', 'gw-mcpgw-core');
  assert.deepEqual(np.spec.ingress[1].from, [
    { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } },
  ]);

  const sc = find(ms, 'Deployment', 'gw-mcpgw-sidecar-example');
  const names = sc.spec.template.spec.containers.map((c: Obj) => c.name);
  assert.deepEqual(names, ['app', 'mcpgw']);
  const single = configOf(ms, 'gw-mcpgw-sidecar-config', 'mcpgw.yaml');
  assert.equal(single.role, 'single');
  assert.equal(
    (single.servers[0] as { url?: string }).url,
    'http://127.0.0.1:3000/mcp',
    'the app, over localhost',
  );
  assert.deepEqual(single.federation?.natsUrls, ['nats://nats:4222']);
  assert.ok(
    selects(find(ms, 'Service', 'gw-mcpgw-sidecar-example').spec.selector, sc.spec.template.metadata.labels),
  );

  const ext = await render({ secrets: { existingSecret: 'vault-mcpgw' } });
  validateAll(ext);
  assert.ok(!ext.some((m) => m.object.kind === 'Secret'));
  const vol = find(ext, 'Deployment', 'gw-mcpgw-core').spec.template.spec.volumes.find(
    (v: Obj) => v.name === 'secrets',
  );
  assert.equal(vol.secret.secretName, 'vault-mcpgw');
});

test('a broken template makes the render fail, naming the file', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mcpgw-chart-'));
  try {
    cpSync(defaultChartDir, dir, { recursive: true });
    await renderChart({ chartDir: dir }); // the copy renders
    writeFileSync(join(dir, 'templates', 'service-edge.yaml'), 'kind: Service\nname: {{ if .Values.x }}\n');
    await assert.rejects(renderChart({ chartDir: dir }), /templates\/service-edge\.yaml/);
    // A template that renders but is not YAML fails too.
    writeFileSync(join(dir, 'templates', 'service-edge.yaml'), 'kind: Service\n  bad: [indent\n');
    await assert.rejects(renderChart({ chartDir: dir }), /templates\/service-edge\.yaml/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('NOTES.txt names the hosts, and warns when the edges would have no signing key', async () => {
  const bare = await renderNotes({ namespace: 'mcp', values: { domain: 'acme.io' } });
  assert.match(bare, /https:\/\/\{service\}-mcp\.acme\.io\/mcp/);
  assert.match(bare, /WARNING: no secrets\.existingSecret/);
  assert.match(bare, /rollout status deploy\/mcpgw-edge/);
  const ok = await renderNotes({ values: { secrets: { existingSecret: 'keys' } } });
  assert.doesNotMatch(ok, /WARNING/);
});
