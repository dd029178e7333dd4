/**
 * Node.js 24, fetched with `npx -y node@24`, for clients that need a newer Node than the one
 * running the tests (its global WebSocket). The binary is run directly, so the process the test
 * starts is the one that does the work.
 */

import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { findExecutable } from './ensure.mjs';
import { runPeer } from './process.js';

export interface Node24 {
  /** Absolute path of the node binary. */
  execPath: string;
  /** `v24.x.y`. */
  version: string;
}

let cached: Promise<Node24> | undefined;

async function locate(): Promise<Node24> {
  // npx sits next to the node binary that runs the tests; PATH is the fallback.
  const beside = join(dirname(process.execPath), 'npx');
  const npx = existsSync(beside) ? beside : findExecutable('npx');
  if (npx === undefined) throw new Error(`npx was found neither beside ${process.execPath} nor in PATH: it fetches Node 24`);
  const r = await runPeer('npx node@24', npx, ['-y', 'node@24', '-p', 'JSON.stringify([process.execPath, process.version])'], {
    timeoutMs: 180_000,
  });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch {
    parsed = undefined;
  }
  if (r.code !== 0 || !Array.isArray(parsed) || typeof parsed[0] !== 'string' || typeof parsed[1] !== 'string') {
    throw new Error(`\`npx -y node@24\` did not give a Node 24 (${r.describe}); it needs the npm registry.\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  }
  const [execPath, version] = parsed as [string, string];
  if (!version.startsWith('v24.')) throw new Error(`\`npx -y node@24\` ran Node ${version}`);
  return { execPath, version };
}

/** Node 24's binary (fetched once per test process). */
export function node24(): Promise<Node24> {
  cached ??= locate();
  cached.catch(() => {
    cached = undefined;
  });
  return cached;
}
