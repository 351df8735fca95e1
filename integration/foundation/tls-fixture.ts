import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A certificate directory laid out as acme writes it for Envoy, holding one self-signed certificate. */
export interface FakeCertDir {
  /** The CERT_DIR to render the template with. */
  readonly dir: string;
  /** The self-signed certificate (PEM), to trust in clients. */
  readonly certPem: string;
}

/** Writes a self-signed certificate for `cn` and the SDS file acme writes beside it, under <dir>/<secret>/. */
export function fakeCertDir(secret: string, cn = 'example.test'): FakeCertDir {
  const dir = mkdtempSync(join(tmpdir(), 'extsvc-envoy-certs-'));
  const d = join(dir, secret);
  mkdirSync(d, { recursive: true });
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      join(d, 'tls.key'),
      '-out',
      join(d, 'tls.crt'),
      '-days',
      '1',
      '-subj',
      `/CN=${cn}`,
      '-addext',
      `subjectAltName=DNS:${cn}`,
    ],
    { stdio: 'pipe' },
  );
  writeFileSync(
    join(d, 'sds.yaml'),
    `resources:\n  - "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret\n    name: ${secret}\n    tls_certificate:\n      certificate_chain: { filename: ${join(d, 'tls.crt')} }\n      private_key: { filename: ${join(d, 'tls.key')} }\n`,
  );
  return { dir, certPem: readFileSync(join(d, 'tls.crt'), 'utf8') };
}
