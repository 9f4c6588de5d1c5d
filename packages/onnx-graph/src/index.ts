/**
 * @packageDocumentation
 * kvfold's ONNX model builder on top of onnx-proto: named nodes with generated value names, model-local
 * functions for custom ops, initializers written inline or as external data, and model metadata. The ONNX
 * backend's kernels and the decoder exporter (`@kvfold/onnx-export`) are written with it.
 */
export * from './graph.js';
