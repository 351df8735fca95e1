// The authz image (services/authz/Dockerfile) in a container started by testcontainers: the compose demo
// policy, gRPC Check and raw HTTP mode from the host. Skipped, with one line, when no engine answers.
import { strict as assert } from 'node:assert';
import { join } from 'node:path';
import { after, before, describe, it } from 'mocha';
import type { StartedTestContainer } from 'testcontainers';
import { AuthzClient } from '../authz/client.ts';
import {
  containerUid,
  ensureImages,
  requireEngine,
  ROOT,
  serviceContainer,
  stopAll,
} from '../harness/containers.ts';

describe('container: the extsvc-authz image (testcontainers)', function () {
  let authz: StartedTestContainer | undefined;
  let client: AuthzClient | undefined;

  before(async function () {
    this.timeout(45 * 60_000); // a cold machine builds the images first
    await requireEngine(this);
    const images = await ensureImages();
    authz = await serviceContainer(images.authz, {
      adminPort: 9003,
      ports: [9001, 9002],
      env: { POLICY_FILE: '/config/policy.yaml' },
      files: [{ source: join(ROOT, 'deploy/compose/authz/policy.yaml'), target: '/config/policy.yaml' }],
    }).start();
    client = new AuthzClient(authz.getMappedPort(9001));
  });

  after(async function () {
    this.timeout(60_000);
    client?.close();
    await stopAll([authz]);
  });

  it('runs as a non-root user', async () => {
    assert.notEqual(await containerUid(authz!), 0);
  });

  it('gRPC Check: public path allowed, API path 401 without the key, allowed with it', async () => {
    const pub = await client!.checkHttp({}, '/public/hello');
    assert.ok(pub.ok && pub.res.status?.code === 0, JSON.stringify(pub));
    const anon = await client!.checkHttp({}, '/api/hello');
    assert.ok(anon.ok, JSON.stringify(anon));
    assert.notEqual(anon.res.status?.code, 0);
    assert.equal(anon.res.denied_response?.status?.code, 'Unauthorized');
    const keyed = await client!.checkHttp({ 'x-api-key': 'demo-key' }, '/api/hello');
    assert.ok(keyed.ok && keyed.res.status?.code === 0, JSON.stringify(keyed));
  });

  it('raw HTTP mode: 200 with the demo key, 401 without', async () => {
    const url = `http://127.0.0.1:${authz!.getMappedPort(9002)}/api/hello`;
    assert.equal((await fetch(url, { headers: { 'x-api-key': 'demo-key' } })).status, 200);
    assert.equal((await fetch(url)).status, 401);
  });
});
