/**
 * The HTTP layer: one `fetch` call per request, JSON in and out, errors as
 * {@link PicloudError}, and {@link endpoint} for typing any route by hand.
 */

import { PicloudError, errorFromResponse, networkError } from './errors.js';

/** Anything with `parse` that returns a `T` or throws: a zod schema fits as is, valibot
 * as `{ parse: (x) => v.parse(Schema, x) }`. */
export interface Validator<T> {
  parse(input: unknown): T;
}

/** An HTTP method. */
export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/** A typed route: request fields of type `Req`, a response of type `Res`. */
export interface Endpoint<Req, Res> {
  readonly method: HttpMethod;
  /** A path template such as `/v1/apps/{app}/topics/{topic}`. */
  readonly path: string;
  /** Checks the response before it is returned. */
  readonly validate?: Validator<Res> | undefined;
  /** Carries the types; never set. */
  readonly __types?: (request: Req) => Res;
}

/**
 * Declares a route. `{name}` placeholders are filled from the request's fields (`{app}`
 * defaults to the client's app); the other fields become the query string of GET and
 * DELETE requests and the JSON body of the others.
 *
 * ```ts
 * const getTopic = endpoint<{ topic: string }, { name: string; last_seq: number }>(
 *   'GET', '/v1/apps/{app}/topics/{topic}');
 * const topic = await client.call(getTopic, { topic: 'orders' });
 * ```
 */
export function endpoint<Req = void, Res = unknown>(
  method: HttpMethod,
  path: string,
  options: { validate?: Validator<Res> } = {},
): Endpoint<Req, Res> {
  return { method, path, validate: options.validate };
}

/** Where requests go and how they authenticate. */
export interface TransportOptions {
  /** The server's origin, e.g. `https://picloud.example.com`. */
  readonly baseUrl: string;
  /** An API key, sent as `Authorization: Bearer`. Keep keys out of browsers. */
  readonly apiKey?: string | undefined;
  /** A `fetch` to use instead of the global one. */
  readonly fetch?: typeof fetch | undefined;
  /** Headers added to every request. */
  readonly headers?: Readonly<Record<string, string>> | undefined;
}

/** A request for {@link HttpTransport.request}. */
export interface RequestOptions<T> {
  readonly query?: Readonly<Record<string, QueryValue>> | undefined;
  readonly body?: unknown;
  readonly headers?: Readonly<Record<string, string>> | undefined;
  readonly validate?: Validator<T> | undefined;
  readonly signal?: AbortSignal | undefined;
  /** Return an answer that is not JSON as its text instead of failing. */
  readonly text?: boolean | undefined;
}

/** A query parameter: arrays repeat the name, undefined leaves it out. */
export type QueryValue = string | number | boolean | undefined | readonly (string | number)[];

/** Sends JSON requests to one PiCloud server. */
export class HttpTransport {
  readonly baseUrl: string;
  readonly #apiKey: string | undefined;
  readonly #fetch: typeof fetch;
  readonly #headers: Readonly<Record<string, string>>;

  constructor(options: TransportOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
    this.#apiKey = options.apiKey;
    // Call the global through a wrapper: browsers reject a detached `fetch`.
    this.#fetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
    this.#headers = options.headers ?? {};
  }

  /** The `fetch` this transport uses. */
  get fetch(): typeof fetch {
    return this.#fetch;
  }

  /** A full URL for `path` with `query`. */
  url(path: string, query?: Readonly<Record<string, QueryValue>>): string {
    const params = new URLSearchParams();
    for (const [name, value] of Object.entries(query ?? {})) {
      if (value === undefined) continue;
      if (Array.isArray(value)) {
        for (const item of value as readonly (string | number)[]) params.append(name, String(item));
      } else {
        params.append(name, String(value));
      }
    }
    const search = params.toString();
    return `${this.baseUrl}${path}${search ? `?${search}` : ''}`;
  }

  /** Sends one request and returns its JSON answer (undefined for 204). */
  async request<T>(method: HttpMethod, path: string, options: RequestOptions<T> = {}): Promise<T> {
    const headers: Record<string, string> = { accept: 'application/json', ...this.#headers };
    if (this.#apiKey !== undefined) headers.authorization = `Bearer ${this.#apiKey}`;
    if (options.body !== undefined) headers['content-type'] = 'application/json';
    Object.assign(headers, options.headers);

    let response: Response;
    try {
      response = await this.#fetch(this.url(path, options.query), {
        method,
        headers,
        body: options.body === undefined ? null : JSON.stringify(options.body),
        signal: options.signal ?? null,
      });
    } catch (error) {
      if (options.signal?.aborted) throw error;
      throw networkError(error);
    }
    if (!response.ok) throw await errorFromResponse(response);
    if (response.status === 204) return undefined as T;

    const text = await response.text();
    const type = response.headers.get('content-type') ?? '';
    if (options.text && !type.includes('json')) return text as T;
    let data: unknown;
    try {
      data = text === '' ? undefined : JSON.parse(text);
    } catch (cause) {
      throw new PicloudError(response.status, 'invalid_response', 'the response is not JSON', {
        cause,
        requestId: response.headers.get('x-request-id') ?? undefined,
      });
    }
    if (!options.validate) return data as T;
    try {
      return options.validate.parse(data);
    } catch (cause) {
      const detail = cause instanceof Error ? `: ${cause.message}` : '';
      throw new PicloudError(response.status, 'validation_failed', `the response failed validation${detail}`, {
        cause,
      });
    }
  }

  /** Calls a typed {@link Endpoint}; `app` fills an `{app}` the request does not. */
  call<Req, Res>(ep: Endpoint<Req, Res>, request: Req, app: string, signal?: AbortSignal): Promise<Res> {
    const fields = new Map<string, unknown>(
      typeof request === 'object' && request !== null && !Array.isArray(request)
        ? Object.entries(request as Record<string, unknown>)
        : [],
    );
    const path = ep.path.replace(/\{([^}]+)\}/g, (_, name: string) => {
      const value = fields.get(name) ?? (name === 'app' ? app : undefined);
      if (typeof value !== 'string' && typeof value !== 'number') {
        throw new PicloudError(0, 'invalid_request', `path parameter '${name}' of ${ep.path} must be a string or number`);
      }
      fields.delete(name);
      return encodeURIComponent(String(value));
    });
    const rest = Object.fromEntries(fields);
    const inQuery = ep.method === 'GET' || ep.method === 'DELETE';
    let body: unknown;
    if (Array.isArray(request)) body = request;
    else if (!inQuery && fields.size > 0) body = rest;
    return this.request<Res>(ep.method, path, {
      query: inQuery ? (rest as Record<string, QueryValue>) : undefined,
      body,
      validate: ep.validate,
      signal,
    });
  }
}
