/**
 * Svelte binding: a topic subscription as a readable store. It connects when the first
 * component subscribes (`$orders`) and disconnects after the last one leaves.
 */

import { readable, type Readable } from 'svelte/store';

import { TopicStore, type Subscriber, type TopicState, type TopicStoreOptions } from './store.js';

export type { TopicState, TopicStoreOptions } from './store.js';

/**
 * A readable store of `{ status, last, events, error, reset }` for `topics`.
 *
 * ```svelte
 * <script>
 *   const orders = topicStore(client, 'orders', { getToken });
 * </script>
 * {#each $orders.events as event (event.cursor)}<li>{event.seq}</li>{/each}
 * ```
 */
export function topicStore<T = unknown>(
  client: Subscriber,
  topics: string | readonly string[],
  options: TopicStoreOptions<T> = {},
): Readable<TopicState<T>> {
  const store = new TopicStore<T>(client, topics, options);
  return readable(store.getSnapshot(), (set) => {
    const update = (): void => {
      set(store.getSnapshot());
    };
    const stop = store.subscribe(update);
    update();
    return stop;
  });
}
