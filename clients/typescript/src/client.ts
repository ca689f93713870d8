/** `createClient`: the typed API of one PiCloud app. */

import { PicloudError } from './errors.js';
import { HttpTransport, type Endpoint } from './http.js';
import { iterate, type StreamOptions } from './iterator.js';
import type { PicloudEvent } from './protocol.js';
import { startSubscription, type SubscribeOptions, type Unsubscribe } from './subscription.js';
import { browserTabEnvironment, subscribeAcrossTabs } from './tabs.js';
import type { Body, WireSchema } from './wire.js';

/** Options of {@link createClient}. */
export interface ClientOptions {
  /** The server's origin, e.g. `https://picloud.example.com`. */
  readonly baseUrl: string;
  /** The app id. */
  readonly app: string;
  /** An API key for server-side code (publish, mint tokens, admin). Browsers that only
   * subscribe need none: they use subscriber tokens. */
  readonly apiKey?: string | undefined;
  /** A `fetch` to use instead of the global one. */
  readonly fetch?: typeof fetch | undefined;
  /** Headers added to every HTTP request (not to realtime streams). */
  readonly headers?: Readonly<Record<string, string>> | undefined;
}

/** Options of {@link PicloudClient.call}. */
export interface CallOptions {
  /** Aborts the request. */
  readonly signal?: AbortSignal | undefined;
}

/** The arguments after the endpoint: the request (optional when it is `void`), then options. */
// `void` is what `endpoint<void, Res>` says; it is tested here, not used as a value.
// eslint-disable-next-line @typescript-eslint/no-invalid-void-type
export type CallArgs<Req> = [Req] extends [void]
  ? [request?: Req, options?: CallOptions]
  : [request: Req, options?: CallOptions];

/** Options of {@link PicloudClient.publish}. */
export interface PublishOptions {
  /** The event type (`message` if absent). */
  readonly type?: string | undefined;
  /** A retry with the same key returns the first answer instead of publishing twice. */
  readonly idempotencyKey?: string | undefined;
}

/** A durably stored event, as a publish returns it. */
export interface PublishedEvent {
  readonly topic: string;
  readonly seq: number;
  /** The event's globally unique id. */
  readonly id: string;
  /** Commit time, ms since the epoch. */
  readonly publishedAt: number;
  /** Webhook deliveries created for it. */
  readonly deliveries: number;
}

/** One event of {@link PicloudClient.publishBatch}. */
export interface BatchEvent<T = unknown> {
  readonly topic: string;
  readonly data: T;
  readonly type?: string | undefined;
}

/** A subscriber token for browsers. */
export interface SubscriberToken {
  /** The token (a JWT), sent as `Authorization: Bearer` by `subscribe`. */
  readonly token: string;
  /** When it expires, ms since the epoch. */
  readonly expiresAt: number;
}

/** How subscribers authenticate to a topic. */
export type AuthMode = WireSchema<'AuthMode'>;

/** What a topic keeps; `null` means no limit of that kind. */
export interface Retention {
  readonly maxEvents: number | null;
  readonly maxAgeSecs: number | null;
}

/** A topic. */
export interface Topic {
  readonly name: string;
  /** Whether browsers may subscribe. */
  readonly externalSubscribable: boolean;
  readonly authMode: AuthMode;
  readonly retention: Retention;
  /** The seq of the latest event (0 before the first). */
  readonly lastSeq: number;
  /** Events currently retained. */
  readonly eventCount: number;
  readonly createdAt: number;
  readonly updatedAt: number;
}

/** Options of {@link TopicsApi.create}. */
export interface CreateTopicOptions {
  /** `token` (the default) or `public`. */
  readonly authMode?: AuthMode | undefined;
  /** Defaults to 100,000 events or 7 days. */
  readonly retention?: Partial<Retention> | undefined;
}

/** An event read from a topic's log. */
export interface LoggedEvent<T = unknown> {
  readonly topic: string;
  readonly seq: number;
  readonly id: string;
  readonly type: string;
  readonly data: T;
  readonly publishedAt: number;
}

/** A page of a topic's log. */
export interface EventPage<T = unknown> {
  /** Events in seq order. */
  readonly events: LoggedEvent<T>[];
  /** The topic's latest seq when read. */
  readonly lastSeq: number;
}

/** Options of {@link PicloudClient.readEvents}. */
export interface ReadEventsOptions {
  /** Events with seq greater than this (default 0: from the oldest retained). */
  readonly after?: number | undefined;
  /** At most this many (server default 100, at most 1000). */
  readonly limit?: number | undefined;
}

/** Options of {@link FunctionsApi.call}. */
export interface FunctionCallOptions {
  /** `POST` (the default, with the body as JSON) or `GET` (no body). */
  readonly method?: 'GET' | 'POST' | undefined;
  /** Query parameters, in the script's `req.query`. */
  readonly query?: Readonly<Record<string, string>> | undefined;
  /** Headers for the script's `req.headers`, e.g. the app's own session as
   * `authorization` (it replaces the client's API key for this call). */
  readonly headers?: Readonly<Record<string, string>> | undefined;
  /** Aborts the request. */
  readonly signal?: AbortSignal | undefined;
}

/** HTTP functions: scripts whose `handle(req)` answers `/v1/apps/{app}/functions/{name}`. */
export interface FunctionsApi {
  /**
   * Calls function `name` and returns what it answered: JSON parsed, text as a string.
   * A `public` function answers anyone; a `key` one needs a key with `functions:invoke`.
   * A function that failed is a {@link PicloudError} with status 500 (its run log on the
   * server says why).
   */
  call<T = unknown>(name: string, body?: unknown, options?: FunctionCallOptions): Promise<T>;
}

/** Topic administration (needs `app:admin`; reads need `app:read`). */
export interface TopicsApi {
  /** Every topic of the app. */
  list(): Promise<Topic[]>;
  /** One topic. */
  get(name: string): Promise<Topic>;
  /** Registers a topic; it is internal until {@link TopicsApi.setExternal} flips it. */
  create(name: string, options?: CreateTopicOptions): Promise<Topic>;
  /** Lets browsers subscribe to the topic, or stops them. */
  setExternal(name: string, external: boolean): Promise<Topic>;
  /** Deletes the topic with its whole log. */
  delete(name: string): Promise<void>;
}

type RawPublished = WireSchema<'PublishedEvent'>;
type RawTopic = WireSchema<'Topic'>;

const published = (e: RawPublished): PublishedEvent => ({
  topic: e.topic,
  seq: e.seq,
  id: e.id,
  publishedAt: e.published_at,
  deliveries: e.deliveries,
});

const topic = (t: RawTopic): Topic => ({
  name: t.name,
  externalSubscribable: t.external_subscribable,
  authMode: t.auth_mode,
  retention: { maxEvents: t.retention.max_events ?? null, maxAgeSecs: t.retention.max_age_secs ?? null },
  lastSeq: t.last_seq,
  eventCount: t.event_count,
  createdAt: t.created_at,
  updatedAt: t.updated_at,
});

const seg = encodeURIComponent;

/** A PiCloud app's API. Make one with {@link createClient}. */
export class PicloudClient {
  /** The app id. */
  readonly app: string;
  /** Topic administration. */
  readonly topics: TopicsApi;
  /** HTTP functions (scripts). */
  readonly functions: FunctionsApi;
  readonly #http: HttpTransport;

  constructor(options: ClientOptions) {
    this.app = options.app;
    this.#http = new HttpTransport(options);
    const base = (): string => `/v1/apps/${seg(this.app)}/topics`;
    this.topics = {
      list: async () => {
        const body = await this.#http.request<WireSchema<'TopicList'>>('GET', base());
        return body.topics.map(topic);
      },
      get: async (name) => topic(await this.#http.request<RawTopic>('GET', `${base()}/${seg(name)}`)),
      create: async (name, options = {}) => {
        const retention = options.retention && {
          max_events: options.retention.maxEvents ?? null,
          max_age_secs: options.retention.maxAgeSecs ?? null,
        };
        const raw = await this.#http.request<RawTopic>('POST', base(), {
          body: { name, auth_mode: options.authMode, retention } satisfies Body<WireSchema<'CreateTopic'>>,
        });
        return topic(raw);
      },
      setExternal: async (name, external) =>
        topic(
          await this.#http.request<RawTopic>('PATCH', `${base()}/${seg(name)}/external`, {
            body: { external_subscribable: external } satisfies WireSchema<'SetExternal'>,
          }),
        ),
      delete: async (name) => {
        await this.#http.request<undefined>('DELETE', `${base()}/${seg(name)}`);
      },
    };
    this.functions = {
      call: <T>(name: string, body?: unknown, options: FunctionCallOptions = {}) => {
        const method = options.method ?? 'POST';
        return this.#http.request<T>(method, `/v1/apps/${seg(this.app)}/functions/${seg(name)}`, {
          query: options.query,
          body: method === 'POST' ? (body ?? null) : undefined,
          headers: options.headers,
          signal: options.signal,
          text: true,
        });
      },
    };
  }

  /** The server's origin. */
  get baseUrl(): string {
    return this.#http.baseUrl;
  }

  /** Publishes one event (needs `pubsub:publish`); it is durable when this resolves. */
  async publish(topicName: string, data: unknown, options: PublishOptions = {}): Promise<PublishedEvent> {
    const raw = await this.#http.request<RawPublished>(
      'POST',
      `/v1/apps/${seg(this.app)}/topics/${seg(topicName)}/events`,
      {
        body: { type: options.type, data } satisfies Body<WireSchema<'PublishBody'>>,
        headers: idempotency(options.idempotencyKey),
      },
    );
    return published(raw);
  }

  /** Publishes several events, of one or many topics, atomically: all or none. */
  async publishBatch(
    events: readonly BatchEvent[],
    options: { idempotencyKey?: string | undefined } = {},
  ): Promise<PublishedEvent[]> {
    const raw = await this.#http.request<WireSchema<'BatchAnswer'>>('POST', `/v1/apps/${seg(this.app)}/events`, {
      body: {
        events: events.map((e) => ({ topic: e.topic, type: e.type, data: e.data })),
      } satisfies { events: Body<WireSchema<'BatchEvent'>>[] },
      headers: idempotency(options.idempotencyKey),
    });
    return raw.events.map(published);
  }

  /**
   * Mints a subscriber token for `topics` (needs `pubsub:token`): the server side of
   * `pubsub::subscriber_token(topics, ttl)`. Hand it to a browser's `getToken`.
   */
  async subscriberToken(
    topics: string | readonly string[],
    ttlSecs?: number,
    options: { sub?: string | undefined } = {},
  ): Promise<SubscriberToken> {
    const raw = await this.#http.request<WireSchema<'TokenResponse'>>(
      'POST',
      `/v1/apps/${seg(this.app)}/subscriber-tokens`,
      { body: { topics: toList(topics), ttl_secs: ttlSecs, sub: options.sub } satisfies Body<WireSchema<'TokenRequest'>> },
    );
    return { token: raw.token, expiresAt: raw.expires_at };
  }

  /** Reads a page of a topic's log (needs `app:read`). */
  async readEvents<T = unknown>(topicName: string, options: ReadEventsOptions = {}): Promise<EventPage<T>> {
    const raw = await this.#http.request<WireSchema<'EventPage'>>(
      'GET',
      `/v1/apps/${seg(this.app)}/topics/${seg(topicName)}/events`,
      { query: { after: options.after, limit: options.limit } },
    );
    return {
      events: raw.events.map((e) => ({
        topic: e.topic,
        seq: e.seq,
        id: e.id,
        type: e.type,
        data: e.data as T,
        publishedAt: e.published_at,
      })),
      lastSeq: raw.last_seq,
    };
  }

  /** Calls a route declared with `endpoint()`; an endpoint with no request fields
   * (`endpoint<void, Res>`) is called as `client.call(ep)`. */
  call<Req, Res>(ep: Endpoint<Req, Res>, ...args: CallArgs<Req>): Promise<Res> {
    const [request, options] = args;
    return this.#http.call(ep, request as Req, this.app, options?.signal);
  }

  /**
   * Subscribes to topics over SSE and returns the function that stops it. Events come
   * once each, in seq order per topic, across reconnects and token refreshes.
   */
  subscribe<T = unknown>(topics: string | readonly string[], options: SubscribeOptions<T>): Unsubscribe {
    const list = toList(topics);
    if (list.length === 0) throw new PicloudError(0, 'invalid_request', 'subscribe needs at least one topic');
    const target = {
      url: this.#http.url(`/v1/apps/${seg(this.app)}/realtime`, { topic: list }),
      topics: list,
      fetch: this.#http.fetch,
    };
    const tabs = options.shareAcrossTabs ? browserTabEnvironment() : undefined;
    if (tabs) {
      const key = `${this.baseUrl}|${this.app}|${[...list].sort().join(',')}`;
      return subscribeAcrossTabs(key, target, options, tabs);
    }
    return startSubscription(target, options);
  }

  /** The async-iterator form of {@link PicloudClient.subscribe}. */
  stream<T = unknown>(topics: string | readonly string[], options: StreamOptions<T> = {}): AsyncIterableIterator<PicloudEvent<T>> {
    return iterate<T>((opts) => this.subscribe(topics, opts), options);
  }
}

/** Creates a client for one app of a PiCloud server. */
export function createClient(options: ClientOptions): PicloudClient {
  return new PicloudClient(options);
}

function toList(topics: string | readonly string[]): string[] {
  return [...new Set(typeof topics === 'string' ? [topics] : topics)];
}

function idempotency(key: string | undefined): Record<string, string> | undefined {
  return key === undefined ? undefined : { 'idempotency-key': key };
}
