/**
 * The Node flags of acceptor worker processes: this process's own, less those a worker must not
 * inherit (an inspector port it would fight over, watch mode, code to evaluate), plus a
 * TypeScript loader when a module the workers import is TypeScript.
 */

import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

/** Flags dropped, with the flags among them that take their value as the next argument. */
const DROPPED = /^--(inspect|inspect-brk|inspect-wait|inspect-port|debug-port|inspect-publish-uid|watch|watch-path|watch-preserve-output|eval|print|input-type)(=|$)|^-[ep]$/;
const TAKES_VALUE = /^(--(inspect-port|debug-port|inspect-publish-uid|watch-path|eval|print|input-type)|-[ep])$/;

const TS_MODULE = /\.(ts|mts|cts|tsx)$/i;

/** Whether the flags already load tsx (as `tsx script.ts` and `node --import tsx` do). */
function loadsTsx(argv: readonly string[]): boolean {
  return argv.some((a) => /(^|[\\/=])tsx([\\/@]|$)/.test(a));
}

/** tsx's loader, resolved from the modules the worker imports first, then from this package. */
function findTsx(modules: readonly string[]): string | undefined {
  const bases = [...modules.filter((m) => m.startsWith('file:')), import.meta.url, pathToFileURL(`${process.cwd()}/`).href];
  for (const base of bases) {
    try {
      return pathToFileURL(createRequire(base).resolve('tsx')).href;
    } catch {
      // Not from there.
    }
  }
  return undefined;
}

/**
 * This process's `execArgv` fit for a worker that imports `modules` (URLs, or bare package
 * names): `--import <tsx>` is added when one of them is a TypeScript file and tsx is installed.
 */
export function defaultWorkerExecArgv(modules: readonly string[], execArgv: readonly string[] = process.execArgv): string[] {
  const out: string[] = [];
  for (let i = 0; i < execArgv.length; i++) {
    const arg = execArgv[i]!;
    if (DROPPED.test(arg)) {
      if (TAKES_VALUE.test(arg)) i++;
      continue;
    }
    out.push(arg);
  }
  if (modules.some((m) => TS_MODULE.test(m.split(/[?#]/)[0]!)) && !loadsTsx(out)) {
    const tsx = findTsx(modules);
    if (tsx !== undefined) out.push('--import', tsx);
  }
  return out;
}
