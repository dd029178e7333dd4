/**
 * The documentation's code runs: every ```ts block of the README and the guides (except those
 * marked `no-run`) is written to test/.snippets/, type-checked with the project's compiler
 * settings, and imported as its own test. A snippet passes when it finishes without throwing and
 * leaves no registered listener behind.
 */

import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { info, stopListener } from '@corral/listener';

const root = fileURLToPath(new URL('..', import.meta.url));
const outDir = join(root, 'test', '.snippets');
const SOURCES = ['README.md', 'docs/guide.md', 'docs/websocket.md'];

interface Snippet {
  /** The markdown file, relative to the repository root. */
  source: string;
  /** 1-based line of the opening fence. */
  line: number;
  code: string;
  /** File name under test/.snippets/. */
  file: string;
}

/**
 * The ```ts blocks of a markdown text, with the line of their opening fence. Blocks whose info
 * string carries `no-run` are skipped; so is code inside other fences (```sh, ```text, ...).
 */
function extractSnippets(markdown: string): { line: number; code: string }[] {
  const lines = markdown.split('\n');
  const out: { line: number; code: string }[] = [];
  let open: { fence: string; line: number; keep: boolean; body: string[] } | undefined;
  lines.forEach((text, i) => {
    if (open === undefined) {
      const m = /^(`{3,}|~{3,})\s*([^`\s]*)(.*)$/.exec(text);
      if (m === null) return;
      const words = m[3]!.trim().split(/\s+/);
      open = { fence: m[1]!, line: i + 1, keep: m[2] === 'ts' && !words.includes('no-run'), body: [] };
      return;
    }
    if (text.trimEnd() === open.fence || (text.startsWith(open.fence) && /^[`~]*\s*$/.test(text))) {
      if (open.keep) out.push({ line: open.line, code: `${open.body.join('\n')}\n` });
      open = undefined;
      return;
    }
    open.body.push(text);
  });
  if (open !== undefined) throw new Error(`unclosed code fence at line ${open.line}`);
  return out;
}

function snippetsOf(source: string): Snippet[] {
  const stem = source.replace(/\.md$/, '').replace(/[^A-Za-z0-9]+/g, '_');
  return extractSnippets(readFileSync(join(root, source), 'utf8')).map(({ line, code }) => ({
    source, line, code, file: `${stem}-L${line}.ts`,
  }));
}

// Written at collection time, so each snippet can be a test of its own. Files are rewritten only
// when their content changed and stale ones removed, so a watching test runner is not retriggered.
const bySource = new Map(SOURCES.map((source) => [source, snippetsOf(source)] as const));
const all = [...bySource.values()].flat();
const files = new Map(all.map((s) => [s.file, s.code] as const));
files.set('tsconfig.json', `${JSON.stringify({
  extends: '../../tsconfig.base.json',
  compilerOptions: { noEmit: true, declaration: false, declarationMap: false, sourceMap: false },
  include: ['*.ts'],
}, null, 2)}\n`);
mkdirSync(outDir, { recursive: true });
for (const name of readdirSync(outDir)) {
  if (!files.has(name)) rmSync(join(outDir, name), { recursive: true, force: true });
}
for (const [name, content] of files) {
  const path = join(outDir, name);
  if (!existsSync(path) || readFileSync(path, 'utf8') !== content) writeFileSync(path, content);
}

/** Point a compiler diagnostic `file.ts(line,col)` at the markdown line it comes from. */
function mapDiagnostics(output: string): string {
  return output.replace(/([\w.-]+\.ts)\((\d+),(\d+)\)/g, (whole, file: string, line: string) => {
    const s = all.find((x) => x.file === file);
    return s === undefined ? whole : `${whole} [${s.source}:${s.line + Number(line)}]`;
  });
}

function run(cmd: string, args: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => { output += d; });
    child.stderr.setEncoding('utf8').on('data', (d: string) => { output += d; });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, output }));
  });
}

afterEach(async () => {
  // A failed snippet may leave listeners behind; do not let them break the next one.
  await Promise.all([...info().keys()].map((ref) => stopListener(ref).catch(() => {})));
});

describe('documentation snippets', () => {
  for (const [source, snippets] of bySource) {
    it(`${source} has runnable snippets`, () => {
      expect(snippets.length).toBeGreaterThan(0);
    });
  }

  it('type-check under the project settings', async () => {
    const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
    const { code, output } = await run(process.execPath, [tsc, '-p', join(outDir, 'tsconfig.json'), '--pretty', 'false']);
    expect(mapDiagnostics(output), 'tsc reported errors').toBe('');
    expect(code).toBe(0);
  }, 120_000);

  for (const s of all) {
    it(`${s.source}:${s.line} runs`, async () => {
      await import(pathToFileURL(join(outDir, s.file)).href);
      expect([...info().keys()], 'listeners left running').toEqual([]);
    });
  }
});
