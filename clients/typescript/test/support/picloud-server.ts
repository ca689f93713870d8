/**
 * Runs the real `picloud` binary for integration tests: its own port, a fresh temp
 * SQLite database, killed afterwards. The binary comes from `PICLOUD_BIN`, else the
 * repository's `target/debug/picloud`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

import { createClient, type AuthMode, type PicloudClient } from '../../src/index.js';
import { waitFor } from './wait.js';

export function picloudBinary(): string {
  const bin = process.env.PICLOUD_BIN ?? resolve(import.meta.dirname, '../../../../target/debug/picloud');
  if (!existsSync(bin)) {
    throw new Error(`picloud binary not found at ${bin}: build it (cargo build -p picloud) or set PICLOUD_BIN`);
  }
  return bin;
}

/** One running server process over a data dir that outlives restarts. */
export class PicloudServer {
  readonly dataDir: string;
  readonly env: Record<string, string>;
  port = 0;
  /** The instance admin key printed at the first start. */
  adminKey = '';
  output = '';
  #child: ChildProcess | undefined;
  #exited: Promise<void> = Promise.resolve();

  private constructor(env: Record<string, string>) {
    this.dataDir = mkdtempSync(join(tmpdir(), 'picloud-sdk-'));
    this.env = env;
  }

  /** Starts a server on a free port with a fresh database. */
  static async start(env: Record<string, string> = {}): Promise<PicloudServer> {
    const server = new PicloudServer(env);
    await server.#spawn();
    return server;
  }

  get url(): string {
    return `http://127.0.0.1:${String(this.port)}`;
  }

  async #spawn(): Promise<void> {
    const child = spawn(picloudBinary(), ['serve'], {
      env: {
        ...process.env,
        PICLOUD_BIND: `127.0.0.1:${String(this.port)}`,
        PICLOUD_DATA_DIR: this.dataDir,
        PICLOUD_DATABASE_URL: `sqlite://${join(this.dataDir, 'picloud.db')}`,
        PICLOUD_SHUTDOWN_GRACE_SEC: '1',
        NO_COLOR: '1',
        ...this.env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.#child = child;
    const collect = (chunk: Buffer): void => {
      this.output += chunk.toString();
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    this.#exited = new Promise((resolveExit) => child.once('exit', () => { resolveExit(); }));
    let exited = false;
    void this.#exited.then(() => (exited = true));
    const start = this.output.length;
    const addr = await waitFor(
      'picloud to listen',
      () => {
        if (exited) throw new Error(`picloud exited:\n${this.output}`);
        return /listening addr=127\.0\.0\.1:(\d+)/.exec(this.output.slice(start))?.[1];
      },
      30_000,
    );
    this.port = Number(addr);
    this.adminKey ||= /\b(pk_[A-Za-z0-9_-]+)/.exec(this.output)?.[1] ?? '';
  }

  /** Kills the process at once (SIGKILL): no goodbye to any client. */
  async kill(): Promise<void> {
    this.#child?.kill('SIGKILL');
    await this.#exited;
  }

  /** Starts the server again on the same port and database. */
  async restart(): Promise<void> {
    await this.kill();
    await this.#spawn();
  }

  /** Stops the server and deletes its database. */
  async dispose(): Promise<void> {
    await this.kill();
    rmSync(this.dataDir, { recursive: true, force: true });
  }

  /** Creates an app and an app:admin key for it; returns a client with that key. */
  async createApp(app = 'shop'): Promise<PicloudClient> {
    const admin = { authorization: `Bearer ${this.adminKey}`, 'content-type': 'application/json' };
    const created = await fetch(`${this.url}/v1/apps`, {
      method: 'POST',
      headers: admin,
      body: JSON.stringify({ id: app, name: app }),
    });
    if (created.status !== 201) throw new Error(`create app: ${String(created.status)} ${await created.text()}`);
    const keyResponse = await fetch(`${this.url}/v1/apps/${app}/keys`, {
      method: 'POST',
      headers: admin,
      body: JSON.stringify({ name: 'backend', scopes: ['app:admin'] }),
    });
    const { key } = (await keyResponse.json()) as { key: string };
    return createClient({ baseUrl: this.url, app, apiKey: key });
  }
}

/** Registers `name` and makes it external. */
export async function externalTopic(client: PicloudClient, name: string, authMode: AuthMode = 'token'): Promise<void> {
  await client.topics.create(name, { authMode });
  await client.topics.setExternal(name, true);
}
