/**
 * @packageDocumentation
 * The `kvfold` command line: `bench`, `demo`, `validate`, `fuzz`, `list`, `schema` and `generate`. The bin is
 * `dist/bin.js`; {@link main} runs the same program in-process (tests, embedding).
 */
export { main, createProgram, demoIntro, demoSmokeNote, VERSION } from './program.js';
export { EXIT, UsageError, exitCodeFor, formatError } from './errors.js';
export { commandName, processIO, readJsonFile, parseBudget, parsePositiveInt, list, type CliIO, type Sink } from './io.js';
export { benchCommand, applyOverrides, type BenchOptions, type ConfigDocument } from './commands/bench.js';
export { generateCommand, type GenerateCommandOptions } from './commands/generate.js';
export { listCommand, optionRows, type OptionRow } from './commands/list.js';
export { schemaCommand } from './commands/schema.js';
export { validateCommand, type ValidateOptions } from './commands/validate.js';
export { fuzzCommand, type FuzzCommandOptions } from './commands/fuzz.js';
