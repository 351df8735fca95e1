#!/usr/bin/env node
import { runMain } from '@extsvc/common/lifecycle';
import { createRuntime, packageVersion } from '@extsvc/common/runtime';
import { loadConfig } from './config.ts';
import { start } from './server.ts';

runMain('extsvc-acme', async () => {
  const parsed = loadConfig(process.argv.slice(2), process.env);
  if (parsed.kind === 'help') {
    process.stdout.write(parsed.text);
    return 'help';
  }
  const rt = createRuntime({
    service: 'acme',
    version: packageVersion(new URL('../package.json', import.meta.url)),
    logLevel: parsed.options.logLevel,
  });
  return { logger: rt.logger, service: await start(parsed.options, rt) };
});
