import { Command, CommanderError, Option } from 'commander';
import { DEMO_SUMMARY, PRESET_NAMES, SUITE_NAMES, presetSampleSizes } from '@kvfold/bench';
import { benchCommand, type BenchOptions } from './commands/bench.js';
import { fuzzCommand, type FuzzCommandOptions } from './commands/fuzz.js';
import { generateCommand, type GenerateCommandOptions } from './commands/generate.js';
import { listCommand } from './commands/list.js';
import { exportOnnxCommand, exposeAttentionCommand, type ExportOnnxCommandOptions } from './commands/onnx.js';
import { schemaCommand } from './commands/schema.js';
import { validateCommand } from './commands/validate.js';
import { EXIT, exitCodeFor, formatError } from './errors.js';
import { commandName, list, processIO, type CliIO } from './io.js';

/** The package version, shown by `kvfold --version`. */
export const VERSION = '0.1.0';

/** The line `kvfold demo` prints before it starts: what it runs and how long it takes. */
export function demoIntro(preset: string): string {
  const what = preset === 'demo' ? DEMO_SUMMARY : `kvfold demo runs the benchmark's "${preset}" preset on the embedded model`;
  return `${what}. Ctrl-C stops after the current item; the run folder resumes.`;
}

/** The line `kvfold demo` prints after the intro: its accuracies are a smoke test, with their n. */
export function demoSmokeNote(preset: string): string {
  const sizes = (PRESET_NAMES as readonly string[]).includes(preset) ? presetSampleSizes(preset as (typeof PRESET_NAMES)[number]) : 'see the report';
  return `Its accuracies are a smoke test, not results (${sizes}; 95% intervals in report.md); bench/RESULTS.md has the default sweep's figures.`;
}

/** Build the commander program; each action stores its exit code in `result.code`. */
export function createProgram(io: CliIO, result: { code: number }, argv: readonly string[]): Command {
  const program = new Command('kvfold')
    .description('Benchmark KV-cache compression policies, validate configs, list plugins and generate text with a compressed cache.')
    .version(VERSION)
    .option('--debug', 'print stack traces of errors')
    .option('--plugins <packages>', 'comma-separated plugin packages to load (list, schema, generate)')
    .showHelpAfterError(`(run ${commandName()} --help for usage)`)
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.stdout.write(s), writeErr: (s) => io.stderr.write(s) });
  const plugins = (): string[] => {
    const p = program.opts<{ plugins?: string }>().plugins;
    return p ? list(p) : [];
  };
  const command = `kvfold ${argv.join(' ')}`.trim();
  const bench = (name: string, description: string) =>
    program
      .command(name)
      .description(description)
      .option('--config <file>', 'JSON config (see kvfold schema); default: the default sweep')
      .addOption(new Option('--preset <name>', 'built-in config instead of --config').choices([...PRESET_NAMES]))
      .option('--suite <names>', `comma-separated suites to run: ${SUITE_NAMES.join(', ')}`)
      .option('--policy <names>', 'comma-separated policies (names or labels of the sweep); full is added as the reference row')
      .option('--budget <ratios>', 'comma-separated budget ratios in (0, 1]')
      .option('--model <folder>', '"embedded" or a Hugging Face model folder')
      .option('--runtime <names>', 'comma-separated runtimes executing the model: tfjs (default), transformers.js (needle and decode-speed rows side by side)')
      .option('--out <dir>', 'folder of run folders (default bench/runs)')
      .option('--id <id>', 'run id: the run folder under --out; an existing folder is resumed')
      .option('--resume <dir>', 'resume an interrupted run folder with its stored config')
      .option('--quiet', 'no progress output (the summary table is still printed)')
      .option('--jsonl', 'progress as JSON lines on stdout (for CI)')
      .option('--update-results <file>', 'after a complete run, replace the benchmark section of this results file (bench/RESULTS.md)');
  bench('bench', 'run benchmark suites over every policy x budget and write a run folder (config.json, metrics.json, predictions.jsonl, report.md, plots/)').action(async (o: BenchOptions) => {
    result.code = await benchCommand(o, io, command);
  });
  program
    .command('demo')
    .description('the benchmark\'s short sweep on the embedded model (1 to 3 minutes on 2 cores); prints the summary table with a legend and the report and plots paths (--preset smoke: seconds)')
    .addOption(new Option('--preset <name>', 'which sweep').choices([...PRESET_NAMES]).default('demo'))
    .option('--out <dir>', 'folder of run folders (default bench/runs)')
    .option('--quiet', 'no progress output')
    .option('--jsonl', 'progress as JSON lines on stdout')
    .action(async (o: Pick<BenchOptions, 'out' | 'quiet' | 'jsonl' | 'preset'>) => {
      if (!o.quiet && !o.jsonl) io.stderr.write(`${demoIntro(o.preset ?? 'demo')}\n${demoSmokeNote(o.preset ?? 'demo')}\n`);
      result.code = await benchCommand({ ...o }, io, command);
    });
  program
    .command('validate')
    .description('validate a config file (runtime or benchmark) against the composed schema; imports nothing unless --load-plugins')
    .argument('<config>', 'JSON config file')
    .option('--load-plugins', "import the plugin packages the config lists (from this project's node_modules) and check their options")
    .action(async (file: string, o: { loadPlugins?: boolean }) => {
      result.code = await validateCommand(file, io, { loadPlugins: o.loadPlugins === true });
    });
  program
    .command('fuzz')
    .description('fuzz every policy on several backends with well-formed and hostile inputs; counts untyped errors, non-finite outputs, backend disagreements (exit 1 when any)')
    .option('--cases <n>', 'number of cases', '500')
    .option('--seed <n>', 'seed of the first case (case i uses seed + i)', '1')
    .option('--backends <labels>', 'comma-separated: reference, tfjs, onnx, onnx-native (the first is the reference)', 'reference,tfjs,onnx')
    .option('--policies <names>', 'comma-separated policies (default: every registered one)')
    .option('--json', 'the report as JSON on stdout')
    .option('--quiet', 'no progress lines')
    .option('--update-results <file>', 'replace the fuzz section of this results file (bench/RESULTS.md)')
    .action(async (o: FuzzCommandOptions) => {
      result.code = await fuzzCommand(o, io, command);
    });
  program
    .command('list')
    .description('registered policies, backends and plugins, with their option schemas')
    .option('--json', 'machine-readable output')
    .action(async (o: { json?: boolean }) => {
      result.code = await listCommand(o.json === true, plugins(), io);
    });
  program
    .command('schema')
    .description('write the composed kvfold.schema.json (policies, backends, bench section)')
    .option('--out <file>', 'output file, "-" for stdout', 'kvfold.schema.json')
    .action(async (o: { out: string }) => {
      result.code = await schemaCommand(o.out, plugins(), io);
    });
  program
    .command('generate')
    .description('generate text from a model folder with a compressed cache; prints tokens/s and cache bytes')
    .requiredOption('--model <folder>', 'Hugging Face model folder (config.json, safetensors, tokenizer.json) or "embedded"')
    .requiredOption('--prompt <text>', 'prompt text')
    .option('--policy <name>', 'cache policy (default: none, the full cache)')
    .option('--options <json>', 'policy options as JSON')
    .option('--budget <ratio>', 'budget ratio in (0, 1] (default 0.5 with a policy)')
    .option('--max-tokens <n>', 'most tokens to generate', '64')
    .option('--temperature <t>', '0 = greedy', '0')
    .option('--seed <n>', 'seed of sampling and of the policy', '0')
    .addOption(new Option('--engine <engine>', 'tfjs engine').choices(['auto', 'wasm', 'cpu', 'tensorflow']).default('auto'))
    .action(async (o: GenerateCommandOptions) => {
      result.code = await generateCommand({ ...o, plugins: plugins() }, io);
    });
  program
    .command('export-onnx')
    .description('export a checkpoint (Llama, Mistral, Qwen2 folder or "embedded") to an ONNX decoder folder transformers.js loads, with attention_sums outputs for kvfold policies')
    .argument('<checkpoint>', 'Hugging Face checkpoint folder (config.json + safetensors) or "embedded"')
    .argument('<out>', 'output folder (onnx/model.onnx, config.json, generation_config.json, tokenizer files)')
    .addOption(new Option('--group-reduction <r>', 'GQA reduction of attention_sums').choices(['mean', 'max', 'sum']).default('mean'))
    .option('--proportional', 'also write onnx/model_proportional.onnx with past_log_counts inputs (proportional attention)')
    .addOption(new Option('--external-data <when>', 'weights in onnx/model.onnx_data').choices(['auto', 'true', 'false']).default('auto'))
    .option('--no-attention-sums', 'leave out the attention_sums outputs')
    .option('--force', 'replace an existing export in <out>')
    .action(async (checkpoint: string, out: string, o: ExportOnnxCommandOptions) => {
      result.code = await exportOnnxCommand(checkpoint, out, o, io);
    });
  program
    .command('onnx')
    .description('tools for third-party ONNX decoders')
    .command('expose-attention')
    .description('add attention_sums.{i} outputs to a decoder graph with plain MatMul/Softmax attention (Optimum layout); fused attention ops are refused by name')
    .argument('<model>', 'input model.onnx')
    .argument('<out>', 'output .onnx (external data is copied next to it when it goes to another folder)')
    .addOption(new Option('--group-reduction <r>', 'GQA reduction of attention_sums').choices(['mean', 'max', 'sum']).default('mean'))
    .action(async (model: string, out: string, o: { groupReduction?: string }) => {
      result.code = await exposeAttentionCommand(model, out, o, io);
    });
  return program;
}

/**
 * Run the kvfold command line with `argv` (the arguments after `kvfold`) and return the exit code:
 * 0 success, 1 failure, 2 bad input (config, option, suite, budget, model folder, plugin), 130 interrupted.
 * Errors print one clear line; the stack only with --debug.
 */
export async function main(argv: readonly string[], io: CliIO = processIO()): Promise<number> {
  const result = { code: EXIT.ok as number };
  const program = createProgram(io, result, argv);
  const debug = argv.includes('--debug');
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return result.code;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? EXIT.ok : EXIT.usage;
    io.stderr.write(`${formatError(e, debug)}\n`);
    return exitCodeFor(e);
  }
}
