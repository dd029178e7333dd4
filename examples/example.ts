/** What every example module exports, and small helpers they share. */

export interface ExampleOptions {
  port: number;
  host: string;
}

export interface RunningExample {
  url: string;
  stop(): Promise<void>;
}

/** `scheme://host:port`, with brackets around an IPv6 host. */
export function urlOf(scheme: string, host: string, port: number | undefined): string {
  return `${scheme}://${host.includes(':') ? `[${host}]` : host}:${port ?? ''}`;
}
