/**
 * Corral's packages compiled the way they ship: each TypeScript file of packages/listener/src and
 * packages/websocket/src compiled to one JavaScript module (ES2023, ESM, class fields and private
 * methods left native, as `tsc` emits them), so that a benchmark server can load the code users
 * run rather than the sources through the tsx loader.
 *
 * The difference matters for memory: tsx compiles with esbuild's `keepNames`, which wraps every
 * function expression in `__name(fn, "name")`, an `Object.defineProperty` on the function. A
 * class whose instances hold arrow functions in fields (a listener bound once per connection)
 * then gives every one of those functions its own property storage, about 300 bytes each.
 *
 * The modules are written to a temporary directory laid out as the repository is
 * (`<dir>/packages/<name>/src/*.js`, so CPU profiles still name `packages/websocket/...`), with
 * `@corral/listener` rewritten to the compiled listener and a `node_modules` link to the
 * repository's own, where `pino` and `bufferutil` are found.
 */

import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

interface Esbuild {
  transform(code: string, options: object): Promise<{ code: string }>;
}

const repo = fileURLToPath(new URL('../../', import.meta.url));
const PACKAGES = ['listener', 'websocket'] as const;

/** Compile both packages into a fresh temporary directory; `remove()` deletes it. */
export async function buildCorral(): Promise<{ dir: string; remove(): void }> {
  // esbuild comes with tsx, which the benchmarks already run under.
  const esbuild = createRequire(import.meta.resolve('tsx'))('esbuild') as Esbuild;
  const dir = mkdtempSync(join(tmpdir(), 'corral-build-'));
  const remove = (): void => rmSync(dir, { recursive: true, force: true });
  try {
    symlinkSync(join(repo, 'node_modules'), join(dir, 'node_modules'), 'dir');
    for (const pkg of PACKAGES) {
      const src = join(repo, 'packages', pkg, 'src');
      const out = join(dir, 'packages', pkg, 'src');
      mkdirSync(out, { recursive: true });
      for (const file of readdirSync(src).filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))) {
        const { code } = await esbuild.transform(readFileSync(join(src, file), 'utf8'), {
          loader: 'ts',
          format: 'esm',
          target: 'es2023',
          sourcefile: join(src, file),
          tsconfigRaw: { compilerOptions: { useDefineForClassFields: true, verbatimModuleSyntax: true } },
        });
        const linked = code.replace(/(from\s*|import\s*\(\s*)(["'])@corral\/listener\2/g, '$1$2../../listener/src/index.js$2');
        writeFileSync(join(out, file.replace(/\.ts$/, '.js')), linked);
      }
    }
    writeFileSync(join(dir, 'package.json'), '{ "type": "module", "private": true }\n');
  } catch (err) {
    remove();
    throw err;
  }
  return { dir, remove };
}
