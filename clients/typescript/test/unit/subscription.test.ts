import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { createClient, type PicloudError, type PicloudEvent, type ResetInfo } from '../../src/index.js';
import type { SubscribeOptions, SubscriptionStatus } from '../../src/subscription.js';
import { FakeRealtimeServer } from '../support/fake-realtime.js';
import { waitFor } from '../support/wait.js';

let server: FakeRealtimeServer;

/** Lets wall-clock time pass (the stimulus, not a wait for a result). */
const passes = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
beforeEach(async () => {
  server = await FakeRealtimeServer.start();
});
afterEach(async () => {
  await server.close();
});

/** A subscription that records everything it is told. */
function record(topics: string[], options: Partial<SubscribeOptions> = {}) {
  const events: PicloudEvent[] = [];
  const statuses: SubscriptionStatus[] = [];
  const errors: { error: PicloudError; willRetry: boolean }[] = [];
  const resets: ResetInfo[] = [];
  const client = createClient({ baseUrl: server.url, app: 'shop' });
  const stop = client.subscribe(topics, {
    backoff: { initialDelayMs: 5, maxDelayMs: 20 },
    onEvent: (e) => events.push(e),
    onStatus: (s) => statuses.push(s),
    onError: (error, { willRetry }) => errors.push({ error, willRetry }),
    onReset: (r) => resets.push(r),
    ...options,
  });
  const seqs = (topic = topics[0]) => events.filter((e) => e.topic === topic).map((e) => e.seq);
  return { events, statuses, errors, resets, stop, seqs };
}

describe('subscribe', () => {
  it('requests the topics as an event stream and delivers events with their cursor', async () => {
    const sub = record(['orders', 'chat:lobby']);
    const stream = (await server.stream(1)).open();
    expect(stream.url.pathname).toBe('/v1/apps/shop/realtime');
    expect(stream.url.searchParams.getAll('topic')).toEqual(['orders', 'chat:lobby']);
    expect(stream.headers.accept).toBe('text/event-stream');
    expect(stream.lastEventId).toBeUndefined();

    stream.hello('chat:lobby:7,orders:12');
    await waitFor('open', () => sub.statuses.includes('open'));
    stream.frame(
      'order.created',
      { topic: 'orders', seq: 13, type: 'order.created', data: { id: 42 }, published_at: 1763996400123 },
      'chat:lobby:7,orders:13',
    );
    await waitFor('event', () => sub.events.length === 1);
    expect(sub.events[0]).toEqual({
      topic: 'orders',
      seq: 13,
      type: 'order.created',
      data: { id: 42 },
      publishedAt: 1763996400123,
      cursor: 'chat:lobby:7,orders:13',
      id: 'chat:lobby:7,orders:13',
    });
    expect(sub.statuses).toEqual(['connecting', 'open']);
    sub.stop();
  });

  it('sends lastEventId as Last-Event-ID and skips events it covers', async () => {
    const sub = record(['orders'], { lastEventId: 'orders:5' });
    const stream = (await server.stream(1)).open();
    expect(stream.lastEventId).toBe('orders:5');
    stream.hello('orders:5').event('orders', 5).event('orders', 6);
    await waitFor('seq 6', () => sub.events.length >= 1);
    expect(sub.seqs()).toEqual([6]);
    sub.stop();
  });

  it('reconnects after a drop from the last cursor and never repeats an event', async () => {
    const sub = record(['orders']);
    const first = (await server.stream(1)).open().hello('orders:0');
    first.event('orders', 1).event('orders', 2);
    await waitFor('two events', () => sub.events.length === 2);
    first.destroy();

    const second = await server.stream(2);
    expect(second.lastEventId).toBe('orders:2');
    await waitFor('reconnecting', () => sub.statuses.includes('reconnecting'));
    // A server replaying too much must not show an event twice.
    second.open().hello('orders:2').event('orders', 2).event('orders', 3);
    await waitFor('seq 3', () => sub.seqs().includes(3));
    expect(sub.seqs()).toEqual([1, 2, 3]);
    expect(sub.errors.every((e) => e.willRetry)).toBe(true);
    sub.stop();
  });

  it('resumes from the hello cursor for a topic that had no event before the drop', async () => {
    const sub = record(['a', 'b']);
    const first = (await server.stream(1)).open().hello('a:4,b:9').event('a', 5, {}, 'a:5,b:9');
    await waitFor('event', () => sub.events.length === 1);
    first.end();
    expect((await server.stream(2)).lastEventId).toBe('a:5,b:9');
    sub.stop();
  });

  it('retries server errors with backoff and stops on 404', async () => {
    const sub = record(['orders']);
    (await server.stream(1)).fail(503, 'unavailable');
    (await server.stream(2)).fail(404, 'not_found');
    await waitFor('closed', () => sub.statuses.includes('closed'));
    expect(sub.errors.map((e) => [e.error.code, e.error.status, e.willRetry])).toEqual([
      ['unavailable', 503, true],
      ['not_found', 404, false],
    ]);
    expect(server.streams).toHaveLength(2);
  });

  it('stops on a refused token when there is no getToken', async () => {
    const sub = record(['orders']);
    (await server.stream(1)).fail(401, 'unauthorized');
    await waitFor('closed', () => sub.statuses.includes('closed'));
    expect(sub.errors.map((e) => [e.error.code, e.willRetry])).toEqual([['unauthorized', false]]);
  });

  it('sends the token from getToken as a bearer token', async () => {
    const sub = record(['orders'], { getToken: () => Promise.resolve({ token: 'tok-1' }) });
    expect((await server.stream(1)).authorization).toBe('Bearer tok-1');
    sub.stop();
  });

  it('on 401 asks getToken again and resumes from the cursor', async () => {
    let calls = 0;
    const sub = record(['orders'], { getToken: () => `tok-${String(++calls)}` });
    const first = (await server.stream(1)).open().hello('orders:0').event('orders', 1);
    await waitFor('event', () => sub.events.length === 1);
    first.destroy();
    const refused = await server.stream(2);
    expect(refused.authorization).toBe('Bearer tok-1');
    refused.fail(401, 'unauthorized');
    const third = await server.stream(3);
    expect([third.authorization, third.lastEventId]).toEqual(['Bearer tok-2', 'orders:1']);
    third.open().hello('orders:1').event('orders', 2);
    await waitFor('seq 2', () => sub.seqs().includes(2));
    expect(sub.seqs()).toEqual([1, 2]);
    sub.stop();
  });

  it('on token_expiring fetches a token and switches connections with no loss and no duplicate', async () => {
    let calls = 0;
    const sub = record(['orders'], { getToken: () => `tok-${String(++calls)}` });
    const first = (await server.stream(1)).open().hello('orders:0').event('orders', 1);
    await waitFor('event', () => sub.events.length === 1);
    await passes(1100); // a connection younger than 1 s waits for token_expired instead
    first.frame('token_expiring', { expires_at: Date.now() + 60_000 });
    const second = await server.stream(2);
    expect([second.authorization, second.lastEventId]).toEqual(['Bearer tok-2', 'orders:1']);
    await waitFor('old connection closed by the client', () => first.closed);
    second.open().hello('orders:1').event('orders', 2);
    await waitFor('seq 2', () => sub.seqs().includes(2));
    expect(sub.seqs()).toEqual([1, 2]);
    expect(sub.errors).toEqual([]);
    expect(sub.statuses).toEqual(['connecting', 'open']);
    sub.stop();
  });

  it('does not switch early on a token that is expiring as soon as it is used', async () => {
    let calls = 0;
    const sub = record(['orders'], { getToken: () => `tok-${String(++calls)}` });
    const first = (await server.stream(1)).open().hello('orders:0');
    first.frame('token_expiring', { expires_at: Date.now() + 500 }).event('orders', 1);
    await waitFor('event', () => sub.events.length === 1);
    expect([calls, server.streams.length, first.closed]).toEqual([1, 1, false]);
    // The cut still reconnects at once with a fresh token.
    first.frame('token_expired', { expired_at: Date.now() }).end();
    expect((await server.stream(2)).authorization).toBe('Bearer tok-2');
    sub.stop();
  });

  it('on token_expired reconnects at once with a fresh token and the cursor', async () => {
    let calls = 0;
    const sub = record(['orders'], {
      getToken: () => `tok-${String(++calls)}`,
      // A long backoff: reconnecting after an expiry must not wait for it.
      backoff: { initialDelayMs: 60_000 },
    });
    const first = (await server.stream(1)).open().hello('orders:0').event('orders', 1);
    await waitFor('event', () => sub.events.length === 1);
    first.frame('token_expired', { expired_at: Date.now() }).end();
    const second = await server.stream(2);
    expect([second.authorization, second.lastEventId]).toEqual(['Bearer tok-2', 'orders:1']);
    sub.stop();
  });

  it('retries when getToken fails, then connects', async () => {
    let calls = 0;
    const sub = record(['orders'], {
      getToken: () => (++calls === 1 ? Promise.reject(new Error('auth server down')) : 'tok'),
    });
    expect((await server.stream(1)).authorization).toBe('Bearer tok');
    expect(sub.errors.map((e) => [e.error.code, e.willRetry])).toEqual([['token_refresh_failed', true]]);
    sub.stop();
  });

  it('treats silence longer than twice the heartbeat as a dead connection', async () => {
    const sub = record(['orders']);
    (await server.stream(1)).open().hello('orders:0', { heartbeatSecs: 0.05 }).event('orders', 1);
    const second = await server.stream(2);
    expect(second.lastEventId).toBe('orders:1');
    expect(sub.errors.map((e) => e.error.code)).toContain('heartbeat_timeout');
    sub.stop();
  });

  it('keeps a connection that only sends heartbeat comments', async () => {
    const sub = record(['orders']);
    const stream = (await server.stream(1)).open().hello('orders:0', { heartbeatSecs: 0.05 });
    // Heartbeats for six times the silence limit, then an event on the same connection.
    for (let i = 0; i < 30; i++) {
      stream.write(': heartbeat\n\n');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    stream.event('orders', 1);
    await waitFor('event', () => sub.events.length === 1);
    expect(server.streams).toHaveLength(1);
    sub.stop();
  });

  it('surfaces a reset, moves to where the stream continues and carries on', async () => {
    const sub = record(['orders'], { lastEventId: 'orders:500' });
    (await server.stream(1))
      .open()
      .hello('orders:500')
      .frame('reset', { reason: 'cursor_invalid', cursor: 'orders:3', lost: [] }, 'orders:3')
      .event('orders', 4);
    await waitFor('event after reset', () => sub.events.length === 1);
    expect(sub.resets).toEqual([{ reason: 'cursor_invalid', cursor: 'orders:3', lost: [] }]);
    expect(sub.seqs()).toEqual([4]);
    sub.stop();
  });

  it('reports the lost range of an expired cursor', async () => {
    const sub = record(['orders'], { lastEventId: 'orders:12' });
    (await server.stream(1))
      .open()
      .hello('orders:12')
      .frame(
        'reset',
        { reason: 'cursor_expired', cursor: 'orders:40', lost: [{ topic: 'orders', from_seq: 13, to_seq: 39 }] },
        'orders:40',
      )
      .event('orders', 40);
    await waitFor('event', () => sub.events.length === 1);
    expect(sub.resets[0]?.lost).toEqual([{ topic: 'orders', fromSeq: 13, toSeq: 39 }]);
    expect(sub.seqs()).toEqual([40]);
    sub.stop();
  });

  it('applies no event from a server with an unknown protocol major version, and stops', async () => {
    const sub = record(['orders']);
    (await server.stream(1)).open().hello('orders:0', { protocol: 2 }).event('orders', 1);
    await waitFor('closed', () => sub.statuses.includes('closed'));
    expect(sub.events).toEqual([]);
    expect(sub.statuses).not.toContain('open');
    expect(sub.errors.map((e) => [e.error.code, e.willRetry])).toEqual([['protocol_incompatible', false]]);
    expect(server.streams).toHaveLength(1);
  });

  it('accepts a minor version of the protocol it knows', async () => {
    const sub = record(['orders']);
    (await server.stream(1)).open().hello('orders:0', { protocol: '1.3' }).event('orders', 1);
    await waitFor('event', () => sub.events.length === 1);
    sub.stop();
  });

  it('stops on a stream that does not start with hello', async () => {
    const sub = record(['orders']);
    (await server.stream(1)).open().event('orders', 1);
    await waitFor('closed', () => sub.statuses.includes('closed'));
    expect(sub.events).toEqual([]);
    expect(sub.errors[0]?.error.code).toBe('protocol_incompatible');
  });

  it('closes the connection and goes quiet on unsubscribe', async () => {
    const sub = record(['orders']);
    const stream = (await server.stream(1)).open().hello('orders:0');
    await waitFor('open', () => sub.statuses.includes('open'));
    sub.stop();
    await waitFor('server sees the close', () => stream.closed);
    await waitFor('closed', () => sub.statuses.includes('closed'));
    expect(server.streams).toHaveLength(1);
  });

  it('stops when the AbortSignal aborts, even while waiting to reconnect', async () => {
    const controller = new AbortController();
    const sub = record(['orders'], { signal: controller.signal, backoff: { initialDelayMs: 60_000 } });
    (await server.stream(1)).fail(503, 'unavailable');
    await waitFor('reconnecting', () => sub.statuses.includes('reconnecting'));
    controller.abort();
    await waitFor('closed', () => sub.statuses.includes('closed'));
    expect(server.streams).toHaveLength(1);
  });

  it('keeps streaming when onEvent throws', async () => {
    const seen: number[] = [];
    const reported: unknown[] = [];
    const original = globalThis.reportError;
    globalThis.reportError = (e: unknown) => reported.push(e);
    try {
      const client = createClient({ baseUrl: server.url, app: 'shop' });
      const stop = client.subscribe(['orders'], {
        onEvent: (e) => {
          seen.push(e.seq);
          if (e.seq === 1) throw new Error('app bug');
        },
      });
      (await server.stream(1)).open().hello('orders:0').event('orders', 1).event('orders', 2);
      await waitFor('both events', () => seen.length === 2);
      expect(reported).toHaveLength(1);
      stop();
    } finally {
      globalThis.reportError = original;
    }
  });
});

describe('stream (async iterator)', () => {
  it('yields events and unsubscribes when the loop ends', async () => {
    const client = createClient({ baseUrl: server.url, app: 'shop' });
    const seqs: number[] = [];
    const done = (async () => {
      for await (const event of client.stream(['orders'])) {
        seqs.push(event.seq);
        if (event.seq === 3) break;
      }
    })();
    const stream = (await server.stream(1)).open().hello('orders:0');
    stream.event('orders', 1).event('orders', 2).event('orders', 3);
    await done;
    expect(seqs).toEqual([1, 2, 3]);
    await waitFor('connection closed', () => stream.closed);
  });

  it('throws the error that ended the subscription', async () => {
    const client = createClient({ baseUrl: server.url, app: 'shop' });
    const loop = (async () => {
      for await (const event of client.stream(['orders'])) expect(event).toBeUndefined();
    })();
    (await server.stream(1)).fail(404, 'not_found');
    await expect(loop).rejects.toMatchObject({ code: 'not_found', status: 404 });
  });
});
