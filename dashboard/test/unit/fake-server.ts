/** A fake PiCloud API for component tests: routes by method and path, records calls. */
import { vi } from 'vitest';

export interface Call {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: Headers;
  body: unknown;
  credentials: RequestCredentials | undefined;
}

type Handler = (call: Call) => { status?: number; body?: unknown } | undefined;

export function fakeServer(routes: Record<string, Handler>): { calls: Call[] } {
  const calls: Call[] = [];
  vi.stubGlobal('fetch', async (input: RequestInfo | URL, init: RequestInit = {}) => {
    const url = new URL(typeof input === 'string' ? input : input instanceof URL ? input.href : input.url, 'http://localhost');
    const call: Call = {
      method: (init.method ?? 'GET').toUpperCase(),
      path: url.pathname,
      query: url.searchParams,
      headers: new Headers(init.headers),
      body: typeof init.body === 'string' ? JSON.parse(init.body) : undefined,
      credentials: init.credentials,
    };
    calls.push(call);
    const handler = routes[`${call.method} ${call.path}`];
    const answer = handler?.(call) ?? { status: 404, body: { error: { code: 'not_found', message: `no fake for ${call.method} ${call.path}` } } };
    const status = answer.status ?? 200;
    return new Response(status === 204 || answer.body === undefined ? null : JSON.stringify(answer.body), {
      status,
      headers: { 'content-type': 'application/json' },
    });
  });
  return { calls };
}

export const topic = (name: string, external: boolean, authMode: 'public' | 'token' = 'token') => ({
  name,
  external_subscribable: external,
  auth_mode: authMode,
  retention: { max_events: 100000, max_age_secs: 604800 },
  last_seq: 7,
  event_count: 7,
  created_at: 1,
  updated_at: 2,
});
