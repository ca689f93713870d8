import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { createClient, type PicloudError, type PicloudEvent } from '../../src/index.js';
import type { SubscriptionStatus } from '../../src/subscription.js';
import { subscribeAcrossTabs, type TabEnvironment } from '../../src/tabs.js';
import { FakeLocks } from '../support/fake-locks.js';
import { FakeRealtimeServer } from '../support/fake-realtime.js';
import { waitFor } from '../support/wait.js';

let server: FakeRealtimeServer;
let env: TabEnvironment;
let key: string;
beforeEach(async () => {
  server = await FakeRealtimeServer.start();
  env = { locks: new FakeLocks(), BroadcastChannel };
  key = `test-${String(Math.random())}`;
});
afterEach(async () => {
  await server.close();
});

/** One browser tab subscribing to `orders` with sharing on. */
function tab() {
  const events: PicloudEvent[] = [];
  const statuses: SubscriptionStatus[] = [];
  const errors: { error: PicloudError; willRetry: boolean }[] = [];
  const target = {
    url: `${server.url}/v1/apps/shop/realtime?topic=orders`,
    topics: ['orders'],
    fetch: globalThis.fetch,
  };
  const close = subscribeAcrossTabs(
    key,
    target,
    {
      backoff: { initialDelayMs: 5 },
      onEvent: (e) => events.push(e),
      onStatus: (s) => statuses.push(s),
      onError: (error, { willRetry }) => errors.push({ error, willRetry }),
    },
    env,
  );
  return { events, statuses, errors, close, seqs: () => events.map((e) => e.seq) };
}

describe('shareAcrossTabs', () => {
  it('gives every tab each event once over one connection, and a new leader resumes from the cursor', async () => {
    const tabs = [tab(), tab(), tab()];
    const first = (await server.stream(1)).open().hello('orders:0');
    await waitFor('all tabs open', () => tabs.every((t) => t.statuses.includes('open')));
    first.event('orders', 1).event('orders', 2);
    await waitFor('events in every tab', () => tabs.every((t) => t.events.length === 2));
    expect(server.streams).toHaveLength(1);

    // The leader tab closes; another takes over from where the tabs were.
    tabs[0]!.close();
    await waitFor('old connection closed', () => first.closed);
    const second = await server.stream(2);
    expect(second.lastEventId).toBe('orders:2');
    second.open().hello('orders:2').event('orders', 2).event('orders', 3);
    const rest = tabs.slice(1);
    await waitFor('seq 3 in the remaining tabs', () => rest.every((t) => t.seqs().includes(3)));
    for (const t of rest) expect(t.seqs()).toEqual([1, 2, 3]);
    expect(tabs[0]!.seqs()).toEqual([1, 2]);
    expect(server.streams).toHaveLength(2);
    for (const t of rest) t.close();
    await waitFor('all connections closed', () => second.closed);
  });

  it('gives a tab that joins later a cursor, so it can lead without losing events', async () => {
    const a = tab();
    const first = (await server.stream(1)).open().hello('orders:0').event('orders', 1);
    await waitFor('event', () => a.events.length === 1);
    const b = tab();
    first.event('orders', 2);
    await waitFor('b gets seq 2', () => b.seqs().includes(2));
    a.close();
    expect((await server.stream(2)).lastEventId).toBe('orders:2');
    b.close();
  });

  it('stops every tab when the shared subscription fails for good', async () => {
    const tabs = [tab(), tab()];
    (await server.stream(1)).fail(404, 'not_found');
    await waitFor('every tab closed', () => tabs.every((t) => t.statuses.includes('closed')));
    for (const t of tabs) expect(t.errors.map((e) => [e.error.code, e.willRetry])).toEqual([['not_found', false]]);
    expect(server.streams).toHaveLength(1);
  });

  it('falls back to a connection of its own where tabs cannot share (Node)', async () => {
    const client = createClient({ baseUrl: server.url, app: 'shop' });
    const seen: number[] = [];
    const stop = client.subscribe('orders', { shareAcrossTabs: true, onEvent: (e) => seen.push(e.seq) });
    (await server.stream(1)).open().hello('orders:0').event('orders', 1);
    await waitFor('event', () => seen.length === 1);
    stop();
  });
});
