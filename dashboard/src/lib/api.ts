/**
 * The dashboard's view of the PiCloud API: typed routes declared with the SDK's
 * `endpoint()`, called through `@picloud/client` with a `fetch` that sends the session
 * cookie (same origin) and adds the CSRF token to every state-changing request.
 *
 * No API key ever reaches the browser: a signed-in admin is a superuser by its HttpOnly
 * session cookie, which scripts cannot read.
 */

import { createClient, endpoint, PicloudError, type Endpoint, type PicloudClient } from '@picloud/client';

export { PicloudError };

// ---------------------------------------------------------------------------
// Wire types (snake_case, as the server sends them)
// ---------------------------------------------------------------------------

export interface Admin {
  id: string;
  email: string;
}

export interface SessionInfo {
  admin: Admin;
  csrf_token: string;
  expires_at: number;
}

export interface App {
  id: string;
  name: string;
  created_at: number;
}

export type AuthMode = 'public' | 'token';

export interface Retention {
  max_events?: number | null;
  max_age_secs?: number | null;
}

export interface Topic {
  name: string;
  external_subscribable: boolean;
  auth_mode: AuthMode;
  retention: Retention;
  last_seq: number;
  event_count: number;
  created_at: number;
  updated_at: number;
}

export interface LiveSubscribers {
  streams: number;
  topics: { topic: string; subscribers: number }[];
}

export type TriggerSource = { kind: 'topic'; topic: string } | { kind: 'dead_letter' };

export interface RetryPolicy {
  max_attempts: number;
  schedule_secs: number[];
}

export type CircuitState = 'closed' | 'open' | 'half_open';

export interface Trigger {
  id: string;
  app: string;
  source: TriggerSource;
  handler: { kind: 'webhook'; url: string };
  retry: RetryPolicy;
  ordered: boolean;
  pacing: { max_in_flight?: number | null; max_per_second?: number | null };
  enabled: boolean;
  disabled_reason?: string | null;
  circuit_state: CircuitState;
  /** While the circuit is open: when its probe delivery goes out (ms). */
  circuit_probe_at?: number | null;
  consecutive_failures: number;
  created_at: number;
  updated_at: number;
}

export interface NewTrigger {
  source: TriggerSource;
  handler: { kind: 'webhook'; url: string };
  retry?: { max_attempts?: number; schedule_secs?: number[] };
}

export type DeliveryState = 'pending' | 'delivered' | 'failed' | 'dead';

export interface Delivery {
  id: number;
  trigger_id: string;
  topic: string;
  seq: number;
  dead_letter_id?: number | null;
  state: DeliveryState;
  attempts: number;
  next_attempt_at: number;
  last_error?: string | null;
  last_status?: number | null;
  created_at: number;
  finished_at?: number | null;
}

export interface Attempt {
  attempt: number;
  started_at: number;
  duration_ms: number;
  status_code?: number | null;
  error?: string | null;
  response_body?: string | null;
}

export type DeliveryDetail = Omit<Delivery, 'attempts'> & { attempts: Attempt[] };

export interface LoggedEvent {
  topic: string;
  seq: number;
  id: string;
  type: string;
  data: unknown;
  published_at: number;
}

export interface DeadLetter {
  id: number;
  outbox_id: number;
  trigger_id: string;
  topic: string;
  seq: number;
  attempts: number;
  last_error?: string | null;
  last_status?: number | null;
  created_at: number;
  replayed_at?: number | null;
}

export type DeadLetterDetail = DeadLetter & { event?: LoggedEvent | null };

export const APP_SCOPES = [
  'app:admin',
  'app:read',
  'pubsub:publish',
  'pubsub:token',
  'triggers:manage',
  'deliveries:manage',
] as const;
export type AppScope = (typeof APP_SCOPES)[number];

export interface ApiKey {
  id: string;
  app?: string | null;
  name: string;
  prefix: string;
  scopes: string[];
  created_at: number;
  last_used_at?: number | null;
  revoked_at?: number | null;
}

export interface CreatedKey extends ApiKey {
  key: string;
}

export interface Sample {
  at: number;
  publishes: number;
  deliveries_ok: number;
  deliveries_failed: number;
  dead_letters: number;
  sse_streams: number;
  outbox_pending: number;
}

export interface StatsSeries {
  app?: string | null;
  interval_secs: number;
  window_secs: number;
  samples: Sample[];
}

// ---------------------------------------------------------------------------
// Routes
// ---------------------------------------------------------------------------

type AppReq<T = object> = T & { app: string };
type Page = { before?: number | undefined; limit?: number | undefined };

export const routes = {
  session: endpoint<void, SessionInfo>('GET', '/v1/admin/session'),
  signIn: endpoint<{ email: string; password: string }, SessionInfo>('POST', '/v1/admin/session'),
  signOut: endpoint<void, undefined>('DELETE', '/v1/admin/session'),
  stats: endpoint<{ app?: string | undefined }, StatsSeries>('GET', '/v1/admin/stats'),

  listApps: endpoint<void, { apps: App[] }>('GET', '/v1/apps'),
  createApp: endpoint<{ id: string; name?: string | undefined }, App>('POST', '/v1/apps'),
  getApp: endpoint<AppReq, App>('GET', '/v1/apps/{app}'),
  deleteApp: endpoint<AppReq, undefined>('DELETE', '/v1/apps/{app}'),

  subscribers: endpoint<AppReq, LiveSubscribers>('GET', '/v1/apps/{app}/realtime/subscribers'),

  listTriggers: endpoint<AppReq, { triggers: Trigger[] }>('GET', '/v1/apps/{app}/triggers'),
  createTrigger: endpoint<AppReq<NewTrigger>, Trigger & { secret: string }>('POST', '/v1/apps/{app}/triggers'),
  updateTrigger: endpoint<AppReq<{ trigger: string; enabled: boolean }>, Trigger>(
    'PATCH',
    '/v1/apps/{app}/triggers/{trigger}',
  ),
  deleteTrigger: endpoint<AppReq<{ trigger: string }>, undefined>('DELETE', '/v1/apps/{app}/triggers/{trigger}'),
  revealSecret: endpoint<AppReq<{ trigger: string }>, { secret: string }>(
    'GET',
    '/v1/apps/{app}/triggers/{trigger}/secret',
  ),
  rotateSecret: endpoint<AppReq<{ trigger: string }>, { secret: string; previous_secret_expires_at: number }>(
    'POST',
    '/v1/apps/{app}/triggers/{trigger}/secret/rotate',
  ),

  listDeliveries: endpoint<
    AppReq<Page & { state?: DeliveryState | undefined; trigger?: string | undefined }>,
    { deliveries: Delivery[] }
  >('GET', '/v1/apps/{app}/deliveries'),
  getDelivery: endpoint<AppReq<{ delivery: number }>, DeliveryDetail>('GET', '/v1/apps/{app}/deliveries/{delivery}'),
  retryDelivery: endpoint<AppReq<{ delivery: number }>, Delivery>(
    'POST',
    '/v1/apps/{app}/deliveries/{delivery}/retry',
  ),

  listDeadLetters: endpoint<AppReq<Page & { trigger?: string | undefined }>, { dead_letters: DeadLetter[] }>(
    'GET',
    '/v1/apps/{app}/dead-letters',
  ),
  getDeadLetter: endpoint<AppReq<{ dead_letter: number }>, DeadLetterDetail>(
    'GET',
    '/v1/apps/{app}/dead-letters/{dead_letter}',
  ),
  replayDeadLetter: endpoint<AppReq<{ dead_letter: number }>, { count: number }>(
    'POST',
    '/v1/apps/{app}/dead-letters/{dead_letter}/replay',
  ),
  replayDeadLetters: endpoint<AppReq<{ ids?: number[] | undefined; per_second: number }>, { count: number }>(
    'POST',
    '/v1/apps/{app}/dead-letters/replay',
  ),
  purgeDeadLetters: endpoint<AppReq, { count: number }>('DELETE', '/v1/apps/{app}/dead-letters'),
  purgeDeadLetter: endpoint<AppReq<{ dead_letter: number }>, undefined>(
    'DELETE',
    '/v1/apps/{app}/dead-letters/{dead_letter}',
  ),

  listKeys: endpoint<AppReq, { keys: ApiKey[] }>('GET', '/v1/apps/{app}/keys'),
  createKey: endpoint<AppReq<{ name: string; scopes: string[] }>, CreatedKey>('POST', '/v1/apps/{app}/keys'),
  revokeKey: endpoint<AppReq<{ key: string }>, ApiKey>('DELETE', '/v1/apps/{app}/keys/{key}'),
};

// ---------------------------------------------------------------------------
// Transport
// ---------------------------------------------------------------------------

let csrfToken = '';
let onUnauthorized: () => void = () => {};

/** Remembers the session's CSRF token (from sign-in or `GET /v1/admin/session`). */
export function setCsrfToken(token: string): void {
  csrfToken = token;
}

/** Called when the server says the session is gone (401), so the app can sign in again. */
export function setUnauthorizedHandler(handler: () => void): void {
  onUnauthorized = handler;
}

const SAFE = new Set(['GET', 'HEAD', 'OPTIONS']);

/** `fetch` for the dashboard: same-origin cookies, `X-CSRF-Token` on changes. */
export const adminFetch: typeof fetch = async (input, init = {}) => {
  const method = (init.method ?? 'GET').toUpperCase();
  const headers = new Headers(init.headers);
  if (!SAFE.has(method) && csrfToken) headers.set('x-csrf-token', csrfToken);
  const response = await globalThis.fetch(input, { ...init, headers, credentials: 'same-origin' });
  const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
  if (response.status === 401 && !url.includes('/v1/admin/session')) onUnauthorized();
  return response;
};

const clients = new Map<string, PicloudClient>();

/** The SDK client of `app` (or of no app in particular), talking to this origin. */
export function client(app = '-'): PicloudClient {
  let existing = clients.get(app);
  if (!existing) {
    existing = createClient({ baseUrl: globalThis.location.origin, app, fetch: adminFetch });
    clients.set(app, existing);
  }
  return existing;
}

/** Calls a typed route. */
export function call<Req, Res>(route: Endpoint<Req, Res>, request: Req): Promise<Res> {
  return client().call(route, request);
}

/** A human sentence for any error the API or the network produced. */
export function describeError(error: unknown): string {
  if (error instanceof PicloudError) {
    if (error.status === 0) return `Could not reach the server (${error.message}).`;
    return error.message;
  }
  if (error instanceof Error) return error.message;
  return String(error);
}
