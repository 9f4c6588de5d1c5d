/**
 * @packageDocumentation
 * kvfold benchmark: fidelity, needle (passkey heatmap + associative recall), perplexity and speed/memory
 * suites over every policy x budget, driven by a validated JSON config, with resumable run folders
 * (append-only predictions.jsonl), metrics.json, a Markdown report and SVG plots rendered with Vega-Lite.
 */
export * from './config.js';
export * from './metrics.js';
export * from './progress.js';
export * from './store.js';
export * from './model.js';
export * from './suite.js';
export * from './plots.js';
export * from './report.js';
export * from './run.js';
export * from './presets.js';
export * from './plugins.js';
export * from './results.js';
export * from './fuzz.js';
export { needleSuite, decodeSetting, type NeedleItem, type NeedleMetrics, type NeedleVariantMetrics, type NeedleCell, type NeedleTask, type NeedleTaskMetrics, type NeedleComparison } from './suites/needle.js';
export { fidelitySuite, type ContextError, type FidelityItem, type FidelityMetrics, type FidelityVariantMetrics } from './suites/fidelity.js';
export { perplexitySuite, type PerplexityItem, type PerplexityMetrics, type PerplexityVariantMetrics } from './suites/perplexity.js';
export { speedSuite, OVER_BUDGET, type DecodeRow, type ScalingCurve, type SpeedMetrics, type ThroughputItem, type StepItem, type DecodeItem, type ScalingItem } from './suites/speed.js';
export * from './peers.js';
export * from './stats.js';
export * from './full-cache.js';
