/** How every benchmark writes its figures: number formats and Markdown tables. */

import { availableParallelism, loadavg } from 'node:os';
import type { Ratio } from './rounds.js';

const KIB = 1024;

/** Three significant figures or so: a table cell. */
export function num(x: number): string {
  if (x >= 100) return Math.round(x).toLocaleString('en-US');
  if (x >= 10) return x.toFixed(1);
  return x.toFixed(2);
}

export const pct = (x: number): string => `${Math.round(x * 100)}%`;
/** A per-round ratio: its median and, in brackets, its range. */
export const ratio = (r: Ratio): string => `${r.median.toFixed(3)} (${r.min.toFixed(2)}–${r.max.toFixed(2)})`;
export const bytes = (x: number): string => `${num(x / KIB)} KiB`;
export const instr = (x: number): string => (x >= 1e6 ? `${(x / 1e6).toFixed(2)} M` : `${num(x / 1e3)} k`);

/** Operations per second, with `kDigits` decimals in thousands. */
export function ops(n: number, kDigits = 0): string {
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)} M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(kDigits)} k`;
  return n.toFixed(0);
}

export const line = (cells: string[]): string => `| ${cells.join(' | ')} |`;

/** A Markdown table, cells unpadded. */
export function table(header: string[], rows: string[][]): string {
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

/** A Markdown table padded to its columns, right-aligned from column `rightFrom` (the figures). */
export function alignedTable(rows: string[][], rightFrom: number): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  const row = (cells: string[]): string =>
    `| ${cells.map((cell, i) => (i >= rightFrom ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!))).join(' | ')} |`;
  const rule = `| ${widths.map((w, i) => (i >= rightFrom ? `${'-'.repeat(w - 1)}:` : '-'.repeat(w))).join(' | ')} |`;
  return [row(rows[0]!), rule, ...rows.slice(1).map(row)].join('\n');
}

/** Progress goes to stderr, so stdout holds only the results. */
export function log(message: string): void {
  process.stderr.write(`${message}\n`);
}

export const loadAverage = (): string => loadavg().map((x) => x.toFixed(2)).join(' ');

export interface MachineMeta {
  date: string;
  node: string;
  openssl?: string;
  platform: string;
  cores: number;
  loadavgAtStart: number[];
}

/** The machine a run's JSON was measured on; `openssl` for the benchmarks that use TLS. */
export function machineMeta(o: { openssl?: boolean } = {}): MachineMeta {
  return {
    date: new Date().toISOString(),
    node: process.version,
    ...(o.openssl === true ? { openssl: process.versions.openssl } : {}),
    platform: `${process.platform} ${process.arch}`,
    cores: availableParallelism(),
    loadavgAtStart: loadavg().map((x) => Number(x.toFixed(2))),
  };
}
