/**
 * A tiny in-process server that speaks the realtime protocol's frames, driven by the
 * test: each request becomes a {@link FakeStream} the test writes frames to, or gets
 * the status the test chose for it.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

import { waitFor } from './wait.js';

/** One request to the realtime endpoint. */
export class FakeStream {
  readonly url: URL;
  readonly headers: IncomingMessage['headers'];
  #response: ServerResponse;
  closed = false;

  constructor(request: IncomingMessage, response: ServerResponse) {
    this.url = new URL(request.url ?? '/', 'http://x');
    this.headers = request.headers;
    this.#response = response;
    response.on('close', () => {
      this.closed = true;
    });
  }

  get lastEventId(): string | undefined {
    return this.headers['last-event-id'] as string | undefined;
  }

  get authorization(): string | undefined {
    return this.headers.authorization;
  }

  /** Starts the event stream (200, text/event-stream). */
  open(): this {
    this.#response.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    this.#response.flushHeaders();
    return this;
  }

  /** Writes raw bytes. */
  write(text: string): this {
    this.#response.write(text);
    return this;
  }

  /** Writes one frame. */
  frame(event: string, data: unknown, id?: string): this {
    const idLine = id === undefined ? '' : `id: ${id}\n`;
    return this.write(`${idLine}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  }

  /** Writes the `hello` frame. */
  hello(cursor: string, options: { protocol?: unknown; heartbeatSecs?: number; topics?: string[] } = {}): this {
    return this.frame(
      'hello',
      {
        protocol: options.protocol ?? 1,
        heartbeat_secs: options.heartbeatSecs ?? 30,
        topics: options.topics ?? [],
        cursor,
      },
      cursor,
    );
  }

  /** Writes an event frame; `cursor` defaults to `topic:seq`. */
  event(topic: string, seq: number, data: unknown = { n: seq }, cursor = `${topic}:${String(seq)}`): this {
    return this.frame(
      'message',
      { topic, seq, type: 'message', data, published_at: 1_700_000_000_000 + seq },
      cursor,
    );
  }

  /** Answers with an error status and JSON error body instead of a stream. */
  fail(status: number, code: string): void {
    this.#response.writeHead(status, { 'content-type': 'application/json' });
    this.#response.end(JSON.stringify({ error: { code, message: code } }));
  }

  /** Ends the stream cleanly. */
  end(): void {
    this.#response.end();
  }

  /** Cuts the TCP connection. */
  destroy(): void {
    this.#response.socket?.destroy();
  }
}

/** The server; `streams` lists every request in arrival order. */
export class FakeRealtimeServer {
  readonly streams: FakeStream[] = [];
  #server: Server;
  #onStream: ((stream: FakeStream) => void) | undefined;

  private constructor(server: Server) {
    this.#server = server;
  }

  static async start(onStream?: (stream: FakeStream) => void): Promise<FakeRealtimeServer> {
    const server = createServer();
    const fake = new FakeRealtimeServer(server);
    fake.#onStream = onStream;
    server.on('request', (request, response) => {
      const stream = new FakeStream(request, response);
      fake.streams.push(stream);
      fake.#onStream?.(stream);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return fake;
  }

  get url(): string {
    const { port } = this.#server.address() as AddressInfo;
    return `http://127.0.0.1:${String(port)}`;
  }

  /** Waits for the `n`-th request (1-based). */
  stream(n: number): Promise<FakeStream> {
    return waitFor(`request #${String(n)}`, () => this.streams[n - 1]);
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => { resolve(); }));
  }
}
