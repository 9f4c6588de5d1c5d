import { describe, expect, it } from 'vitest';
import { renderSvg } from '../src/index.js';

describe('plots', () => {
  it('renders a Vega-Lite spec to an SVG document headless', async () => {
    const svg = await renderSvg({
      file: 'x.svg',
      title: 'accuracy vs budget',
      spec: { data: { values: [{ b: 0.2, a: 0.1, p: 'h2o' }, { b: 0.5, a: 0.6, p: 'h2o' }] }, mark: 'line', encoding: { x: { field: 'b', type: 'quantitative' }, y: { field: 'a', type: 'quantitative' }, color: { field: 'p', type: 'nominal' } } },
    });
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg).toContain('accuracy vs budget');
    expect(svg).toContain('h2o');
    expect(svg.trim().endsWith('</svg>')).toBe(true);
  });
});
