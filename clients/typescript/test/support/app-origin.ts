/**
 * The web app's own origin for browser tests: serves the test page, the built bundle
 * under /dist/, and /token, which mints subscriber tokens the way an app backend would.
 */
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join, normalize, resolve } from 'node:path';

import type { PicloudClient } from '../../src/index.js';

const root = resolve(import.meta.dirname, '../..');
const types: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.map': 'application/json',
};

export class AppOrigin {
  #server: Server;
  /** Set once the PiCloud server is up: the backend that mints tokens. */
  backend: PicloudClient | undefined;

  private constructor(server: Server) {
    this.#server = server;
  }

  static async start(): Promise<AppOrigin> {
    const server = createServer();
    const origin = new AppOrigin(server);
    server.on('request', (request, response) => {
      const url = new URL(request.url ?? '/', 'http://x');
      void (async () => {
        try {
          if (url.pathname === '/token') {
            if (!origin.backend) throw new Error('no backend yet');
            const token = await origin.backend.subscriberToken(url.searchParams.getAll('topic'));
            response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(token));
            return;
          }
          const file =
            url.pathname === '/'
              ? join(root, 'test/browser/page.html')
              : join(root, normalize(url.pathname).replace(/^(\.\.[/\\])+/, ''));
          if (!file.startsWith(join(root, 'dist')) && !file.endsWith('page.html')) throw new Error('not served');
          const body = await readFile(file);
          response.writeHead(200, { 'content-type': types[extname(file)] ?? 'application/octet-stream' }).end(body);
        } catch (error) {
          response.writeHead(404).end(String(error));
        }
      })();
    });
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
    return origin;
  }

  get url(): string {
    return `http://127.0.0.1:${String((this.#server.address() as AddressInfo).port)}`;
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((done) => this.#server.close(() => { done(); }));
  }
}
