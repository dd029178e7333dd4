/** Types of websocket-client.mjs, for the tests. */

export declare const OFFERED_SUBPROTOCOLS: readonly string[];
export declare const TEXT: string;
export declare const ALL_BYTES_HEX: string;
export declare const LARGE_BYTES: number;
export declare const SERVER_FRAGMENT_BYTES: number;
export declare const FRAGMENTED_TEXT: string;
export declare function pattern(n: number, seed?: number): Uint8Array;

/** A close event as the client saw it. */
export interface CloseSeen {
  code: number;
  reason: string;
  wasClean: boolean;
}

/** One scenario's report: its fields, or the error that stopped it. */
export interface ScenarioResult {
  scenario: 'echo' | 'server-close' | 'fragmented';
  /** The request target, which the server's terminate callback is told. */
  path: string;
  error?: string;
  [field: string]: unknown;
}

export declare function runScenarios(
  open: (url: string, protocols: string[]) => object,
  baseUrl: string,
  tag: string,
  options?: { timeoutMs?: number },
): Promise<ScenarioResult[]>;
