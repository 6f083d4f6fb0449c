/**
 * deploy/prometheus/mcpgw-rules.yaml is valid YAML in Prometheus's rule file shape, and every expression
 * names a metric the gateway exports (or a recording rule of the same file): no promtool here, so this is
 * the check that a renamed metric does not leave a silent alert behind.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { it } from 'node:test';
import { parse } from 'yaml';
import { GatewayMetrics } from '../../shared/telemetry/metrics.js';
import { ROOT } from '../helpers/net.js';

interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

it('alert rules parse and every expression names an exported metric', async () => {
  const doc = parse(readFileSync(`${ROOT}deploy/prometheus/mcpgw-rules.yaml`, 'utf8')) as {
    groups: { name: string; rules: Rule[] }[];
  };
  assert.ok(Array.isArray(doc.groups) && doc.groups.length > 0);
  const metrics = new GatewayMetrics({ region: 'r', maxTools: 1, maxTenants: 1 });
  const exported = new Set<string>();
  for (const m of await metrics.registry.getMetricsAsJSON()) {
    exported.add(m.name);
    if (String(m.type) === 'histogram')
      for (const s of ['_bucket', '_sum', '_count']) exported.add(m.name + s);
  }
  const recorded = new Set(doc.groups.flatMap((g) => g.rules.map((r) => r.record).filter(Boolean)));
  const alerts = new Set<string>();
  for (const g of doc.groups) {
    assert.equal(typeof g.name, 'string');
    for (const r of g.rules) {
      const name = r.alert ?? r.record;
      assert.ok(name && (r.alert === undefined) !== (r.record === undefined), 'alert or record, not both');
      assert.equal(typeof r.expr, 'string', `${name}: expr`);
      const names = [...r.expr.matchAll(/\b(mcpgw[:_][a-zA-Z0-9_:]*)/g)].map((m) => m[1]!);
      assert.ok(names.length > 0, `${name} mentions no mcpgw metric`);
      for (const n of names)
        assert.ok(exported.has(n) || recorded.has(n), `${name}: "${n}" is neither exported nor recorded`);
      if (r.for !== undefined) assert.match(r.for, /^\d+[smh]$/, `${name}: for`);
      if (r.alert) {
        alerts.add(r.alert);
        assert.ok(r.labels?.severity, `${r.alert}: severity label`);
        assert.ok(r.annotations?.summary, `${r.alert}: summary`);
      }
    }
  }
  for (const a of [
    'McpgwErrorBudgetFastBurn',
    'McpgwBreakerOpen',
    'McpgwRegionDown',
    'McpgwQuotaRefusalsSpike',
    'McpgwBackendDown',
  ])
    assert.ok(alerts.has(a), `${a} is defined`);
});
