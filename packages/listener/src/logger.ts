/** The subset of a pino logger Corral calls. Any pino logger (or child) fits. */
export interface Logger {
  error(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
}

function ignore(): void {}

/**
 * Library default: silent, so embedding Corral prints nothing unless asked to. A plain object,
 * not a silent pino instance: loading pino for nothing costs every process heap.
 */
// levelVal as pino has it for 'silent': worker processes forward nothing to it.
export const silentLogger: Logger & { readonly levelVal: number } = {
  error: ignore, warn: ignore, info: ignore, debug: ignore, levelVal: Infinity,
};

export function isLogger(value: unknown): value is Logger {
  if (typeof value !== 'object' || value === null) return false;
  const l = value as Record<string, unknown>;
  return typeof l.error === 'function' && typeof l.warn === 'function'
    && typeof l.info === 'function' && typeof l.debug === 'function';
}
