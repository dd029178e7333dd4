/**
 * Headless Chromium (Debian's package) driven by playwright-core, for browser interop tests.
 */

import { chromium, type Browser } from 'playwright-core';
import { requirePeer } from './process.js';

/** Flags for a quiet browser that reaches nothing but the test's servers. */
export const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

/** Launch Chromium with {@link CHROMIUM_ARGS} and `extraArgs`; close it with `browser.close()`. */
export async function launchChromium(extraArgs: readonly string[] = []): Promise<Browser> {
  const executablePath = requirePeer('chromium');
  return chromium.launch({
    executablePath,
    args: [...CHROMIUM_ARGS, ...extraArgs],
    timeout: 60_000,
  });
}
