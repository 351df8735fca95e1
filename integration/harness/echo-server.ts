import { createServer, type Server } from 'node:http';

/** Starts the upstream echo app: answers every request with 200 and JSON {method, path, headers}. */
export async function startEcho(
  port: number,
  host = '127.0.0.1',
): Promise<{ port: number; server: Server; requests: number; close(): Promise<void> }> {
  const state = { requests: 0 };
  const server = createServer((req, res) => {
    state.requests += 1;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.stringify({
        method: req.method,
        path: req.url,
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
      });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(port, host, resolve));
  const addr = server.address();
  return {
    port: typeof addr === 'object' && addr ? addr.port : port,
    server,
    get requests() {
      return state.requests;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

if (import.meta.main) {
  const arg = process.argv.find((a) => a.startsWith('--port='));
  const port = arg ? Number(arg.slice('--port='.length)) : 8080;
  const host = process.argv.find((a) => a.startsWith('--host='))?.slice('--host='.length) ?? '127.0.0.1';
  const echo = await startEcho(port, host);
  process.stdout.write(JSON.stringify({ msg: 'echo listening', port: echo.port }) + '\n');
  const stop = (): void => void echo.close().then(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
