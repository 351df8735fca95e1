import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it, before } from 'mocha';
import { parseAllDocuments } from 'yaml';
import { Stack, ROOT } from '../harness/stack.ts';

interface ConfigMap {
  kind: string;
  metadata: { name: string };
  data: Record<string, string>;
}

// The configuration shipped in deploy/kubernetes ConfigMaps must load in the real services.
describe('deploy/kubernetes: the shipped ConfigMaps load in the services', function () {
  const stack = new Stack('kube-configmaps').install();
  let maps: Map<string, ConfigMap>;

  before(() => {
    const rendered = execFileSync('kubectl', ['kustomize', join(ROOT, 'deploy', 'kubernetes')], {
      encoding: 'utf8',
    });
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
});
