import type { InjectionToken } from 'tsyringe';
import type { Logger } from './logger.js';

/** DI tokens of the services a kvfold container holds. Override them to customise an instance. */
export const TOKENS = {
  /** The instance's {@link Logger}. */
  Logger: Symbol.for('kvfold.Logger') as InjectionToken<Logger>,
} as const;
