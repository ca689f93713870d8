/**
 * A subscription kept as state: status, latest event, a bounded list of recent events
 * and the last error. It has the `subscribe` / `getSnapshot` shape that React's
 * `useSyncExternalStore` and Svelte stores build on, and connects only while someone
 * listens.
 */

import type { PicloudError } from './errors.js';
import type { PicloudEvent, ResetInfo } from './protocol.js';
import type { SubscribeOptions, SubscriptionStatus, Unsubscribe } from './subscription.js';

/** What a topic subscription looks like to a UI. */
export interface TopicState<T = unknown> {
  /** The subscription's status (`connecting` before the first connection). */
  readonly status: SubscriptionStatus;
  /** The latest event, if any arrived. */
  readonly last: PicloudEvent<T> | undefined;
  /** The most recent events, oldest first, at most `limit` of them. */
  readonly events: readonly PicloudEvent<T>[];
  /** The latest error; cleared when the connection is open again. */
  readonly error: PicloudError | undefined;
  /** The latest `reset` (events lost to retention), if any. */
  readonly reset: ResetInfo | undefined;
}

/** Options of a {@link TopicStore}. */
export interface TopicStoreOptions<T = unknown> extends Omit<SubscribeOptions<T>, 'onEvent' | 'signal'> {
  /** How many recent events `events` keeps (default 100). */
  readonly limit?: number | undefined;
  /** Also called for every event. */
  readonly onEvent?: ((event: PicloudEvent<T>) => void) | undefined;
}

/** Anything that can subscribe, such as a `PicloudClient`. */
export interface Subscriber {
  subscribe<T>(topics: string | readonly string[], options: SubscribeOptions<T>): Unsubscribe;
}

const INITIAL: TopicState<never> = {
  status: 'connecting',
  last: undefined,
  events: [],
  error: undefined,
  reset: undefined,
};

/** A subscription as an external store. */
export class TopicStore<T = unknown> {
  #options: TopicStoreOptions<T>;
  readonly #client: Subscriber;
  readonly #topics: string | readonly string[];
  readonly #listeners = new Set<() => void>();
  #state: TopicState<T> = INITIAL;
  #unsubscribe: Unsubscribe | undefined;
  #stopTimer: ReturnType<typeof setTimeout> | undefined;
  #cursor: string | undefined;
  #generation = 0;

  constructor(client: Subscriber, topics: string | readonly string[], options: TopicStoreOptions<T> = {}) {
    this.#client = client;
    this.#topics = topics;
    this.#options = options;
    this.#cursor = options.lastEventId;
  }

  /** Replaces the options; callbacks and `getToken` are read at call time, so this
   * takes effect without reconnecting. */
  setOptions(options: TopicStoreOptions<T>): void {
    this.#options = options;
  }

  /** The current state; the same object until something changes. */
  readonly getSnapshot = (): TopicState<T> => this.#state;

  /** Adds a listener, connecting on the first; returns the function that removes it. */
  readonly subscribe = (listener: () => void): (() => void) => {
    this.#listeners.add(listener);
    if (this.#stopTimer !== undefined) {
      clearTimeout(this.#stopTimer);
      this.#stopTimer = undefined;
    }
    this.#start();
    return () => {
      this.#listeners.delete(listener);
      if (this.#listeners.size > 0 || this.#stopTimer !== undefined) return;
      // Stopping a moment later lets a listener that comes straight back (React's
      // StrictMode, a keyed re-render) keep the connection.
      this.#stopTimer = setTimeout(() => {
        this.#stopTimer = undefined;
        if (this.#listeners.size === 0) this.#stop();
      }, 0);
    };
  };

  #start(): void {
    if (this.#unsubscribe) return;
    // Callbacks of a stopped subscription (its late `closed`) must not touch the state.
    const generation = ++this.#generation;
    const current = (): boolean => generation === this.#generation;
    const options = this.#options;
    const initialGetToken = options.getToken;
    const getToken = initialGetToken && (() => (this.#options.getToken ?? initialGetToken)());
    this.#unsubscribe = this.#client.subscribe<T>(this.#topics, {
      ...options,
      getToken,
      lastEventId: this.#cursor,
      onEvent: (event) => {
        if (!current()) return;
        this.#cursor = event.cursor;
        const limit = Math.max(1, this.#options.limit ?? 100);
        const events = [...this.#state.events, event];
        if (events.length > limit) events.splice(0, events.length - limit);
        this.#set({ last: event, events });
        this.#options.onEvent?.(event);
      },
      onStatus: (status) => {
        if (!current()) return;
        this.#set(status === 'open' ? { status, error: undefined } : { status });
        this.#options.onStatus?.(status);
      },
      onError: (error, context) => {
        if (!current()) return;
        this.#set({ error });
        this.#options.onError?.(error, context);
      },
      onReset: (reset) => {
        if (!current()) return;
        this.#set({ reset });
        this.#options.onReset?.(reset);
      },
    });
  }

  #stop(): void {
    const unsubscribe = this.#unsubscribe;
    this.#unsubscribe = undefined;
    this.#generation++;
    unsubscribe?.();
    this.#set({ status: 'closed' });
  }

  #set(change: Partial<TopicState<T>>): void {
    this.#state = { ...this.#state, ...change };
    for (const listener of [...this.#listeners]) listener();
  }
}
