// Services started with known secrets for the diagnostics suites: authz with an HMAC secret, an API
// key and a local JWKS issuer; ratelimit with a password-protected redis-server; acme with a stored
// certificate, a stored account key and an EAB HMAC key.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import { createSelfSigned } from '../../services/acme/src/certs.ts';
import { DirectoryCertificateStore, FileAccountStore } from '../../services/acme/src/file-store.ts';
import { accountId } from '../../services/acme/src/issuer.ts';
import { freePort, waitUntil } from '../harness/proc.ts';
import type { RedisHandle, ServiceHandle, Stack } from '../harness/stack.ts';

const rnd = (): string => randomBytes(12).toString('hex');

/** Secrets put into the configuration and the requests; none may ever show up on a diagnostics page. */
export const SECRETS = {
  hmac: `diag-hmac-secret-${rnd()}-${rnd()}`,
  apiKey: `diag-api-key-${rnd()}`,
  cookie: `diag-cookie-${rnd()}`,
  query: `diag-query-token-${rnd()}`,
  redis: `diag-redis-pass-${rnd()}`,
  // base64url, as the EAB HMAC key must be
  eab: Buffer.from(`diag-eab-${rnd()}`).toString('base64url'),
} as const;

/** A minimal OIDC issuer: discovery + JWKS with one ES256 key. */
export class JwksIssuer {
  readonly kid = `diag-kid-${rnd().slice(0, 8)}`;
  #server: Server | undefined;
  #key: CryptoKey | undefined;
  #jwk: JWK | undefined;
  /** The private JWK (its `d` must never be shown). */
  privateJwk: JWK | undefined;
  url = '';

  async start(): Promise<this> {
    const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true });
    this.#key = privateKey;
    this.#jwk = { ...(await exportJWK(publicKey)), kid: this.kid, alg: 'ES256', use: 'sig' };
    this.privateJwk = await exportJWK(privateKey);
    this.#server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      const send = (body: unknown): void => {
        res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=300' });
        res.end(JSON.stringify(body));
      };
      if (path === '/.well-known/openid-configuration')
        send({ issuer: this.url, jwks_uri: `${this.url}/jwks` });
      else if (path === '/jwks') send({ keys: [this.#jwk] });
      else res.writeHead(404).end();
    });
    await new Promise<void>((r) => this.#server?.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
    return this;
  }

  /** An ES256 token for audience `api`. */
  async token(claims: Record<string, unknown> = {}): Promise<string> {
    return new SignJWT({ sub: 'remote-user', ...claims })
      .setProtectedHeader({ alg: 'ES256', kid: this.kid })
      .setIssuer(this.url)
      .setAudience('api')
      .setIssuedAt()
      .setExpirationTime('10m')
      .sign(this.#key as CryptoKey);
  }

  async stop(): Promise<void> {
    this.#server?.closeAllConnections();
    await new Promise<void>((r) => (this.#server ? this.#server.close(() => r()) : r()));
  }
}

/** An HS256 token signed with SECRETS.hmac for the `hmac` provider. */
export async function hmacToken(claims: Record<string, unknown> = {}): Promise<string> {
  return new SignJWT({ sub: 'hmac-user', ...claims })
    .setProtectedHeader({ alg: 'HS256' })
    .setIssuer('diag-hmac')
    .setIssuedAt()
    .setExpirationTime('10m')
    .sign(new TextEncoder().encode(SECRETS.hmac));
}

/** A running authz with the diagnostics policy. */
export interface AuthzFixture {
  readonly svc: ServiceHandle;
  readonly issuer: JwksIssuer;
  /** POST-less raw HTTP check (HTTP mode) on authz's own port. */
  check(path: string, headers?: Record<string, string>, method?: string): Promise<number>;
}

/** Starts authz with a policy holding SECRETS.hmac and SECRETS.apiKey (stop the issuer in after()). */
export async function startAuthz(stack: Stack): Promise<AuthzFixture> {
  const issuer = await new JwksIssuer().start();
  // An issuer nothing listens on: its provider shows the failing fetches.
  const downPort = await freePort();
  const policy = join(stack.dir, 'policy.yaml');
  writeFileSync(
    policy,
    `realm: diag
providers:
  hmac:
    issuer: diag-hmac
    hmacSecret: { value: ${SECRETS.hmac} }
  remote:
    issuer: ${issuer.url}
    audiences: [api]
    tokenSources: [bearer, { cookie: session }, { query: access_token }]
  down:
    issuer: http://127.0.0.1:${downPort}
    keyCache: { failedRetry: 200ms, timeout: 300ms }
apiKeys:
  partners:
    keys: [ { name: partner-one, value: ${SECRETS.apiKey}, claims: { tenant: one } } ]
identity:
  headers: { x-user-id: '{{ sub }}', x-tenant: '{{ tenant }}' }
  payloadHeader: x-jwt-payload
rules:
  - { name: public, match: { pathPrefix: /public }, public: true }
  - { name: partner, match: { pathPrefix: /partner }, apiKey: partners }
  - { name: api, match: { pathPrefix: /api }, jwt: { providers: [hmac, remote, down] } }
  - { name: gone, match: { pathPrefix: /old }, deny: { status: 410 } }
`,
  );
  // x-tenant is outside the shipped HTTP-mode upstream list: declare it deliverable (authz refuses it otherwise).
  const svc = await stack.service('authz', {
    args: [
      '--policy-file',
      policy,
      '--policy-poll-ms',
      '200',
      '--http-upstream-headers',
      'x-user-*,x-jwt-payload,x-tenant',
    ],
  });
  const check = async (
    path: string,
    headers: Record<string, string> = {},
    method = 'GET',
  ): Promise<number> => {
    const res = await fetch(`http://127.0.0.1:${svc.ports.http}${path}`, { method, headers });
    await res.arrayBuffer();
    return res.status;
  };
  // The remote issuer's keys are fetched in the background at start: wait until they verify a token.
  const warm = await issuer.token({ sub: 'warm-up' });
  await waitUntil(
    'authz verifies remote tokens',
    async () => (await check('/api/warm', { authorization: `Bearer ${warm}` })) === 200,
  );
  return { svc, issuer, check };
}

/** The ratelimit configuration of the diagnostics suites. */
export const RL_RULES = `domain: diag
descriptors:
  - key: key1
    value: value1
    descriptors:
      - key: subkey1
        rate_limit: {unit: minute, requests_per_unit: 5}
  - key: key2
    rate_limit: {unit: hour, requests_per_unit: 3}
  - key: shadow
    shadow_mode: true
    rate_limit: {unit: minute, requests_per_unit: 1}
  - key: quota
    quota_mode: true
    rate_limit: {unit: minute, requests_per_unit: 2}
  - key: smooth
    rate_limit: {unit: hour, requests_per_unit: 7, algorithm: sliding_window}
  - key: free
    rate_limit: {unlimited: true}
`;

/** A running ratelimit counting in a password-protected Redis. */
export interface RatelimitFixture {
  readonly svc: ServiceHandle;
  readonly redis: RedisHandle;
  readonly configDir: string;
  /** redis-cli with the password. */
  cli(...args: string[]): string;
  /** One RLS request over the HTTP /json endpoint; returns the HTTP status. */
  hit(domain: string, entries: ReadonlyArray<readonly [string, string]>): Promise<number>;
}

/** Starts redis-server with SECRETS.redis as password and ratelimit with REDIS_URL (password inside) and REDIS_AUTH. */
export async function startRatelimit(stack: Stack): Promise<RatelimitFixture> {
  const redis = await stack.redis();
  redis.cli('CONFIG', 'SET', 'requirepass', SECRETS.redis);
  const cli = (...args: string[]): string => redis.cli('-a', SECRETS.redis, '--no-auth-warning', ...args);
  const configDir = stack.mkdir('rl-config');
  writeFileSync(join(configDir, 'diag.yaml'), RL_RULES);
  const svc = await stack.service('ratelimit', {
    args: ['--config-dir', configDir, '--config-poll-interval=100ms'],
    env: {
      REDIS_URL: `redis://default:${SECRETS.redis}@127.0.0.1:${redis.port}`,
      REDIS_AUTH: SECRETS.redis,
      CACHE_KEY_PREFIX: 'diag:',
    },
  });
  const hit = async (domain: string, entries: ReadonlyArray<readonly [string, string]>): Promise<number> => {
    const res = await fetch(`http://127.0.0.1:${svc.ports.http}/json`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        domain,
        descriptors: [{ entries: entries.map(([key, value]) => ({ key, value })) }],
      }),
    });
    await res.arrayBuffer();
    return res.status;
  };
  return { svc, redis, configDir, cli, hit };
}

/** A running acme with one Ready Host (stored certificate), one failing Host and one invalid Host. */
export interface AcmeFixture {
  readonly svc: ServiceHandle;
  /** Private key PEM of the stored certificate. */
  readonly certKeyPem: string;
  /** Private key PEM of the stored account. */
  readonly accountKeyPem: string;
  readonly accountUrl: string;
  readonly authority: string;
  readonly readyNotAfter: string;
}

/** Starts acme against an unreachable CA, with a stored certificate and account and an EAB key. */
export async function startAcme(stack: Stack): Promise<AcmeFixture> {
  const certDir = stack.mkdir('certs');
  const hostsFile = join(stack.dir, 'hosts.yaml');
  const authority = `https://127.0.0.1:${await freePort()}/dir`;
  const host = (name: string, hostname: string, email: string, secret?: string): string =>
    [
      'apiVersion: getambassador.io/v3alpha1',
      'kind: Host',
      `metadata: { name: ${name} }`,
      'spec:',
      `  hostname: "${hostname}"`,
      `  acmeProvider: { authority: "${authority}", email: ${email} }`,
      ...(secret ? [`  tlsSecret: { name: ${secret} }`] : []),
    ].join('\n');
  writeFileSync(
    hostsFile,
    [
      host('ready', 'ready.diag.test', 'ops@diag.test', 'ready-tls'),
      host('failing', 'failing.diag.test', 'other@diag.test', 'failing-tls'),
      host('wild', '*.diag.test', 'ops@diag.test', 'wild-tls'),
    ].join('\n---\n') + '\n',
  );
  const now = Date.now();
  const cert = createSelfSigned(['ready.diag.test'], now, 30 * 86_400_000);
  await new DirectoryCertificateStore(certDir).write(
    { namespace: 'default', name: 'ready-tls' },
    {
      ...cert,
      meta: {
        temporary: false,
        names: ['ready.diag.test'],
        authority,
        issuedAt: new Date(now).toISOString(),
      },
    },
  );
  const accountKeyPem = generateKeyPairSync('ec', { namedCurve: 'P-256' })
    .privateKey.export({ format: 'pem', type: 'pkcs8' })
    .toString();
  const accountUrl = `${authority.replace('/dir', '')}/acme/acct/4242`;
  await new FileAccountStore(join(certDir, '_accounts')).save(
    accountId({ authority, email: 'ops@diag.test' }),
    {
      keyPem: accountKeyPem,
      accountUrl,
      directoryUrl: authority,
    },
  );
  const svc = await stack.service('acme', {
    args: [
      `--hosts-file=${hostsFile}`,
      `--cert-dir=${certDir}`,
      `--allowed-authorities=${authority}`,
      '--ari=false',
      '--acme-retries=0',
      '--acme-timeout=2s',
      '--backoff-initial=1h',
      '--renew-jitter=0',
      '--eab-kid=diag-kid',
      `--eab-hmac-key=${SECRETS.eab}`,
    ],
  });
  const hosts = await waitUntil(
    'acme Hosts settled',
    async () => {
      const r = JSON.parse((await svc.admin('/hosts')).body) as {
        hosts: Array<{ key: string; state: string; notAfter?: string; errorBackoff?: string }>;
      };
      const by = new Map(r.hosts.map((h) => [h.key, h]));
      return by.get('default/ready')?.state === 'Ready' && by.get('default/failing')?.errorBackoff
        ? by
        : undefined;
    },
    { timeoutMs: 20_000, intervalMs: 100 },
  );
  return {
    svc,
    certKeyPem: cert.keyPem,
    accountKeyPem,
    accountUrl,
    authority,
    readyNotAfter: hosts.get('default/ready')?.notAfter ?? '',
  };
}

/** GET that returns status and text. */
export async function getText(url: string): Promise<{ status: number; body: string }> {
  const res = await fetch(url);
  return { status: res.status, body: await res.text() };
}

/** POST JSON, returns status and parsed JSON body. */
export async function postJson(
  url: string,
  body: unknown,
): Promise<{ status: number; json: unknown; text: string }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, json, text };
}

/** Admin URL of a service. */
export const adminUrl = (svc: ServiceHandle, path: string): string =>
  `http://127.0.0.1:${svc.ports.admin}${path}`;
