import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it, before } from 'mocha';
import { parseAllDocuments } from 'yaml';
import { Stack, ROOT } from '../harness/stack.ts';
import { docs, type Obj } from './deploy-assertions.ts';

interface ConfigMap {
  kind: string;
  metadata: { name: string };
  data: Record<string, string>;
}

// The configuration shipped in deploy/kubernetes ConfigMaps must load in the real services.
describe('deploy/kubernetes: the shipped ConfigMaps load in the services', function () {
  const stack = new Stack('kube-configmaps').install();
  let maps: Map<string, ConfigMap>;
  let objects: Obj[];

  before(() => {
    const rendered = execFileSync('kubectl', ['kustomize', join(ROOT, 'deploy', 'kubernetes')], {
      encoding: 'utf8',
    });
    objects = docs(rendered);
    maps = new Map();
    for (const doc of parseAllDocuments(rendered)) {
      const o = doc.toJS() as ConfigMap | null;
      if (o?.kind === 'ConfigMap') maps.set(o.metadata.name, o);
    }
  });

  const materialize = (name: string): string => {
    const cm = maps.get(name);
    assert.ok(cm, `ConfigMap ${name} in the base`);
    const dir = stack.mkdir(name);
    for (const [file, text] of Object.entries(cm.data)) writeFileSync(join(dir, file), text);
    return dir;
  };

  it('ratelimit-config passes check-config', () => {
    const dir = materialize('ratelimit-config');
    const r = spawnSync(
      process.execPath,
      [join(ROOT, 'services/ratelimit/src/check-config.ts'), '--config-dir', dir],
      {
        encoding: 'utf8',
        timeout: 20_000,
      },
    );
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /all rate limit configs ok/);
  });

  it('authz-policy is accepted by authz, which serves its rules', async function () {
    this.timeout(30_000);
    const dir = materialize('authz-policy');
    mkdirSync(dir, { recursive: true });
    const authz = await stack.service('authz', {
      args: [`--policy-file=${join(dir, 'policy.yaml')}`],
      readyPath: '/healthz',
    });
    const config = await authz.admin('/config');
    assert.equal(config.status, 200);
    for (const rule of ['health', 'acme-challenges', 'api'])
      assert.match(config.body, new RegExp(`"${rule}"`));
  });

  it("the shipped Redis: its manifest's arguments start a real redis-server, and ratelimit counts in it through REDIS_URL's scheme", async function () {
    this.timeout(60_000);
    interface Pod {
      spec: {
        template: {
          spec: { containers: Array<{ args?: string[]; env?: Array<{ name: string; value?: string }> }> };
        };
      };
    }
    const dep = (name: string): Pod => {
      const d = objects.find((o) => o.kind === 'Deployment' && o.metadata.name === name);
      assert.ok(d, `Deployment ${name}`);
      return d as unknown as Pod;
    };
    const args = dep('redis').spec.template.spec.containers[0]?.args ?? [];
    assert.ok(args.length > 0, 'redis args');
    const redis = await stack.redis({ args });
    const config = (name: string): string | undefined => redis.cli('CONFIG', 'GET', name).split('\n')[1];
    assert.deepEqual(redis.cli('CONFIG', 'GET', 'maxmemory-policy').trim().split('\n'), [
      'maxmemory-policy',
      'volatile-ttl',
    ]);
    assert.equal(config('save'), '');
    assert.equal(config('appendonly'), 'no');
    assert.equal(config('protected-mode'), 'no');
    assert.deepEqual(redis.cli('CONFIG', 'GET', 'maxmemory').trim().split('\n'), [
      'maxmemory',
      String(200 * 1024 * 1024),
    ]);

    // ratelimit as its Deployment configures it, with the host part of REDIS_URL pointed at this redis.
    const env = dep('ratelimit').spec.template.spec.containers[0]?.env ?? [];
    const url = new URL(env.find((e) => e.name === 'REDIS_URL')?.value ?? '');
    assert.equal(url.protocol, 'redis:');
    assert.equal(url.port, '6379');
    const dir = materialize('ratelimit-config');
    const rl = await stack.service('ratelimit', {
      args: [`--config-dir=${dir}`, `--redis-url=redis://127.0.0.1:${redis.port}`],
    });
    const text = Object.values(maps.get('ratelimit-config')?.data ?? {}).join('\n');
    const domain = /^domain: (\S+)$/m.exec(text)?.[1];
    assert.ok(domain, 'a domain in ratelimit-config');
    const call = async (): Promise<number> =>
      (
        await fetch(`http://127.0.0.1:${rl.ports.http}/json`, {
          method: 'POST',
          body: JSON.stringify({
            domain,
            descriptors: [{ entries: [{ key: 'remote_address', value: '192.0.2.7' }] }],
          }),
        })
      ).status;
    assert.equal(await call(), 200);
    assert.ok(Number(redis.cli('DBSIZE').trim()) >= 1, 'a counter key in the shipped Redis');
  });
});
