import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Writes the integration policy for an issuer URL into `dir` (`mainProvider`: extra fields of provider main); returns its path. */
export function writePolicy(dir: string, issuer: string, extra = '', mainProvider = ''): string {
  const file = join(dir, 'policy.yaml');
  writeFileSync(
    file,
    `realm: extsvc
providers:
  main:
    issuer: ${issuer}
    audiences: [api]
    keyCache: { cooldown: 2s, failedRetry: 300ms, timeout: 1s, minAge: 1s, maxAge: 2s }
    ${mainProvider}
  huge:
    issuer: https://huge.example
    jwksUri: ${issuer}/huge
    keyCache: { maxBytes: 65536, allowHttp: true }
  slow:
    issuer: https://slow.example
    jwksUri: ${issuer}/slow
    keyCache: { timeout: 300ms, allowHttp: true }
apiKeys:
  partners:
    keys: [ { name: acme, value: partner-key-1, claims: { tenant: acme } } ]
identity:
  headers: { x-user-id: '{{ sub }}', x-user-roles: '{{ realm_access.roles }}', x-user-tenant: '{{ tenant }}' }
rules:
  - { name: public, match: { pathPrefix: /public }, public: true }
  - { name: admin, match: { pathPrefix: /admin }, jwt: { providers: [main], scopes: admin } }
  - { name: partner, match: { pathPrefix: /partner }, apiKey: partners }
  - name: api
    match: { pathPrefix: /api }
    cors: { allowPreflight: true }
    jwt: { providers: [main, huge, slow] }
${extra}`,
  );
  return file;
}
