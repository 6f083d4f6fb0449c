/**
 * Token counts of tool results in /metrics: `mcpgw_tool_result_tokens` (a histogram by server and tool,
 * its _sum the total) grows by exactly the o200k_base token count of each result a client got, through
 * the official SDK client; refused calls count nothing; tool labels stay bounded (maxToolLabels).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { countTokens } from 'gpt-tokenizer/encoding/o200k_base';
import type { RunningNode } from '../../cli/single.js';
import { raw, startGateway } from '../helpers/gateway.js';
import { ROOT } from '../helpers/net.js';
import { parseMetrics, valueOf } from '../helpers/prometheus.js';
import { connectSdk, type SdkClient } from '../helpers/sdk-clients.js';

const METRIC = 'mcpgw_tool_result_tokens';

describe('tool result tokens in the metrics', () => {
  let gw: RunningNode;
  let client: SdkClient;

  before(async () => {
    gw = await startGateway({
      telemetry: { metrics: { maxToolLabels: 2 } },
      servers: [
        {
          name: 'alpha',
          transport: 'stdio',
          command: process.execPath,
          args: [`${ROOT}dist/test/fixtures/scripted-server.js`],
          env: { FIXTURE_CATALOG: JSON.stringify({ tools: ['echo', 'b', 'c'] }) },
        },
      ],
    });
    client = await connectSdk('v2', `${gw.url}/mcp`);
  });
  after(async () => {
    await client?.close();
    await gw?.close();
  });

  const scrape = async () => {
    const r = await raw(`${gw.url}/metrics`, { method: 'GET' });
    assert.equal(r.status, 200, r.text);
    return parseMetrics(r.text);
  };
  const textOf = (r: { content?: unknown }) =>
    (r.content as { type: string; text: string }[]).map((c) => c.text).join('');

  test('each result adds its token count; the histogram has the type, help and buckets', async () => {
    const first = await client.callTool({ name: 'alpha__echo', arguments: { text: 'hello tokens' } });
    const second = await client.callTool({
      name: 'alpha__echo',
      arguments: { text: 'a longer message, '.repeat(40) },
    });
    // A large result is counted after its answer is sent (the others at once): counted all the same.
    const third = await client.callTool({
      name: 'alpha__echo',
      arguments: { text: 'a much longer message, '.repeat(100) },
    });
    const expected = countTokens(textOf(first)) + countTokens(textOf(second)) + countTokens(textOf(third));
    assert.ok(expected > 400, `the results have tokens: ${expected}`);
    // Refused before any server: nothing counted.
    await assert.rejects(client.callTool({ name: 'alpha__nope', arguments: {} }));

    const r = await raw(`${gw.url}/metrics`, { method: 'GET' });
    assert.match(r.text, new RegExp(`# TYPE ${METRIC} histogram`));
    assert.match(r.text, new RegExp(`# HELP ${METRIC} Tokens \\(o200k_base\\)`));
    const s = parseMetrics(r.text);
    const labels = { server: 'alpha', tool: 'alpha__echo' };
    assert.equal(valueOf(s, `${METRIC}_sum`, labels), expected);
    assert.equal(valueOf(s, `${METRIC}_count`, labels), 3);
    assert.equal(valueOf(s, `${METRIC}_bucket`, { ...labels, le: '+Inf' }), 3);
    assert.equal(valueOf(s, `${METRIC}_bucket`, { ...labels, le: '16' }), 1, 'the short one is <= 16');
    assert.equal(valueOf(s, `${METRIC}_count`, { tool: 'alpha__nope' }), 0);
  });

  test('tool labels are bounded: past maxToolLabels, "other"', async () => {
    for (const name of ['alpha__b', 'alpha__c', 'alpha__pid']) await client.callTool({ name, arguments: {} });
    const s = await scrape();
    const tools = new Set(s.filter((x) => x.name === `${METRIC}_count`).map((x) => x.labels.tool));
    assert.ok(tools.has('other'), [...tools].join(','));
    assert.ok(tools.size <= 3, [...tools].join(','));
    assert.ok(valueOf(s, `${METRIC}_count`, { server: 'alpha', tool: 'other' }) >= 1);
  });
});
