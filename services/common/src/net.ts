import type { AddressInfo } from 'node:net';

/** The TCP port a listening server is bound to (port 0 resolves to the real one), else `fallback`. */
export function boundPort(server: { address(): AddressInfo | string | null }, fallback: number): number {
  const addr = server.address();
  return typeof addr === 'object' && addr ? addr.port : fallback;
}
