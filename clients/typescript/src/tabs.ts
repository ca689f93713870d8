/**
 * `shareAcrossTabs`: the tabs of one origin that subscribe to the same topics share one
 * connection. The tab holding a Web Lock is the leader and runs the subscription; it
 * fans frames out over a BroadcastChannel. Every tab keeps its own cursor and drops
 * events it has seen, so when the leader closes, the next tab to get the lock resumes
 * from its own last cursor and nothing is lost or shown twice.
 */

import { CursorTracker } from './cursor.js';
import { PicloudError } from './errors.js';
import { eventAt, type PicloudEvent, type ResetInfo } from './protocol.js';
import {
  callSafely,
  startSubscription,
  type StreamTarget,
  type SubscribeOptions,
  type SubscriptionStatus,
  type Unsubscribe,
} from './subscription.js';

/** The browser APIs tab sharing needs (injectable for tests). */
export interface TabEnvironment {
  readonly locks: {
    request(name: string, options: { signal?: AbortSignal }, callback: () => Promise<void>): Promise<unknown>;
  };
  readonly BroadcastChannel: new (name: string) => BroadcastChannel;
}

/** The browser's Web Locks and BroadcastChannel, when both exist. */
export function browserTabEnvironment(): TabEnvironment | undefined {
  const nav = (globalThis as { navigator?: { locks?: TabEnvironment['locks'] } }).navigator;
  if (!nav?.locks || typeof globalThis.BroadcastChannel !== 'function') return undefined;
  return { locks: nav.locks, BroadcastChannel: globalThis.BroadcastChannel };
}

type Message =
  | { readonly kind: 'event'; readonly event: PicloudEvent }
  | { readonly kind: 'cursor'; readonly cursor: string }
  | { readonly kind: 'reset'; readonly reset: ResetInfo }
  | { readonly kind: 'status'; readonly status: SubscriptionStatus }
  | {
      readonly kind: 'error';
      readonly error: { status: number; code: string; message: string };
      readonly willRetry: boolean;
    }
  | { readonly kind: 'sync' }
  | { readonly kind: 'state'; readonly status: SubscriptionStatus; readonly cursor: string | undefined };

/**
 * Subscribes through the tab that leads for `key` (the server, app and topics), and
 * becomes that leader when it is free.
 */
export function subscribeAcrossTabs<T>(
  key: string,
  target: StreamTarget,
  options: SubscribeOptions<T>,
  env: TabEnvironment,
): Unsubscribe {
  const name = `picloud-tabs-v1|${key}`;
  const tracker = new CursorTracker(target.topics, options.lastEventId);
  const channel = new env.BroadcastChannel(name);
  const lockRequest = new AbortController();
  let stopped = false;
  let status: SubscriptionStatus | undefined;
  let lead: { stop: Unsubscribe; release: () => void } | undefined;

  const post = (message: Message): void => {
    if (!stopped) channel.postMessage(message);
  };
  const setStatus = (next: SubscriptionStatus): void => {
    if (status === next || stopped) return;
    status = next;
    callSafely(() => options.onStatus?.(next));
  };
  const deliver = (event: PicloudEvent): void => {
    if (!tracker.accept(event.topic, event.seq)) return;
    const own = eventAt<T>(event, tracker.cursor ?? event.cursor);
    callSafely(() => {
      options.onEvent(own);
    });
  };
  const report = (error: PicloudError, willRetry: boolean): void => {
    callSafely(() => options.onError?.(error, { willRetry }));
    if (!willRetry) stop();
  };
  const reset = (info: ResetInfo): void => {
    tracker.applyReset(info);
    callSafely(() => options.onReset?.(info));
  };

  channel.onmessage = (message: MessageEvent<Message>) => {
    const data = message.data;
    switch (data.kind) {
      case 'event':
        deliver(data.event);
        break;
      case 'cursor':
        tracker.adoptStart(data.cursor);
        break;
      case 'reset':
        reset(data.reset);
        break;
      case 'status':
        if (data.status !== 'closed') setStatus(data.status);
        break;
      case 'error':
        report(new PicloudError(data.error.status, data.error.code, data.error.message), data.willRetry);
        break;
      case 'sync':
        if (lead) post({ kind: 'state', status: status ?? 'connecting', cursor: tracker.cursor });
        break;
      case 'state':
        if (data.cursor !== undefined) tracker.adoptStart(data.cursor);
        if (data.status !== 'closed') setStatus(data.status);
        break;
    }
  };

  const leadUntilReleased = (): Promise<void> =>
    new Promise<void>((release) => {
      if (stopped) {
        release();
        return;
      }
      const stopLeading = startSubscription<T>(
        target,
        {
          ...options,
          lastEventId: tracker.cursor,
          signal: undefined,
          onEvent: (event) => {
            post({ kind: 'event', event });
            deliver(event);
          },
          onStatus: (next) => {
            if (next === 'closed') {
              release();
              return;
            }
            post({ kind: 'status', status: next });
            setStatus(next);
          },
          onReset: (info) => {
            post({ kind: 'reset', reset: info });
            reset(info);
          },
          onError: (error, context) => {
            post({
              kind: 'error',
              error: { status: error.status, code: error.code, message: error.message },
              willRetry: context.willRetry,
            });
            report(error, context.willRetry);
          },
        },
        {
          onCursor: (cursor) => {
            tracker.adoptStart(cursor);
            post({ kind: 'cursor', cursor });
          },
        },
      );
      lead = { stop: stopLeading, release };
    });

  setStatus('connecting');
  env.locks.request(name, { signal: lockRequest.signal }, leadUntilReleased).catch(() => {
    // Aborted while waiting for the lock: this tab unsubscribed.
  });
  post({ kind: 'sync' });

  function stop(): void {
    if (stopped) return;
    if (lead) post({ kind: 'status', status: 'reconnecting' });
    stopped = true;
    lockRequest.abort();
    lead?.stop();
    lead?.release();
    lead = undefined;
    channel.close();
    status = 'closed';
    callSafely(() => options.onStatus?.('closed'));
  }

  options.signal?.addEventListener('abort', stop);
  if (options.signal?.aborted) stop();
  return () => {
    options.signal?.removeEventListener('abort', stop);
    stop();
  };
}
