import Fastify from 'fastify';
import { Counter } from 'prom-client';
import { startAdmin } from '@extsvc/common/admin';
import { redactedView } from '@extsvc/common/config';
import { closeAll, delay } from '@extsvc/common/lifecycle';
import type { Runtime } from '@extsvc/common/runtime';
import { ACME_OPTIONS, type AcmeConfig } from './config.ts';

/** A running acme service. */
export interface AcmeService {
  readonly challengePort: number;
  readonly adminPort: number;
  close(): Promise<void>;
}

/** Starts the HTTP-01 challenge server and the admin server. */
export async function start(config: AcmeConfig, rt: Runtime): Promise<AcmeService> {
  const challenges = new Counter({
    name: 'acme_challenge_requests_total',
    help: 'Requests to /.well-known/acme-challenge/ by result.',
    labelNames: ['result'],
    registers: [rt.registry],
  });
  const http = Fastify({ logger: false, forceCloseConnections: true });
  http.get('/.well-known/acme-challenge/:token', async (_req, reply) => {
    challenges.inc({ result: 'not_found' });
    return reply.code(404).type('text/plain').send('not found\n');
  });
  await http.listen({ host: config.challengeHost, port: config.challengePort });
  const addr = http.server.address();
  const challengePort = typeof addr === 'object' && addr ? addr.port : config.challengePort;
  const admin = await startAdmin({
    service: rt.service,
    version: rt.version,
    host: config.adminHost,
    port: config.adminPort,
    health: rt.health,
    registry: rt.registry,
    logger: rt.logger,
    configView: () => ({ options: redactedView(ACME_OPTIONS, config) }),
  });
  rt.health.set('listeners', true);
  rt.logger.info({ challengePort, adminPort: admin.port }, 'acme started');
  let closing: Promise<void> | undefined;
  return {
    challengePort,
    adminPort: admin.port,
    close: () =>
      (closing ??= (async () => {
        rt.health.drain();
        await delay(config.drainMs);
        await closeAll([{ close: () => http.close() }, admin]);
      })()),
  };
}
