import { get } from 'svelte/store';
import { describe, expect, it } from 'vitest';

import type { TopicState } from '../../src/store.js';
import { topicStore } from '../../src/svelte.js';
import { FakeSubscriber } from '../support/fake-subscriber.js';
import { waitFor } from '../support/wait.js';

describe('topicStore', () => {
  it('connects for its first subscriber, updates it, and disconnects after the last leaves', async () => {
    const client = new FakeSubscriber();
    const store = topicStore(client, 'orders', { limit: 2 });
    expect(client.subscriptions).toHaveLength(0);

    const seen: TopicState[] = [];
    const unsubscribe = store.subscribe((state) => seen.push(state));
    const also = store.subscribe(() => undefined);
    expect(client.live).toHaveLength(1);
    expect(seen.at(-1)?.status).toBe('connecting');

    const subscription = client.live[0]!;
    subscription.options.onStatus?.('open');
    for (const seq of [1, 2, 3]) subscription.emit(seq);
    expect(seen.at(-1)).toMatchObject({ status: 'open', last: { seq: 3 } });
    expect(seen.at(-1)?.events.map((e) => e.seq)).toEqual([2, 3]);
    expect(get(store).last?.seq).toBe(3);

    unsubscribe();
    also();
    await waitFor('disconnected', () => client.live.length === 0);
  });

  it('resumes from the last event when subscribed again', async () => {
    const client = new FakeSubscriber();
    const store = topicStore(client, 'orders');
    const first = store.subscribe(() => undefined);
    client.live[0]!.emit(5);
    first();
    await waitFor('disconnected', () => client.live.length === 0);
    const second = store.subscribe(() => undefined);
    expect(client.live[0]!.options.lastEventId).toBe('orders:5');
    expect(get(store).last?.seq).toBe(5);
    second();
  });
});
