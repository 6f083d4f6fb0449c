/**
 * PNG bar charts of benchmark figures: a Vega-Lite spec compiled by `vega-lite`, rendered to SVG by
 * `vega` (headless, no canvas: text is measured by estimate), rasterised by `@resvg/resvg-js` (a prebuilt
 * binary from the npm registry, nothing compiled here). Text is set in the system's DejaVu Sans when present,
 * else in whatever sans-serif font the system has.
 */
import { Resvg } from '@resvg/resvg-js';
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';

export interface Bar {
  /** Where the bar stands on the category axis. */
  label: string;
  value: number;
  /** Bars of one label side by side, one colour per series (e.g. a concurrency or a percentile). */
  series?: string;
}

export interface BarChart {
  title: string;
  subtitle?: string;
  /** The value axis' title, with its unit. */
  unit: string;
  bars: Bar[];
  /** A dashed line across the chart, e.g. a target. */
  rule?: { value: number; label: string };
  /** Category order (default: first appearance). */
  order?: string[];
}

/** The chart as SVG text. */
export async function barChartSvg(c: BarChart): Promise<string> {
  const bars = c.bars.filter((b) => Number.isFinite(b.value));
  if (bars.length === 0) throw new Error(`chart "${c.title}": no finite value to draw`);
  const order = c.order ?? [...new Set(bars.map((b) => b.label))];
  const grouped = bars.some((b) => b.series !== undefined);
  const y = { field: 'value', type: 'quantitative' as const, title: c.unit };
  const barLayer = {
    mark: { type: 'bar' as const, tooltip: false },
    encoding: {
      x: {
        field: 'label',
        type: 'nominal' as const,
        sort: order,
        title: null,
        axis: { labelAngle: -30, labelLimit: 220 },
      },
      y,
      ...(grouped && {
        xOffset: { field: 'series', type: 'nominal' as const },
        color: { field: 'series', type: 'nominal' as const, title: null, legend: { orient: 'top' as const } },
      }),
    },
  };
  const textLayer = {
    mark: { type: 'text' as const, dy: -6, fontSize: 10 },
    encoding: {
      x: { field: 'label', type: 'nominal' as const, sort: order },
      y,
      ...(grouped && { xOffset: { field: 'series', type: 'nominal' as const } }),
      text: { field: 'text', type: 'nominal' as const },
    },
  };
  const layers: object[] = [barLayer, textLayer];
  if (c.rule) {
    layers.push({
      data: { values: [c.rule] },
      layer: [
        {
          mark: { type: 'rule', strokeDash: [6, 4], color: '#c0392b' },
          encoding: { y: { field: 'value', type: 'quantitative' } },
        },
        {
          mark: { type: 'text', align: 'right', dy: -6, color: '#c0392b', fontSize: 11 },
          encoding: {
            y: { field: 'value', type: 'quantitative' },
            x: { value: 'width' },
            text: { field: 'label' },
          },
        },
      ],
    });
  }
  const spec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: c.title, ...(c.subtitle && { subtitle: c.subtitle }), anchor: 'start' },
    width: Math.max(320, Math.min(900, order.length * (grouped ? 110 : 80))),
    height: 260,
    background: 'white',
    padding: 12,
    data: { values: bars.map((b) => ({ ...b, text: formatValue(b.value) })) },
    layer: layers,
    config: { font: 'DejaVu Sans', view: { stroke: null } },
  } as unknown as TopLevelSpec;
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** The chart as PNG bytes (twice the SVG's size, for legibility). */
export async function barChartPng(c: BarChart): Promise<Buffer> {
  const svg = await barChartSvg(c);
  const png = new Resvg(svg, {
    background: 'white',
    fitTo: { mode: 'zoom', value: 2 },
    font: { loadSystemFonts: true, defaultFontFamily: 'DejaVu Sans', sansSerifFamily: 'DejaVu Sans' },
  })
    .render()
    .asPng();
  return Buffer.from(png);
}

function formatValue(x: number): string {
  const a = Math.abs(x);
  if (a >= 1000) return Math.round(x).toLocaleString('en-US');
  if (a >= 100) return x.toFixed(0);
  if (a >= 10) return x.toFixed(1);
  return x.toFixed(a >= 1 ? 2 : 3);
}
