/**
 * @picloud/client: typed HTTP for PiCloud apps and realtime subscriptions over
 * streaming fetch that never lose or repeat an event across reconnects and token
 * refreshes.
 */

export {
  createClient,
  PicloudClient,
  type AuthMode,
  type BatchEvent,
  type CallArgs,
  type CallOptions,
  type ClientOptions,
  type CreateTopicOptions,
  type EventPage,
  type FunctionCallOptions,
  type FunctionsApi,
  type LoggedEvent,
  type PublishedEvent,
  type PublishOptions,
  type ReadEventsOptions,
  type Retention,
  type SubscriberToken,
  type Topic,
  type TopicsApi,
} from './client.js';
export { PicloudError, type ClientErrorCode } from './errors.js';
export { endpoint, type Endpoint, type HttpMethod, type Validator } from './http.js';
export type { StreamOptions } from './iterator.js';
export {
  PROTOCOL_VERSION,
  type Hello,
  type LostRange,
  type PicloudEvent,
  type ResetInfo,
} from './protocol.js';
export { Backoff, type BackoffOptions } from './backoff.js';
export { formatCursor, parseCursor } from './cursor.js';
export { SseParser, type SseHandlers, type SseMessage } from './sse-parser.js';
export type {
  GetToken,
  SubscribeOptions,
  SubscriptionStatus,
  TokenResult,
  Unsubscribe,
} from './subscription.js';
export type { WirePaths, WireSchema } from './wire.js';
export { TopicStore, type Subscriber, type TopicState, type TopicStoreOptions } from './store.js';
