/**
 * Subscriptions against the real picloud binary: events published from Node arrive
 * through `subscribe` once each, across cut connections, server restarts and token
 * expiry.
 */
import { afterEach, describe, expect, it } from 'vitest';

import {
  createClient,
  type PicloudClient,
  type PicloudEvent,
  type ResetInfo,
  type SubscriptionStatus,
} from '../../src/index.js';
import type { SubscribeOptions } from '../../src/subscription.js';
import { externalTopic, PicloudServer } from '../support/picloud-server.js';
import { TcpProxy } from '../support/tcp-proxy.js';
import { waitFor } from '../support/wait.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function startServer(env: Record<string, string> = {}): Promise<{ server: PicloudServer; backend: PicloudClient }> {
  const server = await PicloudServer.start(env);
  cleanups.push(() => server.dispose());
  return { server, backend: await server.createApp('shop') };
}

/** A browser-like subscriber (no API key) that records what it receives. */
function subscriber(baseUrl: string, topics: string[], options: Partial<SubscribeOptions> = {}) {
  const events: PicloudEvent[] = [];
  const resets: ResetInfo[] = [];
  const errors: string[] = [];
  const statuses: SubscriptionStatus[] = [];
  const browser = createClient({ baseUrl, app: 'shop' });
  const stop = browser.subscribe(topics, {
    onEvent: (e) => events.push(e),
    onReset: (r) => resets.push(r),
    onError: (e) => errors.push(e.code),
    onStatus: (s) => statuses.push(s),
    ...options,
  });
  cleanups.push(stop);
  return {
    events,
    resets,
    errors,
    statuses,
    stop,
    seqs: (topic = topics[0]) => events.filter((e) => e.topic === topic).map((e) => e.seq),
    open: () => waitFor('the subscription to open', () => statuses.includes('open')),
  };
}

/** Publishes `{ n }` for each n, retrying while the server is away; the idempotency
 * key turns the retry of a publish that did commit into a no-op. */
async function publishAll(backend: PicloudClient, topic: string, ns: number[]): Promise<void> {
  for (const n of ns) {
    await waitFor(
      `publish #${String(n)}`,
      () => backend.publish(topic, { n }, { idempotencyKey: `${topic}-${String(n)}` }).then(
        () => true,
        () => false,
      ),
      30_000,
    );
  }
}

/** A slow app backend behind getToken: events keep coming while a token is fetched. */
const backendRoundTrip = () => new Promise((resolve) => setTimeout(resolve, 200));

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe('realtime against picloud', () => {
  it('delivers events published from Node to a subscriber with a token', async () => {
    const { server, backend } = await startServer();
    await externalTopic(backend, 'orders');
    const sub = subscriber(server.url, ['orders'], { getToken: () => backend.subscriberToken(['orders']) });
    await sub.open();
    const published = await backend.publish('orders', { id: 42 }, { type: 'order.created' });
    await waitFor('the event', () => sub.events.length === 1);
    expect(sub.events[0]).toEqual({
      topic: 'orders',
      seq: 1,
      type: 'order.created',
      data: { id: 42 },
      publishedAt: published.publishedAt,
      cursor: 'orders:1',
      id: 'orders:1',
    });
    expect(published.id).toMatch(/^evt_/);
  });

  it('subscribes to public topics without a token, and refuses token topics without one', async () => {
    const { server, backend } = await startServer();
    await externalTopic(backend, 'news', 'public');
    await externalTopic(backend, 'secret', 'token');
    const news = subscriber(server.url, ['news']);
    await news.open();
    await backend.publish('news', 'hello');
    await waitFor('the event', () => news.events.length === 1);

    const secret = subscriber(server.url, ['secret']);
    await waitFor('closed', () => secret.statuses.includes('closed'));
    expect(secret.errors).toEqual(['unauthorized']);
  });

  it('stops with not_found when an admin makes the topic internal', async () => {
    const { server, backend } = await startServer();
    await externalTopic(backend, 'news', 'public');
    const sub = subscriber(server.url, ['news']);
    await sub.open();
    await backend.topics.setExternal('news', false);
    await waitFor('closed', () => sub.statuses.includes('closed'));
    expect(sub.errors.at(-1)).toBe('not_found');
  });

  it('resumes from a saved cursor with every event it missed, across several topics', async () => {
    const { server, backend } = await startServer();
    await externalTopic(backend, 'a', 'public');
    await externalTopic(backend, 'chat:lobby', 'public');
    const first = subscriber(server.url, ['a', 'chat:lobby']);
    await first.open();
    await publishAll(backend, 'a', [1, 2]);
    await waitFor('two events', () => first.events.length === 2);
    const cursor = first.events[1]!.cursor;
    first.stop();

    await publishAll(backend, 'a', [3]);
    await publishAll(backend, 'chat:lobby', [1, 2]);
    const second = subscriber(server.url, ['a', 'chat:lobby'], { lastEventId: cursor });
    await waitFor('missed events', () => second.events.length === 3);
    expect(second.seqs('a')).toEqual([3]);
    expect(second.seqs('chat:lobby')).toEqual([1, 2]);
  });

  it('receives every seq exactly once across a cut connection and a server restart', async () => {
    const { server, backend } = await startServer({ PICLOUD_REALTIME_HEARTBEAT_SEC: '1' });
    await externalTopic(backend, 'orders');
    const proxy = await TcpProxy.start(() => server.port);
    cleanups.push(() => proxy.close());
    const sub = subscriber(proxy.url, ['orders'], { getToken: () => backend.subscriberToken(['orders']) });
    await sub.open();

    await publishAll(backend, 'orders', range(1, 10));
    await waitFor('the first events', () => sub.events.length >= 5);
    proxy.cutAll(); // mid-stream
    await publishAll(backend, 'orders', range(11, 20));
    await waitFor('events after the cut', () => sub.seqs().includes(15));

    await server.restart(); // SIGKILL, then start again on the same database
    await publishAll(backend, 'orders', range(21, 30));
    await waitFor('every event', () => sub.events.length >= 30, 30_000);
    expect(sub.seqs()).toEqual(range(1, 30));
    expect(proxy.accepted).toBeGreaterThanOrEqual(3);
  });

  it('notices a connection that went silent and recovers what was published meanwhile', async () => {
    const { server, backend } = await startServer({ PICLOUD_REALTIME_HEARTBEAT_SEC: '1' });
    await externalTopic(backend, 'orders', 'public');
    const proxy = await TcpProxy.start(() => server.port);
    cleanups.push(() => proxy.close());
    const sub = subscriber(proxy.url, ['orders']);
    await sub.open();
    await publishAll(backend, 'orders', [1, 2, 3]);
    await waitFor('the first events', () => sub.events.length === 3);
    proxy.freezeAll();
    await publishAll(backend, 'orders', [4, 5, 6]);
    await waitFor('events published while frozen', () => sub.events.length >= 6, 20_000);
    expect(sub.seqs()).toEqual(range(1, 6));
    expect(sub.errors).toContain('heartbeat_timeout');
  });

  it('loses nothing when tokens expire and getToken refreshes them', async () => {
    const { server, backend } = await startServer({
      PICLOUD_SUBSCRIBER_TOKEN_TTL_MIN_SEC: '1',
      PICLOUD_REALTIME_TOKEN_NOTICE_SEC: '1',
    });
    await externalTopic(backend, 'orders');
    let tokens = 0;
    const sub = subscriber(server.url, ['orders'], {
      getToken: async () => {
        tokens++;
        await backendRoundTrip();
        return backend.subscriberToken(['orders'], 3);
      },
    });
    await sub.open();
    // Publish steadily while several tokens expire under the subscription.
    for (let n = 1; tokens < 4; n++) {
      if (n > 1000) throw new Error('the token was never refreshed');
      await publishAll(backend, 'orders', [n]);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const last = (await backend.topics.get('orders')).lastSeq;
    await waitFor('every event', () => sub.events.length >= last);
    expect(sub.seqs()).toEqual(range(1, last));
  });

  it('reconnects once per token lifetime when tokens live no longer than the notice', async () => {
    const { server, backend } = await startServer({ PICLOUD_SUBSCRIBER_TOKEN_TTL_MIN_SEC: '1' });
    await externalTopic(backend, 'orders');
    let tokens = 0;
    const sub = subscriber(server.url, ['orders'], {
      getToken: async () => {
        tokens++;
        await backendRoundTrip();
        return backend.subscriberToken(['orders'], 1);
      },
    });
    await sub.open();
    const started = Date.now();
    for (let n = 1; Date.now() - started < 4000; n++) {
      await publishAll(backend, 'orders', [n]);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const last = (await backend.topics.get('orders')).lastSeq;
    await waitFor('every event', () => sub.events.length >= last);
    expect(sub.seqs()).toEqual(range(1, last));
    // About one token a second; a reconnect loop would ask hundreds of times.
    expect(tokens).toBeLessThan(15);
  });

  it('tells the subscriber which events retention dropped, then carries on', async () => {
    const { server, backend } = await startServer({ PICLOUD_RETENTION_INTERVAL_SEC: '1' });
    await backend.topics.create('short', { authMode: 'public', retention: { maxEvents: 3 } });
    await backend.topics.setExternal('short', true);
    await publishAll(backend, 'short', range(1, 10));
    await waitFor('retention to prune', async () => (await backend.readEvents('short')).events[0]?.seq === 8, 15_000);

    const sub = subscriber(server.url, ['short'], { lastEventId: 'short:2' });
    await waitFor('the reset', () => sub.resets.length === 1);
    expect(sub.resets[0]).toMatchObject({ reason: 'cursor_expired', lost: [{ topic: 'short', fromSeq: 3, toSeq: 7 }] });
    await publishAll(backend, 'short', [11]);
    await waitFor('retained and new events', () => sub.seqs().includes(11));
    expect(sub.seqs()).toEqual([8, 9, 10, 11]);
  });
});
