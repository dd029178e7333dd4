import { pino } from 'pino';

/** The subset of a pino logger Corral calls. Any pino logger (or child) fits. */
export interface Logger {
  error(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
}

/** Library default: silent, so embedding Corral prints nothing unless asked to. */
export const silentLogger: Logger = pino({ level: 'silent' });

export function isLogger(value: unknown): value is Logger {
  if (typeof value !== 'object' || value === null) return false;
  const l = value as Record<string, unknown>;
  return typeof l.error === 'function' && typeof l.warn === 'function'
    && typeof l.info === 'function' && typeof l.debug === 'function';
}
