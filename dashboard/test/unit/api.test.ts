import { describe, expect, it, vi } from 'vitest';
import { adminFetch, call, routes, setCsrfToken, setUnauthorizedHandler } from '../../src/lib/api';
import { fakeServer } from './fake-server';

describe('adminFetch', () => {
  it('sends the CSRF token on changes only, with same-origin cookies, and never an API key', async () => {
    const server = fakeServer({
      'GET /v1/apps': () => ({ body: { apps: [] } }),
      'POST /v1/apps': () => ({ status: 201, body: { id: 'shop', name: 'shop', created_at: 1 } }),
    });
    setCsrfToken('tok-123');
    await call(routes.listApps, undefined);
    await call(routes.createApp, { id: 'shop' });
    const [get, post] = server.calls;
    expect(get?.headers.get('x-csrf-token')).toBeNull();
    expect(post?.headers.get('x-csrf-token')).toBe('tok-123');
    expect(post?.body).toEqual({ id: 'shop' });
    for (const c of server.calls) {
      expect(c.credentials).toBe('same-origin');
      expect(c.headers.get('authorization')).toBeNull();
    }
  });

  it('reports a lost session, except on the session route itself', async () => {
    fakeServer({
      'GET /v1/apps': () => ({ status: 401, body: { error: { code: 'unauthorized', message: 'missing or invalid credentials' } } }),
      'GET /v1/admin/session': () => ({ status: 401, body: { error: { code: 'unauthorized', message: 'x' } } }),
    });
    const lost = vi.fn();
    setUnauthorizedHandler(lost);
    await adminFetch('/v1/admin/session');
    expect(lost).not.toHaveBeenCalled();
    await expect(call(routes.listApps, undefined)).rejects.toMatchObject({ status: 401, code: 'unauthorized' });
    expect(lost).toHaveBeenCalledTimes(1);
  });
});
