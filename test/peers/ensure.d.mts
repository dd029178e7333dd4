/** Types of ensure.mjs, for the TypeScript test helpers. */

export declare const PACKAGES: readonly string[];
export declare const CHROMIUM: string;
export declare function installCommand(packages?: readonly string[]): string;
export declare function findExecutable(name: string): string | undefined;
export declare function findStreamModule(nginx: string): { builtin: true } | { path: string } | undefined;
export declare function findPythonWebsockets(): { python: string; version: string } | undefined;
export declare function findPythonAiohttp(): { python: string; version: string } | undefined;
export declare function checkPeers(): {
  haproxy?: string;
  nginx?: string;
  streamModule?: { builtin: true } | { path: string };
  openssl?: string;
  curl?: string;
  python?: { python: string; version: string };
  chromium?: string;
  aiohttp?: { python: string; version: string };
  missing: string[];
  packages: string[];
};
