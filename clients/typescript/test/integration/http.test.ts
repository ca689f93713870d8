import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { createClient, endpoint, PicloudError, type PicloudClient, type Validator } from '../../src/index.js';
import { PicloudServer } from '../support/picloud-server.js';

let server: PicloudServer;
let client: PicloudClient;

beforeAll(async () => {
  server = await PicloudServer.start();
  client = await server.createApp('shop');
});
afterAll(async () => {
  await server.dispose();
});

describe('HTTP API against picloud', () => {
  it('publishes and reads the event back from the log', async () => {
    const published = await client.publish('orders', { id: 42 }, { type: 'order.created' });
    expect(published).toMatchObject({ topic: 'orders', seq: 1 });
    expect(typeof published.id).toBe('string');
    expect(published.publishedAt).toBeGreaterThan(0);

    const page = await client.readEvents<{ id: number }>('orders', { after: 0 });
    expect(page.lastSeq).toBe(1);
    expect(page.events).toEqual([
      {
        topic: 'orders',
        seq: 1,
        id: published.id,
        type: 'order.created',
        data: { id: 42 },
        publishedAt: published.publishedAt,
      },
    ]);
  });

  it('publishes a batch atomically across topics', async () => {
    const events = await client.publishBatch([
      { topic: 'batch.a', data: 1 },
      { topic: 'batch.b', data: 2, type: 't' },
      { topic: 'batch.a', data: 3 },
    ]);
    expect(events.map((e) => [e.topic, e.seq])).toEqual([
      ['batch.a', 1],
      ['batch.b', 1],
      ['batch.a', 2],
    ]);
  });

  it('does not publish twice for one idempotency key', async () => {
    const first = await client.publish('idem', 'x', { idempotencyKey: 'k-1' });
    const again = await client.publish('idem', 'x', { idempotencyKey: 'k-1' });
    expect(again).toEqual(first);
    expect((await client.readEvents('idem')).events).toHaveLength(1);
  });

  it('manages topics: create, list, flip external, delete', async () => {
    const created = await client.topics.create('admin.topic', { authMode: 'public', retention: { maxEvents: 10 } });
    expect(created).toMatchObject({
      name: 'admin.topic',
      externalSubscribable: false,
      authMode: 'public',
      retention: { maxEvents: 10, maxAgeSecs: null },
    });
    expect((await client.topics.setExternal('admin.topic', true)).externalSubscribable).toBe(true);
    expect((await client.topics.list()).map((t) => t.name)).toContain('admin.topic');
    await client.topics.delete('admin.topic');
    await expect(client.topics.get('admin.topic')).rejects.toMatchObject({ status: 404, code: 'topic_not_found' });
  });

  it("turns the server's JSON errors into PicloudError", async () => {
    await client.topics.create('dup');
    const conflict = await client.topics.create('dup').catch((e: unknown) => e);
    expect(conflict).toBeInstanceOf(PicloudError);
    expect(conflict).toMatchObject({ status: 409, code: 'topic_exists' });

    const stranger = createClient({ baseUrl: server.url, app: 'shop', apiKey: 'pk_nope' });
    await expect(stranger.topics.list()).rejects.toMatchObject({ status: 401, code: 'unauthorized' });
  });

  it('reports an unreachable server as a network error', async () => {
    const offline = createClient({ baseUrl: 'http://127.0.0.1:1', app: 'shop', apiKey: 'pk_x' });
    await expect(offline.topics.list()).rejects.toMatchObject({ status: 0, code: 'network_error' });
  });

  it('calls a hand-typed endpoint and validates its answer', async () => {
    interface TopicHead {
      name: string;
      last_seq: number;
    }
    const isTopicHead: Validator<TopicHead> = {
      parse(input) {
        const t = input as Partial<TopicHead>;
        if (typeof t.name !== 'string' || typeof t.last_seq !== 'number') throw new Error('not a topic');
        return { name: t.name, last_seq: t.last_seq };
      },
    };
    const getTopic = endpoint<{ topic: string }, TopicHead>('GET', '/v1/apps/{app}/topics/{topic}', {
      validate: isTopicHead,
    });
    await client.publish('typed', 1);
    expect(await client.call(getTopic, { topic: 'typed' })).toEqual({ name: 'typed', last_seq: 1 });

    const wrongShape = endpoint<{ topic: string }, never>('GET', '/v1/apps/{app}/topics/{topic}/events', {
      validate: isTopicHead as unknown as Validator<never>,
    });
    await expect(client.call(wrongShape, { topic: 'typed' })).rejects.toMatchObject({ code: 'validation_failed' });

    const readLog = endpoint<{ topic: string; after: number }, { events: { seq: number }[] }>(
      'GET',
      '/v1/apps/{app}/topics/{topic}/events',
    );
    await client.publish('typed', 2);
    expect((await client.call(readLog, { topic: 'typed', after: 1 })).events.map((e) => e.seq)).toEqual([2]);
  });

  it('calls HTTP functions: JSON, text, the caller\'s own headers, and failures', async () => {
    const saveScript = endpoint<{ script: string; source: string; access: 'public' | 'key' }>('PUT', '/v1/apps/{app}/scripts/{script}');
    await client.call(saveScript, {
      script: 'greet',
      access: 'public',
      source: 'fn handle(req) { #{ hello: req.json.name, user: req.headers["authorization"], q: req.query.x } }',
    });
    await client.call(saveScript, {
      script: 'plain',
      access: 'public',
      source: 'fn handle(req) { #{ status: 200, body: `hi ${req.method}` } }',
    });
    await client.call(saveScript, { script: 'broken', access: 'public', source: 'fn handle(req) { throw "secret-detail-42" }' });
    await client.call(saveScript, { script: 'private', access: 'key', source: 'fn handle(req) { 7 }' });

    // A browser: no API key, the app's own session in `authorization`.
    const browser = createClient({ baseUrl: server.url, app: 'shop' });
    const greeting = await browser.functions.call<{ hello: string; user: string; q: string }>(
      'greet',
      { name: 'Ada' },
      { headers: { authorization: 'Bearer app-session-1' }, query: { x: '1' } },
    );
    expect(greeting).toEqual({ hello: 'Ada', user: 'Bearer app-session-1', q: '1' });
    expect(await browser.functions.call('plain', undefined, { method: 'GET' })).toBe('hi GET');

    const failed = await browser.functions.call('broken').catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(PicloudError);
    expect((failed as PicloudError).status).toBe(500);
    expect((failed as PicloudError).message).not.toContain('secret-detail-42');

    const refused = await browser.functions.call('private').catch((e: unknown) => e);
    expect((refused as PicloudError).status).toBe(401);
    expect(await client.functions.call('private')).toBe(7);
  });
});
