/**
 * The ONNX graph builder lives in `@kvfold/onnx-graph` (shared with the decoder exporter); the kernels
 * keep importing it from here.
 * @module
 */
export * from '@kvfold/onnx-graph';
