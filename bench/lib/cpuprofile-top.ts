/**
 * Summarise V8 CPU profiles (`node --cpu-prof`): the functions with the most self time, time by
 * origin, and every function of Corral's packages (packages/listener, packages/websocket) with its
 * self and total time.
 *
 *   node_modules/.bin/tsx bench/lib/cpuprofile-top.ts [--top 10] [--windows W.json [--scenario S]] PROFILE.cpuprofile...
 *
 * With `--windows` (the `windows.json` that `tcp-echo --cpu-prof DIR` and `ws-echo --cpu-prof DIR` write next to the
 * profiles), only samples taken during that server's measured passes count, optionally of one
 * scenario: start-up, warm-up and the other server's passes drop out. The server is named by the
 * profile's file name (`corral.cpuprofile`, `raw.cpuprofile`, `ws.cpuprofile`).
 *
 * Self time of a sample is the time until the next sample, as the Chrome DevTools count it.
 * Percentages are of the busy time: everything but `(idle)`.
 *
 * TypeScript run through tsx is compiled to a single line, so the profile has no line numbers for
 * it; the line shown for such a function is that of the first declaration of its name in the
 * source file (anonymous functions get the file alone).
 */

import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface FunctionTime {
  name: string;
  where: string;
  origin: string;
  selfUs: number;
  totalUs: number;
}

export interface ProfileSummary {
  busyUs: number;
  idleUs: number;
  functions: FunctionTime[];
  byOrigin: Map<string, number>;
}

const root = new URL('../../', import.meta.url).href;

function origin(url: string, name: string): string {
  if (url === '') return name.startsWith('(') ? name : '(native)';
  if (url.includes('/packages/listener/')) return 'packages/listener';
  if (url.includes('/packages/websocket/')) return 'packages/websocket';
  if (url.includes('/bench/')) return 'bench';
  if (url.startsWith('node:')) return 'node';
  if (url.includes('/node_modules/')) return 'node_modules';
  return 'other';
}

function shortUrl(url: string): string {
  return url.startsWith(root) ? url.slice(root.length) : url;
}

const sources = new Map<string, string[] | undefined>();

function sourceLines(url: string): string[] | undefined {
  if (!sources.has(url)) {
    let lines: string[] | undefined;
    try {
      lines = readFileSync(fileURLToPath(url), 'utf8').split('\n');
    } catch {
      lines = undefined;
    }
    sources.set(url, lines);
  }
  return sources.get(url);
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** `file:line` of a frame; for code compiled to one line, the line declaring the function's name. */
function location(frame: CallFrame): string {
  if (frame.url === '') return '';
  const file = shortUrl(frame.url);
  if (frame.lineNumber > 0 || !frame.url.startsWith('file:') || !/\.[cm]?tsx?$/.test(frame.url)) return `${file}:${frame.lineNumber + 1}`;
  const name = frame.functionName;
  const lines = name === '' ? undefined : sourceLines(frame.url);
  if (lines === undefined) return file;
  const n = escapeRegExp(name);
  const declaration = new RegExp(
    `(?:\\bfunction\\s+${n}\\b|\\bclass\\s+${n}\\b|^\\s*(?:(?:public|private|static|async|get|set|readonly)\\s+)*${n}\\s*[(<]|\\b(?:const|let)\\s+${n}\\s*=|^\\s*${n}\\s*=)`,
  );
  const i = lines.findIndex((l) => declaration.test(l));
  return i === -1 ? file : `${file}:${i + 1}`;
}

/** A measured pass: `[startUs, endUs]` on the monotonic clock of the profile's timestamps. */
export interface Window {
  scenario: string;
  peer: string;
  startUs: number;
  endUs: number;
}

export function summarize(profile: CpuProfile, windows?: Window[]): ProfileSummary {
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const node of profile.nodes) {
    byId.set(node.id, node);
    for (const child of node.children ?? []) parent.set(child, node.id);
  }
  const key = (f: CallFrame): string => `${f.functionName}\u0000${f.url}\u0000${f.lineNumber}`;
  const fns = new Map<string, FunctionTime>();
  let busyUs = 0;
  let idleUs = 0;
  const { samples, timeDeltas } = profile;
  let t = profile.startTime;
  for (let i = 0; i < samples.length; i++) {
    t += timeDeltas[i] ?? 0;
    if (windows !== undefined && !windows.some((w) => t >= w.startUs && t < w.endUs)) continue;
    const node = byId.get(samples[i]!);
    if (node === undefined) continue;
    const dt = i + 1 < timeDeltas.length ? timeDeltas[i + 1]! : 0;
    if (node.callFrame.functionName === '(idle)') {
      idleUs += dt;
      continue;
    }
    busyUs += dt;
    // Self time to the sampled frame; total time once to every distinct function on its stack.
    const seen = new Set<string>();
    for (let id: number | undefined = node.id, first = true; id !== undefined; id = parent.get(id), first = false) {
      const frame = byId.get(id)!.callFrame;
      if (frame.functionName === '(root)') break;
      const k = key(frame);
      let fn = fns.get(k);
      if (fn === undefined) {
        const name = frame.functionName || '(anonymous)';
        const where = location(frame);
        fn = { name, where, origin: origin(frame.url, name), selfUs: 0, totalUs: 0 };
        fns.set(k, fn);
      }
      if (first) fn.selfUs += dt;
      if (!seen.has(k)) {
        seen.add(k);
        fn.totalUs += dt;
      }
    }
  }
  const byOrigin = new Map<string, number>();
  for (const fn of fns.values()) byOrigin.set(fn.origin, (byOrigin.get(fn.origin) ?? 0) + fn.selfUs);
  return { busyUs, idleUs, functions: [...fns.values()], byOrigin };
}

function pct(part: number, whole: number): string {
  return whole === 0 ? '-' : `${((part / whole) * 100).toFixed(1)}%`;
}

function ms(us: number): string {
  return (us / 1000).toFixed(1);
}

export function report(file: string, s: ProfileSummary, top: number): string {
  const out: string[] = [];
  out.push(`## ${file}`, '', `busy ${ms(s.busyUs)} ms, idle ${ms(s.idleUs)} ms`, '');
  out.push(`Top ${top} by self time:`, '', '| # | function | where | self ms | self % of busy |', '| --- | --- | --- | --- | --- |');
  const bySelf = [...s.functions].sort((a, b) => b.selfUs - a.selfUs).slice(0, top);
  bySelf.forEach((f, i) => out.push(`| ${i + 1} | ${f.name} | ${f.where || '(native)'} | ${ms(f.selfUs)} | ${pct(f.selfUs, s.busyUs)} |`));
  out.push('', 'Self time by origin:', '', '| origin | self ms | % of busy |', '| --- | --- | --- |');
  for (const [o, us] of [...s.byOrigin].filter(([, us]) => us > 0).sort((a, b) => b[1] - a[1])) out.push(`| ${o} | ${ms(us)} | ${pct(us, s.busyUs)} |`);
  const listener = s.functions.filter((f) => f.origin.startsWith('packages/')).sort((a, b) => b.totalUs - a.totalUs);
  const shown = Math.max(top, 15);
  out.push('', 'packages/listener and packages/websocket functions (by total time):', '', '| function | where | self ms | total ms | total % of busy |', '| --- | --- | --- | --- | --- |');
  for (const f of listener.slice(0, shown)) out.push(`| ${f.name} | ${f.where || '(anonymous)'} | ${ms(f.selfUs)} | ${ms(f.totalUs)} | ${pct(f.totalUs, s.busyUs)} |`);
  if (listener.length === 0) out.push('| (none sampled) | | | | |');
  if (listener.length > shown) out.push(`| ... ${listener.length - shown} more | | | | |`);
  return out.join('\n');
}

function main(): void {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { top: { type: 'string', default: '10' }, windows: { type: 'string' }, scenario: { type: 'string' } },
  });
  const top = Number(values.top);
  if (positionals.length === 0 || !Number.isInteger(top) || top < 1) {
    process.stderr.write('usage: cpuprofile-top.ts [--top N] [--windows W.json [--scenario S]] PROFILE.cpuprofile...\n');
    process.exit(2);
  }
  const windows = values.windows === undefined ? undefined : (JSON.parse(readFileSync(values.windows, 'utf8')) as Window[])
    .filter((w) => values.scenario === undefined || w.scenario === values.scenario);
  for (const file of positionals) {
    const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
    let mine: Window[] | undefined;
    let title = file;
    if (windows !== undefined) {
      const peer = basename(file, '.cpuprofile');
      mine = windows.filter((w) => w.peer === peer);
      if (mine.length === 0) throw new Error(`no measured pass of ${peer} in ${values.windows}`);
      title += ` (${mine.length} measured passes${values.scenario === undefined ? '' : ` of ${values.scenario}`})`;
    }
    process.stdout.write(`${report(title, summarize(profile, mine), top)}\n\n`);
  }
}

main();
