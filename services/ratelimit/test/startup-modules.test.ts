import { describe, it } from 'mocha';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

// In a fresh process (this one has grpc-js loaded by other tests): what loading the server and the
// ShouldRateLimit method definitions pulls in. The node:http2 transport needs neither grpc-js nor the
// undici that the ES module view of node:http loads (bench/README.md "Idle memory").
const probe = `
import { createRequire } from 'node:module';
await import(${JSON.stringify(join(import.meta.dirname, '..', 'src', 'server.ts'))});
const proto = await import('@extsvc/common/proto');
const def = typeof proto.serviceDefinition === 'function'
  ? proto.serviceDefinition(['envoy/service/ratelimit/v3/rls.proto'], 'envoy.service.ratelimit.v3.RateLimitService')
  : undefined;
const cache = Object.keys(createRequire(import.meta.url).cache);
process.stdout.write(JSON.stringify({
  path: def?.ShouldRateLimit.path,
  grpcJs: cache.some((k) => k.includes('/@grpc/grpc-js/')),
  protoLoader: cache.some((k) => k.includes('/@grpc/proto-loader/')),
  undici: process.moduleLoadList.some((m) => m.includes('undici')),
}));
`;

describe('ratelimit start-up modules', () => {
  it('loading the server and the RLS method definitions loads neither grpc-js nor undici', function () {
    this.timeout(60_000); // a fresh Node process compiling the server's TypeScript: seconds on a loaded CI machine
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', probe], {
      cwd: join(import.meta.dirname, '..'),
      encoding: 'utf8',
      env: { ...process.env, NODE_COMPILE_CACHE: '' },
    });
    assert.deepEqual(JSON.parse(out), {
      path: '/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit',
      grpcJs: false,
      protoLoader: true,
      undici: false,
    });
  });
});
