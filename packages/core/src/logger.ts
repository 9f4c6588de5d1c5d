/** Minimal structured logger a host application can route anywhere. */
export interface Logger {
  /** Fine-grained detail (per call decisions). */
  debug(message: string, fields?: Record<string, unknown>): void;
  /** Notable events (engine chosen, plugin loaded). */
  info(message: string, fields?: Record<string, unknown>): void;
  /** Something degraded but work continues (fallback taken). */
  warn(message: string, fields?: Record<string, unknown>): void;
}

/** A logger that drops everything; the default, so libraries stay quiet unless asked. */
export const silentLogger: Logger = { debug() {}, info() {}, warn() {} };

/** A logger writing `level message {fields}` lines to stderr, at or above `level`. */
export function consoleLogger(level: 'debug' | 'info' | 'warn' = 'info'): Logger {
  const order = { debug: 0, info: 1, warn: 2 } as const;
  const write = (l: keyof typeof order) => (message: string, fields?: Record<string, unknown>) => {
    if (order[l] < order[level]) return;
    process.stderr.write(`[kvfold] ${l} ${message}${fields ? ' ' + JSON.stringify(fields) : ''}\n`);
  };
  return { debug: write('debug'), info: write('info'), warn: write('warn') };
}
