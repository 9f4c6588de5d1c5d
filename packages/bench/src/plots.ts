import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import type { PlotSpec } from './suite.js';

/** Shared look of every figure (font sizes, background) so the report reads as one document. */
const THEME: Record<string, unknown> = {
  background: 'white',
  font: 'Helvetica, Arial, sans-serif',
  axis: { labelFontSize: 10, titleFontSize: 11 },
  legend: { labelFontSize: 10, titleFontSize: 11 },
  header: { labelFontSize: 11, titleFontSize: 11 },
};

/**
 * Render a Vega-Lite specification to an SVG document headless in Node: Vega-Lite compiles it to Vega,
 * and a Vega view with no renderer attached produces the SVG markup (text widths are estimated, as no
 * canvas is installed).
 */
export async function renderSvg(plot: PlotSpec): Promise<string> {
  const spec = { $schema: 'https://vega.github.io/schema/vega-lite/v6.json', title: plot.title, config: THEME, ...plot.spec } as unknown as TopLevelSpec;
  const { spec: compiled } = compile(spec);
  const view = new vega.View(vega.parse(compiled), { renderer: 'none', logLevel: vega.Error });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}
