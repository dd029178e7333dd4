/**
 * Self-signed certificates made with openssl at test time, for peers that terminate TLS.
 */

import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { requirePeer } from './process.js';

const run = promisify(execFile);

export interface Cert {
  /** PEM files. */
  certFile: string;
  keyFile: string;
  /** Certificate and key in one file, as HAProxy's `crt` wants. */
  pemFile: string;
  cert: Buffer;
  key: Buffer;
}

/** An RSA-2048 self-signed certificate for `/CN=<cn>`, written to `dir` as `<name>.*`. */
export async function selfSignedCert(dir: string, name: string, cn: string): Promise<Cert> {
  const openssl = requirePeer('openssl');
  const certFile = join(dir, `${name}.crt`);
  const keyFile = join(dir, `${name}.key`);
  const pemFile = join(dir, `${name}.pem`);
  await run(openssl, [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '3650', '-subj', `/CN=${cn}`,
    '-keyout', keyFile, '-out', certFile,
  ], { timeout: 60_000 });
  const [cert, key] = await Promise.all([readFile(certFile), readFile(keyFile)]);
  await writeFile(pemFile, Buffer.concat([cert, key]));
  return { certFile, keyFile, pemFile, cert, key };
}
