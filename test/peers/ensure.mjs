/**
 * Makes sure the real peers the interop tests run against are installed: HAProxy, nginx with its
 * stream module, openssl (to make the test certificate) and curl for the PROXY protocol tests;
 * Python's `websockets` and `aiohttp` libraries and Chromium for the WebSocket tests.
 *
 *   node test/peers/ensure.mjs
 *
 * When everything is there it does nothing (no package manager call). When something is missing
 * and this runs as root on a Debian-like system, it installs the Debian packages with apt-get,
 * refreshing the package lists first only when they cannot provide a missing package. Otherwise it
 * exits non-zero and prints the command to run.
 *
 * The test helpers import the lookup functions from here, so the tests and this script agree on
 * what "installed" means.
 */

import { execFileSync, spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, realpathSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The Debian packages that provide the peers. */
export const PACKAGES = ['haproxy', 'nginx', 'libnginx-mod-stream', 'openssl', 'curl', 'python3-websockets', 'chromium', 'python3-aiohttp'];

/** Where Debian's chromium package puts its launcher. */
export const CHROMIUM = '/usr/bin/chromium';

/**
 * The command that installs `packages` (default: all of them).
 * @param {readonly string[]} [packages]
 */
export function installCommand(packages = PACKAGES) {
  return `apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${packages.join(' ')}`;
}

// Server binaries live in sbin directories, which a non-root PATH often lacks.
const EXTRA_DIRS = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

function isExecutable(file) {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Absolute path of an executable, searched in PATH and then the usual sbin/bin directories.
 * @param {string} name
 * @returns {string | undefined}
 */
export function findExecutable(name) {
  const dirs = (process.env.PATH ?? '').split(delimiter).filter((d) => d !== '');
  for (const dir of [...dirs, ...EXTRA_DIRS]) {
    const file = join(dir, name);
    if (isExecutable(file)) return file;
  }
  return undefined;
}

/**
 * How nginx gets its stream module: built in (`{ builtin: true }`), as a dynamic module file
 * (`{ path }`, to name in `load_module`), or not at all (`undefined`).
 * @param {string} nginx path of the nginx binary
 * @returns {{ builtin: true } | { path: string } | undefined}
 */
export function findStreamModule(nginx) {
  let configure = '';
  try {
    // `nginx -V` prints its build configuration on stderr.
    const r = spawnSync(nginx, ['-V'], { encoding: 'utf8', timeout: 10_000 });
    configure = `${r.stdout ?? ''}${r.stderr ?? ''}`;
  } catch {
    return undefined;
  }
  const args = configure.split(/\s+/);
  if (args.includes('--with-stream')) return { builtin: true };
  const dirs = [];
  for (const arg of args) {
    if (arg.startsWith('--modules-path=')) dirs.push(arg.slice('--modules-path='.length));
    if (arg.startsWith('--prefix=')) dirs.push(join(arg.slice('--prefix='.length), 'modules'));
  }
  dirs.push(
    '/usr/lib/nginx/modules', '/usr/lib64/nginx/modules', '/usr/share/nginx/modules',
    '/usr/local/nginx/modules', '/etc/nginx/modules', '/usr/local/lib/nginx/modules',
  );
  for (const dir of dirs) {
    const file = join(dir, 'ngx_stream_module.so');
    if (existsSync(file)) return { path: realpathSync(file) };
  }
  return undefined;
}

/**
 * A Python 3 interpreter that can `import websockets`, and the library's version. The system
 * interpreter comes first: Debian's python3-websockets installs for it, while the python3 first
 * in PATH may be another one (a virtualenv, pyenv).
 * @returns {{ python: string, version: string } | undefined}
 */
export function findPythonWebsockets() {
  const candidates = ['/usr/bin/python3', findExecutable('python3')].filter((p) => p !== undefined && isExecutable(p));
  for (const python of new Set(candidates)) {
    const r = spawnSync(python, ['-c', 'import websockets; print(websockets.__version__)'], { encoding: 'utf8', timeout: 10_000 });
    if (r.status === 0 && typeof r.stdout === 'string' && r.stdout.trim() !== '') return { python, version: r.stdout.trim() };
  }
  return undefined;
}

/**
 * A Python 3 interpreter that can `import aiohttp`, and the library's version (the system
 * interpreter first, as for `websockets`).
 * @returns {{ python: string, version: string } | undefined}
 */
export function findPythonAiohttp() {
  const candidates = ['/usr/bin/python3', findExecutable('python3')].filter((p) => p !== undefined && isExecutable(p));
  for (const python of new Set(candidates)) {
    const r = spawnSync(python, ['-c', 'import aiohttp; print(aiohttp.__version__)'], { encoding: 'utf8', timeout: 10_000 });
    if (r.status === 0 && typeof r.stdout === 'string' && r.stdout.trim() !== '') return { python, version: r.stdout.trim() };
  }
  return undefined;
}

/**
 * What is present, what is missing, and the Debian packages that provide what is missing.
 * @returns {{ haproxy?: string, nginx?: string, streamModule?: { builtin: true } | { path: string }, openssl?: string, curl?: string, python?: { python: string, version: string }, chromium?: string, aiohttp?: { python: string, version: string }, missing: string[], packages: string[] }}
 */
export function checkPeers() {
  const haproxy = findExecutable('haproxy');
  const nginx = findExecutable('nginx');
  const openssl = findExecutable('openssl');
  const curl = findExecutable('curl');
  const streamModule = nginx === undefined ? undefined : findStreamModule(nginx);
  const python = findPythonWebsockets();
  const chromium = isExecutable(CHROMIUM) ? CHROMIUM : undefined;
  const aiohttp = findPythonAiohttp();
  const lacking = [
    [haproxy, 'haproxy', 'haproxy'],
    [nginx, 'nginx', 'nginx'],
    [streamModule, 'the nginx stream module (ngx_stream_module)', 'libnginx-mod-stream'],
    [openssl, 'openssl', 'openssl'],
    [curl, 'curl', 'curl'],
    [python, "Python's websockets library", 'python3-websockets'],
    [chromium, `chromium (${CHROMIUM})`, 'chromium'],
    [aiohttp, "Python's aiohttp library", 'python3-aiohttp'],
  ].filter(([found]) => found === undefined);
  const missing = lacking.map(([, what]) => what);
  const packages = lacking.map(([, , pkg]) => pkg);
  return { haproxy, nginx, streamModule, openssl, curl, python, chromium, aiohttp, missing, packages };
}

function run(command, args, env) {
  process.stdout.write(`peers: running ${command} ${args.join(' ')}\n`);
  const r = spawnSync(command, args, { stdio: 'inherit', env: { ...process.env, ...env } });
  if (r.error !== undefined) throw r.error;
  return r.status === 0;
}

/**
 * Whether apt's package lists can provide every one of `packages` (no `apt-get update` needed first).
 * @param {readonly string[]} packages
 */
function aptHasCandidates(packages) {
  let out;
  try {
    out = execFileSync('apt-cache', ['policy', ...packages], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch {
    return false;
  }
  let seen = 0;
  for (const block of out.split(/^(?=\S)/m)) {
    if (!/^\S+:\s*$/m.test(block.split('\n')[0] ?? '')) continue;
    seen++;
    const candidate = /Candidate:\s*(\S+)/.exec(block);
    if (candidate === null || candidate[1] === '(none)') return false;
  }
  return seen === packages.length;
}

/**
 * Install only what is missing: naming an installed package to apt-get would upgrade it.
 * @param {readonly string[]} packages
 */
function install(packages) {
  const env = { DEBIAN_FRONTEND: 'noninteractive' };
  const args = ['install', '-y', '--no-install-recommends', ...packages];
  let updated = false;
  if (!aptHasCandidates(packages)) {
    if (!run('apt-get', ['update'], env)) return false;
    updated = true;
  }
  if (run('apt-get', args, env)) return true;
  // Old package lists can name versions the mirror no longer has: refresh once and retry.
  if (updated) return false;
  return run('apt-get', ['update'], env) && run('apt-get', args, env);
}

function main() {
  const before = checkPeers();
  if (before.missing.length === 0) return 0;

  const what = before.missing.join(', ');
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  if (!isRoot || findExecutable('apt-get') === undefined) {
    process.stderr.write(
      `peers: missing ${what}. The interop tests run against real peers; install them with:\n\n` +
        `  sudo sh -c '${installCommand(before.packages)}'\n\n` +
        (isRoot ? 'apt-get was not found: install the equivalent packages with your package manager.\n' : ''),
    );
    return 1;
  }

  process.stdout.write(`peers: missing ${what}; installing ${before.packages.join(' ')} with apt-get\n`);
  if (!install(before.packages)) {
    process.stderr.write(`peers: apt-get failed; run by hand:\n\n  ${installCommand(before.packages)}\n\n`);
    return 1;
  }
  const after = checkPeers();
  if (after.missing.length > 0) {
    process.stderr.write(`peers: still missing after apt-get: ${after.missing.join(', ')}\n`);
    return 1;
  }
  process.stdout.write('peers: haproxy, nginx (with the stream module), openssl, curl, python3-websockets, chromium and python3-aiohttp are installed\n');
  return 0;
}

function isMain() {
  const script = process.argv[1];
  if (script === undefined) return false;
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isMain()) process.exitCode = main();
