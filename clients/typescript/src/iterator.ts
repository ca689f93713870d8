/** The async-iterator form of a subscription: `for await (const event of client.stream(...))`. */

import type { PicloudError } from './errors.js';
import type { PicloudEvent } from './protocol.js';
import type { SubscribeOptions, Unsubscribe } from './subscription.js';

/** Options of `client.stream`: those of `subscribe` without `onEvent`. */
export type StreamOptions<T = unknown> = Omit<SubscribeOptions<T>, 'onEvent'>;

/**
 * Buffers a subscription's events for an async iterator. Breaking out of the loop (or
 * calling `return`) unsubscribes; an error that ends the subscription is thrown from
 * the loop; aborting `signal` ends the loop.
 */
export function iterate<T>(
  subscribe: (options: SubscribeOptions<T>) => Unsubscribe,
  options: StreamOptions<T>,
): AsyncIterableIterator<PicloudEvent<T>> {
  const buffered: PicloudEvent<T>[] = [];
  let waiting: { resolve: (r: IteratorResult<PicloudEvent<T>>) => void; reject: (e: unknown) => void } | undefined;
  let failure: PicloudError | undefined;
  let finished = false;

  const settle = (): void => {
    if (!waiting) return;
    const { resolve, reject } = waiting;
    const next = buffered.shift();
    if (next !== undefined) {
      waiting = undefined;
      resolve({ value: next, done: false });
    } else if (failure) {
      waiting = undefined;
      reject(failure);
      failure = undefined;
    } else if (finished) {
      waiting = undefined;
      resolve({ value: undefined, done: true });
    }
  };

  const unsubscribe = subscribe({
    ...options,
    onEvent: (event) => {
      buffered.push(event);
      settle();
    },
    onError: (error, context) => {
      options.onError?.(error, context);
      if (!context.willRetry) failure = error;
    },
    onStatus: (status) => {
      options.onStatus?.(status);
      if (status === 'closed') {
        finished = true;
        settle();
      }
    },
  });

  const iterator: AsyncIterableIterator<PicloudEvent<T>> = {
    next: () =>
      new Promise((resolve, reject) => {
        waiting = { resolve, reject };
        settle();
      }),
    return: () => {
      unsubscribe();
      finished = true;
      buffered.length = 0;
      settle();
      return Promise.resolve({ value: undefined, done: true });
    },
    [Symbol.asyncIterator]: () => iterator,
  };
  return iterator;
}
