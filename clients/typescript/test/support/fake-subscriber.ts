/** A stand-in for a client's `subscribe`, letting tests play the server's part. */
import { eventAt } from '../../src/protocol.js';
import type { Subscriber } from '../../src/store.js';
import type { SubscribeOptions } from '../../src/subscription.js';

export interface FakeSubscription {
  topics: string | readonly string[];
  options: SubscribeOptions;
  stopped: boolean;
  /** Delivers an event with `seq` on the first topic. */
  emit(seq: number, data?: unknown): void;
}

export class FakeSubscriber implements Subscriber {
  readonly subscriptions: FakeSubscription[] = [];

  subscribe<T>(topics: string | readonly string[], options: SubscribeOptions<T>): () => void {
    const topic = typeof topics === 'string' ? topics : (topics[0] ?? '');
    const subscription: FakeSubscription = {
      topics,
      options: options,
      stopped: false,
      emit(seq, data = { seq }) {
        const event = eventAt({ topic, seq, type: 'message', data, publishedAt: seq }, `${topic}:${String(seq)}`);
        this.options.onEvent(event);
      },
    };
    this.subscriptions.push(subscription);
    return () => {
      subscription.stopped = true;
    };
  }

  /** The subscriptions not stopped yet. */
  get live(): FakeSubscription[] {
    return this.subscriptions.filter((s) => !s.stopped);
  }
}
