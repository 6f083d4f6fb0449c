/**
 * The benchmark harness in a tiny configuration (`--quick`: a fraction of a second per point), so that
 * `npm run bench` cannot rot between the runs that measure for real: the sections run, the report has its
 * summary table and the PNG charts are real images.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { barChartPng } from '../../bench/chart.js';
import { ROOT } from '../helpers/net.js';

const ALL = `${ROOT}dist/bench/all.js`;

function run(args: string[], timeoutMs = 240_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [ALL, ...args],
      { cwd: ROOT, timeout: timeoutMs, maxBuffer: 32 << 20 },
      (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

/** Width and height from a PNG's IHDR, after checking the signature and the chunk's type. */
function pngSize(buf: Buffer): { width: number; height: number } {
  assert.ok(buf.length > 33, `a PNG of ${buf.length} bytes`);
  assert.deepEqual(
    [...buf.subarray(0, 8)],
    [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a],
    'PNG signature',
  );
  assert.equal(buf.toString('latin1', 12, 16), 'IHDR');
  return { width: buf.readUInt32BE(16), height: buf.readUInt32BE(20) };
}

describe('npm run bench (quick)', () => {
  const out = mkdtempSync(join(tmpdir(), 'mcpgw-bench-smoke-'));
  after(() => rmSync(out, { recursive: true, force: true }));

  test(
    'overhead, tools/list, registry and quota sections write the summary table and PNG charts',
    { timeout: 300_000 },
    async () => {
      const r = await run(['--quick', '--only', 'overhead,toolslist,registry,quota', '--out', out]);
      assert.equal(r.code, 0, `exit ${r.code}\n${r.stderr.slice(-4000)}`);
      const md = readFileSync(join(out, 'results.md'), 'utf8');
      assert.match(md, /^# mcpgw benchmarks$/m);
      assert.match(md, /load average \(1, 5, 15 min\) [\d.]+, [\d.]+, [\d.]+ before/);
      assert.match(md, /^\| what \| target \| measured \| met \|$/m);
      // One summary row per figure, each with a number in it.
      assert.match(
        md,
        /^\| single node: p50 added over direct, c=1 .*\| [+-][\d.]+ ms; [\d.]+× direct's req\/s \|/m,
      );
      assert.match(md, /^\| vs mcp-proxy [\d.]+, same stdio backend, c=1: req\/s \| — \| [\d.]+× /m);
      assert.match(
        md,
        /^\| aggregated tools\/list, 10 servers × 5 tools, cached: first page \(50 tools\) \| ≤ 2 ms p50 \| p50 [\d.]+ ms/m,
      );
      assert.match(md, /^\| quota decisions against Redis, .*\| [\d,]+\/s; sequential p50 [\d.]+ ms/m);
      assert.match(
        md,
        /^\| registry change .* hears list_changed \(3 changes\) \| ≤ 100 ms \| p50 [\d.]+ ms, p99 [\d.]+ ms/m,
      );
      assert.doesNotMatch(md, /Sections that failed/);
      const json = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as {
        sections: Record<string, { ok: boolean }>;
        charts: string[];
      };
      assert.deepEqual(Object.keys(json.sections).sort(), ['overhead', 'quota', 'registry', 'toolslist']);
      for (const [name, s] of Object.entries(json.sections)) assert.equal(s.ok, true, name);
      for (const chart of [
        'overhead-p50',
        'overhead-throughput',
        'mcp-proxy',
        'toolslist',
        'quota',
        'federation',
      ]) {
        assert.ok(json.charts.includes(`charts/${chart}.png`), `${chart} in ${json.charts.join(', ')}`);
        assert.match(md, new RegExp(`!\\[${chart}\\]\\(charts/${chart}\\.png\\)`));
        const { width, height } = pngSize(readFileSync(join(out, 'charts', `${chart}.png`)));
        assert.ok(width >= 300 && height >= 200, `${chart}.png is ${width}x${height}`);
      }
    },
  );

  test('an unknown section is a usage error naming the sections', async () => {
    const r = await run(['--only', 'tiers,nonsense', '--out', out]);
    assert.equal(r.code, 2);
    assert.match(
      r.stderr,
      /unknown section "nonsense" \(sections: overhead, tiers, federation, toolslist, registry, sessions, quota\)/,
    );
  });

  test('a chart with nothing to draw says so', async () => {
    await assert.rejects(
      barChartPng({ title: 'empty', unit: 'ms', bars: [{ label: 'x', value: NaN }] }),
      /chart "empty": no finite value to draw/,
    );
  });
});
