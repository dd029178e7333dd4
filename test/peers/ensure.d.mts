/** Types of ensure.mjs, for the TypeScript test helpers. */

export declare const PACKAGES: readonly string[];
export declare function installCommand(packages?: readonly string[]): string;
export declare function findExecutable(name: string): string | undefined;
export declare function findStreamModule(nginx: string): { builtin: true } | { path: string } | undefined;
export declare function checkPeers(): {
  haproxy?: string;
  nginx?: string;
  streamModule?: { builtin: true } | { path: string };
  openssl?: string;
  curl?: string;
  missing: string[];
  packages: string[];
};
