/**
 * One resumable realtime subscription over streaming `fetch` (not EventSource, so it can
 * send `Authorization`, see a 401 and set `Last-Event-ID`).
 *
 * The loop: connect with the token and the cursor → read frames → on a drop, wait
 * (exponential backoff with jitter) and reconnect from the cursor. Token refreshes
 * (`token_expiring`, `token_expired`, a 401) reconnect at once from the cursor. The
 * {@link CursorTracker} drops any (topic, seq) already delivered, so no reconnect can
 * show an event twice.
 */

import { Backoff, type BackoffOptions } from './backoff.js';
import { CursorTracker } from './cursor.js';
import { PicloudError, errorFromResponse, networkError } from './errors.js';
import {
  FRAME,
  PROTOCOL_VERSION,
  parseEvent,
  parseHello,
  parseReset,
  eventAt,
  protocolMajor,
  type PicloudEvent,
  type ResetInfo,
} from './protocol.js';
import { SseParser, type SseMessage } from './sse-parser.js';

/** Where a subscription is: `open` once the server's `hello` arrived. */
export type SubscriptionStatus = 'connecting' | 'open' | 'reconnecting' | 'closed';

/** What `getToken` may return: the token, or an object holding it (such as the
 * answer of `client.subscriberToken`). */
export type TokenResult = string | { readonly token: string };

/** The app's token hook: called before the first connection and whenever the token
 * expires or is refused. */
export type GetToken = () => TokenResult | Promise<TokenResult>;

/** Stops a subscription. Calling it again does nothing. */
export type Unsubscribe = () => void;

/** Options of `client.subscribe`. */
export interface SubscribeOptions<T = unknown> {
  /** Called once per event, per topic in seq order, never twice for one (topic, seq). */
  onEvent(event: PicloudEvent<T>): void;
  /** Called on every failure; `willRetry` is false when the subscription has stopped
   * for good (unknown topics, an incompatible server, a refused token with no `getToken`). */
  onError?(error: PicloudError, context: { willRetry: boolean }): void;
  /** Called when the status changes. */
  onStatus?(status: SubscriptionStatus): void;
  /** Called when the server could not resume from the cursor: the events in
   * `reset.lost` will never arrive. The subscription carries on. */
  onReset?(reset: ResetInfo): void;
  /** Supplies a subscriber token for topics with `auth_mode: "token"`. */
  getToken?: GetToken | undefined;
  /** A cursor (an event's `id`) to resume from; without one the stream starts live. */
  lastEventId?: string | undefined;
  /** Aborting it stops the subscription, like calling the returned function. */
  signal?: AbortSignal | undefined;
  /** In browsers, let all tabs of this origin share one connection (see README). */
  shareAcrossTabs?: boolean | undefined;
  /** Reconnection delays; defaults to 1 s doubling to 30 s with 20 % jitter. */
  backoff?: BackoffOptions | undefined;
}

/** Internal hooks (used by tab sharing). */
export interface SubscriptionHooks {
  /** The cursor after a `hello` or `reset` frame. */
  onCursor?(cursor: string): void;
}

/** What to connect to. */
export interface StreamTarget {
  readonly url: string;
  readonly topics: readonly string[];
  readonly fetch: typeof fetch;
}

/** Starts a subscription and returns the function that stops it. */
export function startSubscription<T>(
  target: StreamTarget,
  options: SubscribeOptions<T>,
  hooks: SubscriptionHooks = {},
): Unsubscribe {
  const subscription = new Subscription(target, options, hooks);
  void subscription.run();
  return () => {
    subscription.stop();
  };
}

/** Calls an app callback so that its exceptions are reported but never break the stream. */
export function callSafely(callback: () => void): void {
  try {
    callback();
  } catch (error) {
    if (typeof globalThis.reportError === 'function') globalThis.reportError(error);
    else console.error(error);
  }
}

const DEFAULT_HEARTBEAT_SECS = 30;

/** A `token_expiring` this soon after `hello` means tokens live no longer than the
 * server's notice: a fresh one would be expiring at once too, so switching early would
 * only reconnect in a loop. Such a connection waits for `token_expired` instead. */
const MIN_AGE_FOR_EARLY_SWITCH_MS = 1000;

type StopReason = 'stop' | 'switch' | 'watchdog' | 'fatal';

/** One HTTP stream of a subscription. */
interface Connection {
  readonly controller: AbortController;
  reason?: StopReason;
  fatal?: PicloudError;
  tokenExpired?: boolean;
  /** When its `hello` arrived (ms). */
  openedAt?: number;
}

/** What to do after a connection ended. */
type Outcome =
  | { readonly next: 'retry'; readonly error: PicloudError } // wait with backoff
  | { readonly next: 'now' } // reconnect at once (planned: token switch)
  | { readonly next: 'stop'; readonly error?: PicloudError };

class Subscription<T> {
  readonly #target: StreamTarget;
  readonly #options: SubscribeOptions<T>;
  readonly #hooks: SubscriptionHooks;
  readonly #tracker: CursorTracker;
  readonly #backoff: Backoff;
  #status: SubscriptionStatus | undefined;
  #stopped = false;
  #connection: Connection | undefined;
  #wake: (() => void) | undefined;
  #heartbeatMs = DEFAULT_HEARTBEAT_SECS * 1000;
  #token: string | undefined;
  #tokenStale = true;
  #tokenTried = false;
  #refreshing: Promise<void> | undefined;

  constructor(target: StreamTarget, options: SubscribeOptions<T>, hooks: SubscriptionHooks) {
    this.#target = target;
    this.#options = options;
    this.#hooks = hooks;
    this.#tracker = new CursorTracker(target.topics, options.lastEventId);
    this.#backoff = new Backoff(options.backoff);
  }

  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#abort('stop');
    this.#wake?.();
  }

  async run(): Promise<void> {
    const { signal } = this.#options;
    const onAbort = (): void => {
      this.stop();
    };
    if (signal?.aborted) this.stop();
    signal?.addEventListener('abort', onAbort);
    try {
      if (!this.#stopped) this.#setStatus('connecting');
      while (!this.#stopped) {
        const outcome = await this.#connect();
        if (this.#isStopped()) break;
        if (outcome.next === 'stop') {
          if (outcome.error) this.#report(outcome.error, false);
          break;
        }
        if (outcome.next === 'retry') {
          this.#report(outcome.error, true);
          this.#setStatus('reconnecting');
          await this.#sleep(this.#backoff.next());
        }
      }
    } finally {
      this.#stopped = true;
      signal?.removeEventListener('abort', onAbort);
      this.#setStatus('closed');
    }
  }

  /** Runs one connection from request to end. */
  async #connect(): Promise<Outcome> {
    const { getToken } = this.#options;
    if (getToken) {
      try {
        if (this.#refreshing) await this.#refreshing;
        else if (this.#token === undefined || this.#tokenStale) await this.#refreshToken(getToken);
      } catch (error) {
        return { next: 'retry', error: tokenError(error) };
      }
      if (this.#stopped) return { next: 'stop' };
    }

    const connection: Connection = { controller: new AbortController() };
    this.#connection = connection;
    const watchdog = new Watchdog(() => {
      this.#abort('watchdog', connection);
    });
    watchdog.arm(this.#heartbeatMs * 2);
    try {
      const response = await this.#request(connection);
      if ('next' in response) return response;
      return await this.#read(response, connection, watchdog);
    } catch (error) {
      return this.#afterStop(connection) ?? { next: 'retry', error: networkError(error) };
    } finally {
      watchdog.clear();
      if (this.#connection === connection) this.#connection = undefined;
    }
  }

  /** Sends the request; returns the event stream, or what to do when there is none. */
  async #request(connection: Connection): Promise<ReadableStream<Uint8Array> | Outcome> {
    const headers: Record<string, string> = { accept: 'text/event-stream' };
    const token = this.#token;
    if (token !== undefined) headers.authorization = `Bearer ${token}`;
    const cursor = this.#tracker.cursor;
    if (cursor !== undefined) headers['last-event-id'] = cursor;
    const usedFreshToken = !this.#tokenTried;
    this.#tokenTried = true;

    const response = await this.#target.fetch(this.#target.url, {
      headers,
      cache: 'no-store',
      signal: connection.controller.signal,
    });
    if (response.ok && response.body) {
      const type = response.headers.get('content-type') ?? '';
      if (type.toLowerCase().startsWith('text/event-stream')) return response.body;
      await response.body.cancel().catch(ignore);
      return {
        next: 'retry',
        error: new PicloudError(response.status, 'invalid_response', `expected text/event-stream, got '${type}'`),
      };
    }
    const error = await errorFromResponse(response);
    if (response.status === 401 && this.#options.getToken) {
      // A token that worked before has expired: fetch a new one and go again at once.
      // A token fresh from getToken that is refused: back off, then ask again.
      if (token !== undefined && this.#token === token) this.#tokenStale = true;
      return usedFreshToken ? { next: 'retry', error } : { next: 'now' };
    }
    const permanent = [400, 401, 403, 404, 405, 410].includes(response.status);
    return permanent ? { next: 'stop', error } : { next: 'retry', error };
  }

  /** Reads frames until the stream ends or is aborted. */
  async #read(
    body: ReadableStream<Uint8Array>,
    connection: Connection,
    watchdog: Watchdog,
  ): Promise<Outcome> {
    const token = this.#token;
    let helloSeen = false;
    const parser = new SseParser({
      onMessage: (message) => {
        if (connection.reason !== undefined) return;
        if (!helloSeen) {
          helloSeen = this.#onHello(message, connection);
          if (helloSeen) watchdog.arm(this.#heartbeatMs * 2);
          return;
        }
        this.#onFrame(message, connection);
      },
      onRetry: (ms) => {
        this.#backoff.setInitialDelay(ms);
      },
    });
    const reader = body.getReader();
    // Stopping must end the loop even where a pending read does not settle on abort.
    const stopped = new Promise<ReadableStreamReadDoneResult<Uint8Array>>((resolve) => {
      connection.controller.signal.addEventListener('abort', () => {
        resolve({ done: true, value: undefined });
      });
    });
    // A function, so TypeScript does not narrow `reason` across the frame callbacks.
    const ended = (): boolean => connection.reason !== undefined;
    try {
      for (;;) {
        const { done, value } = await Promise.race([reader.read(), stopped]);
        if (done || ended()) break;
        watchdog.arm(this.#heartbeatMs * 2);
        parser.push(value);
        if (ended()) break;
      }
    } catch (error) {
      // Aborting the request errors the body; only an unplanned error is a drop.
      if (connection.reason === undefined) throw error;
    } finally {
      reader.cancel().catch(ignore);
    }
    // A token refreshed after `token_expiring` is used as is; otherwise ask for one.
    if (connection.tokenExpired && this.#token === token) this.#tokenStale = true;
    const outcome = this.#afterStop(connection);
    if (outcome) return outcome;
    return {
      next: 'retry',
      error: new PicloudError(0, 'stream_ended', 'the server ended the stream'),
    };
  }

  /** Checks the first frame; false (and the connection stopped) unless it is a `hello`
   * of a protocol version this client knows. */
  #onHello(message: SseMessage, connection: Connection): boolean {
    const hello = message.event === FRAME.hello ? parseHello(message.data) : undefined;
    const major = hello ? protocolMajor(hello.protocol) : undefined;
    if (!hello || major !== PROTOCOL_VERSION) {
      const found = hello ? `protocol ${JSON.stringify(hello.protocol)}` : `a '${message.event}' frame`;
      connection.fatal = new PicloudError(
        0,
        'protocol_incompatible',
        `the server speaks ${found} where this client expects protocol ${String(PROTOCOL_VERSION)}: update @picloud/client`,
      );
      this.#abort('fatal', connection);
      return false;
    }
    connection.openedAt = Date.now();
    this.#heartbeatMs = hello.heartbeatSecs * 1000;
    this.#tracker.adoptStart(hello.cursor);
    this.#backoff.reset();
    this.#setStatus('open');
    this.#emitCursor();
    return true;
  }

  #onFrame(message: SseMessage, connection: Connection): void {
    switch (message.event) {
      case FRAME.reset: {
        const reset = parseReset(message.data, message.id);
        if (!reset) return;
        this.#tracker.applyReset(reset);
        this.#emitCursor();
        callSafely(() => this.#options.onReset?.(reset));
        return;
      }
      case FRAME.tokenExpiring:
        this.#onTokenExpiring(connection);
        return;
      case FRAME.tokenExpired:
        // The stream is over; reconnect at once with a fresh token and the cursor.
        connection.tokenExpired = true;
        this.#abort('switch', connection);
        return;
      case FRAME.hello:
        return;
      default:
        this.#onEvent(message);
    }
  }

  #onEvent(message: SseMessage): void {
    const payload = parseEvent(message.data);
    if (!payload) {
      this.#report(new PicloudError(0, 'invalid_response', `unreadable '${message.event}' frame`), true);
      return;
    }
    if (!this.#tracker.accept(payload.topic, payload.seq)) return;
    const event = eventAt<T>(payload, this.#tracker.cursor ?? message.id);
    callSafely(() => {
      this.#options.onEvent(event);
    });
  }

  /** Fetches a new token before the cut, then switches to a new connection from the cursor. */
  #onTokenExpiring(connection: Connection): void {
    const { getToken } = this.#options;
    if (!getToken || this.#refreshing) return;
    if (Date.now() - (connection.openedAt ?? 0) < MIN_AGE_FOR_EARLY_SWITCH_MS) return;
    this.#refreshToken(getToken).then(
      () => {
        this.#abort('switch', connection);
      },
      (error: unknown) => {
        // Keep the stream until `token_expired`; the reconnect asks again.
        this.#report(tokenError(error), true);
      },
    );
  }

  /** One token request at a time. */
  #refreshToken(getToken: GetToken): Promise<void> {
    this.#refreshing ??= (async () => {
      try {
        const result = await getToken();
        const token = typeof result === 'string' ? result : (result as { token?: unknown } | undefined)?.token;
        if (typeof token !== 'string' || token === '') throw new Error('getToken returned no token');
        this.#token = token;
        this.#tokenStale = false;
        this.#tokenTried = false;
      } finally {
        this.#refreshing = undefined;
      }
    })();
    return this.#refreshing;
  }

  /** What a stopped connection means, or undefined if nobody stopped it. */
  #afterStop(connection: Connection): Outcome | undefined {
    switch (connection.reason) {
      case undefined:
        return undefined;
      case 'stop':
        return { next: 'stop' };
      case 'switch':
        return { next: 'now' };
      case 'watchdog':
        return {
          next: 'retry',
          error: new PicloudError(0, 'heartbeat_timeout', 'no data for twice the heartbeat interval'),
        };
      case 'fatal':
        return { next: 'stop', ...(connection.fatal ? { error: connection.fatal } : {}) };
    }
  }

  #abort(reason: StopReason, connection = this.#connection): void {
    if (!connection || connection.reason !== undefined) return;
    connection.reason = reason;
    connection.controller.abort();
  }

  /** Read through a method: TypeScript would narrow the field across an `await`. */
  #isStopped(): boolean {
    return this.#stopped;
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      if (this.#stopped) {
        resolve();
        return;
      }
      const done = (): void => {
        clearTimeout(timer);
        this.#wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#wake = done;
    });
  }

  #emitCursor(): void {
    const cursor = this.#tracker.cursor;
    if (cursor !== undefined) this.#hooks.onCursor?.(cursor);
  }

  #setStatus(status: SubscriptionStatus): void {
    if (this.#status === status) return;
    this.#status = status;
    callSafely(() => this.#options.onStatus?.(status));
  }

  #report(error: PicloudError, willRetry: boolean): void {
    callSafely(() => this.#options.onError?.(error, { willRetry }));
  }
}

/** Aborts a connection that has been silent too long. */
class Watchdog {
  readonly #onSilence: () => void;
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(onSilence: () => void) {
    this.#onSilence = onSilence;
  }

  arm(ms: number): void {
    this.clear();
    this.#timer = setTimeout(this.#onSilence, ms);
  }

  clear(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}

function tokenError(cause: unknown): PicloudError {
  if (cause instanceof PicloudError) return cause;
  const detail = cause instanceof Error ? cause.message : String(cause);
  return new PicloudError(0, 'token_refresh_failed', `getToken failed: ${detail}`, { cause });
}

function ignore(): void {
  // Nothing to do: the stream is being dropped anyway.
}
