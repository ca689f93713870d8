/**
 * The dashboard's view of the PiCloud API: typed routes declared with the SDK's
 * `endpoint()`, called through `@picloud/client` with a `fetch` that sends the session
 * cookie (same origin) and adds the CSRF token to every state-changing request.
 *
 * No API key ever reaches the browser: a signed-in admin is a superuser by its HttpOnly
 * session cookie, which scripts cannot read.
 */

import {
  createClient,
  endpoint,
  PicloudError,
  type Endpoint,
  type HttpMethod,
  type PicloudClient,
  type WirePaths,
  type WireSchema,
} from '@picloud/client';

export { PicloudError };

// ---------------------------------------------------------------------------
// Wire types (snake_case, as the server sends them): the server's OpenAPI schemas
// ---------------------------------------------------------------------------

export type SessionInfo = WireSchema<'SessionInfo'>;
export type App = WireSchema<'App'>;
export type AuthMode = WireSchema<'AuthMode'>;
export type Topic = WireSchema<'Topic'>;
export type RetryPolicy = WireSchema<'RetryPolicy'>;
export type CircuitState = WireSchema<'CircuitState'>;
export type Trigger = WireSchema<'Trigger'>;
export type Delivery = WireSchema<'Delivery'>;
export type DeliveryState = Delivery['state'];
export type Attempt = WireSchema<'Attempt'>;
export type DeliveryDetail = WireSchema<'DeliveryDetail'>;
export type DeadLetter = WireSchema<'DeadLetter'>;
export type DeadLetterDetail = WireSchema<'DeadLetterDetail'>;
export type ApiKey = WireSchema<'ApiKey'>;
export type CreatedKey = WireSchema<'CreatedKeyResponse'>;
export type StatsSeries = WireSchema<'StatsSeries'>;
export type ScriptSummary = WireSchema<'ScriptSummary'>;
export type Script = WireSchema<'Script'>;
export type ScriptVersion = WireSchema<'ScriptVersion'>;
export type ScriptRun = WireSchema<'ScriptRun'>;
export type RunLogLine = WireSchema<'RunLogLine'>;
export type FunctionAccess = WireSchema<'FunctionAccess'>;
export type TestRun = WireSchema<'TestRun'>;
export type TestRequest = WireSchema<'TestRequest'>;
export type TestRunResult = WireSchema<'TestRunResult'>;
export type Source = WireSchema<'Source'>;
export type SourceStatus = WireSchema<'SourceStatus'>;

/** The scopes an app key may hold (every scope but `instance:admin`). */
export const APP_SCOPES = [
  'app:admin',
  'app:read',
  'pubsub:publish',
  'pubsub:token',
  'triggers:manage',
  'deliveries:manage',
  'scripts:manage',
  'functions:invoke',
] as const satisfies readonly WireSchema<'Scope'>[];
export type AppScope = (typeof APP_SCOPES)[number];

// ---------------------------------------------------------------------------
// Routes, typed from the OpenAPI document: a path, parameter or field the server does
// not have fails to compile
// ---------------------------------------------------------------------------

/** The operation the document declares for `method path` (`never` if none). */
type Operation<P extends keyof WirePaths, M extends HttpMethod> = NonNullable<WirePaths[P][Lowercase<M>]>;
/** The methods the document declares on `P`. */
type MethodOf<P extends keyof WirePaths> = {
  [M in HttpMethod]: [Operation<P, M>] extends [never] ? never : M;
}[HttpMethod];
/** `T` without `undefined`, or `unknown` (no fields) when that leaves nothing. */
type Fields<T> = [NonNullable<T>] extends [never] ? unknown : NonNullable<T>;
type OrVoid<T> = unknown extends T ? void : T;
type JsonOf<T> = T extends { content: { 'application/json': infer J } } ? J : undefined;
/** A request's fields: path and query parameters and the JSON body's fields; `void` if none. */
type RequestOf<O> = O extends { parameters: { path?: infer Path; query?: infer Query } }
  ? OrVoid<Fields<Path> & Fields<Query> & Fields<O extends { requestBody?: infer B } ? JsonOf<B> : never>>
  : never;
/** The JSON of the success answer (`undefined` for 204). */
type ResponseOf<O> = O extends { responses: infer R } ? JsonOf<R[keyof R & (200 | 201 | 204)]> : never;

/** Declares `method path` with the request and response types the OpenAPI document gives it. */
function route<P extends keyof WirePaths, M extends MethodOf<P>>(
  method: M,
  path: P,
): Endpoint<RequestOf<Operation<P, M>>, ResponseOf<Operation<P, M>>> {
  return endpoint(method, path);
}

/** Every route the dashboard calls. */
export const routes = {
  session: route('GET', '/v1/admin/session'),
  signIn: route('POST', '/v1/admin/session'),
  signOut: route('DELETE', '/v1/admin/session'),
  stats: route('GET', '/v1/admin/stats'),

  listApps: route('GET', '/v1/apps'),
  createApp: route('POST', '/v1/apps'),
  getApp: route('GET', '/v1/apps/{app}'),
  deleteApp: route('DELETE', '/v1/apps/{app}'),

  subscribers: route('GET', '/v1/apps/{app}/realtime/subscribers'),

  listTriggers: route('GET', '/v1/apps/{app}/triggers'),
  createTrigger: route('POST', '/v1/apps/{app}/triggers'),
  updateTrigger: route('PATCH', '/v1/apps/{app}/triggers/{trigger_id}'),
  deleteTrigger: route('DELETE', '/v1/apps/{app}/triggers/{trigger_id}'),
  revealSecret: route('GET', '/v1/apps/{app}/triggers/{trigger_id}/secret'),
  rotateSecret: route('POST', '/v1/apps/{app}/triggers/{trigger_id}/secret/rotate'),

  listDeliveries: route('GET', '/v1/apps/{app}/deliveries'),
  getDelivery: route('GET', '/v1/apps/{app}/deliveries/{delivery_id}'),
  retryDelivery: route('POST', '/v1/apps/{app}/deliveries/{delivery_id}/retry'),

  listDeadLetters: route('GET', '/v1/apps/{app}/dead-letters'),
  getDeadLetter: route('GET', '/v1/apps/{app}/dead-letters/{dead_letter_id}'),
  replayDeadLetter: route('POST', '/v1/apps/{app}/dead-letters/{dead_letter_id}/replay'),
  replayDeadLetters: route('POST', '/v1/apps/{app}/dead-letters/replay'),
  purgeDeadLetters: route('DELETE', '/v1/apps/{app}/dead-letters'),
  purgeDeadLetter: route('DELETE', '/v1/apps/{app}/dead-letters/{dead_letter_id}'),

  listScripts: route('GET', '/v1/apps/{app}/scripts'),
  getScript: route('GET', '/v1/apps/{app}/scripts/{script}'),
  saveScript: route('PUT', '/v1/apps/{app}/scripts/{script}'),
  deleteScript: route('DELETE', '/v1/apps/{app}/scripts/{script}'),
  listScriptVersions: route('GET', '/v1/apps/{app}/scripts/{script}/versions'),
  restoreScriptVersion: route('POST', '/v1/apps/{app}/scripts/{script}/versions/{version}/restore'),
  listScriptRuns: route('GET', '/v1/apps/{app}/scripts/{script}/runs'),
  testScript: route('POST', '/v1/apps/{app}/scripts/{script}/test'),

  listSources: route('GET', '/v1/apps/{app}/sources'),
  createSource: route('POST', '/v1/apps/{app}/sources'),
  updateSource: route('PATCH', '/v1/apps/{app}/sources/{source_id}'),
  deleteSource: route('DELETE', '/v1/apps/{app}/sources/{source_id}'),

  listKeys: route('GET', '/v1/apps/{app}/keys'),
  createKey: route('POST', '/v1/apps/{app}/keys'),
  revokeKey: route('DELETE', '/v1/apps/{app}/keys/{key_id}'),
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

/** A `script_compile_error` with the position the server named (`line` and `column`
 * are 1-based, 0 when the error has no position). */
export class ScriptCompileError extends PicloudError {
  override readonly line: number;
  override readonly column: number;

  constructor(error: PicloudError) {
    super(error.status, error.code, error.message, {
      cause: error,
      requestId: error.requestId,
      line: error.line,
      column: error.column,
    });
    this.name = 'ScriptCompileError';
    this.line = error.line ?? 0;
    this.column = error.column ?? 0;
  }
}

/**
 * Calls a typed route that compiles a script (save, test run): a source that does not
 * compile throws a {@link ScriptCompileError} with the `line` and `column` of the answer.
 */
export async function callCompiling<Req, Res>(route: Endpoint<Req, Res>, request: Req): Promise<Res> {
  try {
    return await call(route, request);
  } catch (e) {
    if (e instanceof PicloudError && e.code === 'script_compile_error') throw new ScriptCompileError(e);
    throw e;
  }
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
