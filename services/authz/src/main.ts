#!/usr/bin/env node
import { runMain } from '@extsvc/common/lifecycle';
import { otelSettings, startTracing } from '@extsvc/common/otel';
import { createRuntime, packageVersion } from '@extsvc/common/runtime';
import { loadConfig } from './config.ts';
import { start } from './server.ts';

runMain('extsvc-authz', async () => {
  const parsed = loadConfig(process.argv.slice(2), process.env);
  if (parsed.kind === 'help') {
    process.stdout.write(parsed.text);
    return 'help';
  }
  const otel = otelSettings(process.env); // OTEL_* variables: a bad one exits 2 like any option
  const rt = createRuntime({
    service: 'authz',
    version: packageVersion(new URL('../package.json', import.meta.url)),
    logLevel: parsed.options.logLevel,
  });
  const tracing = await startTracing(otel, {
    service: `extsvc-${rt.service}`,
    version: rt.version,
    logger: rt.logger,
  });
  return { logger: rt.logger, service: await start(parsed.options, rt, { env: process.env, tracing }) };
});
