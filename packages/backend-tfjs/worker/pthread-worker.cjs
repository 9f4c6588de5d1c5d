// The Node worker of one Emscripten pthread of tfjs-backend-wasm's threaded build (see src/wasm/threaded.ts).
// tfjs ships the worker's program as a string and, in a browser, starts it from a blob: URL, which Node's
// Worker refuses; this file runs that same program. Its "\n" escapes were turned into newlines by the template
// literal that holds it, so they are put back first (as tfjs does before making its blob).
'use strict';
// eslint-disable-next-line @typescript-eslint/no-require-imports -- a CommonJS file: Node runs it as each pthread's worker.
const { wasmWorkerContents } = require('@tensorflow/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm-threaded-simd.worker.js');
new Function('require', '__filename', wasmWorkerContents.replace(/\n/g, '\\n'))(require, __filename);
