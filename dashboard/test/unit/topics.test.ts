import { render, screen, within } from '@testing-library/svelte';
import userEvent from '@testing-library/user-event';
import { describe, expect, it } from 'vitest';
import { setCsrfToken } from '../../src/lib/api';
import Topics from '../../src/tabs/Topics.svelte';
import { fakeServer, topic } from './fake-server';

function serve(topics: ReturnType<typeof topic>[]) {
  return fakeServer({
    'GET /v1/apps/shop/topics': () => ({ body: { topics } }),
    'GET /v1/apps/shop/realtime/subscribers': () => ({ body: { streams: 3, topics: [{ topic: 'news', subscribers: 3 }] } }),
    'PATCH /v1/apps/shop/topics/news/external': (c) => {
      const flipped = topics.find((t) => t.name === 'news');
      if (flipped) flipped.external_subscribable = (c.body as { external_subscribable: boolean }).external_subscribable;
      return { body: flipped };
    },
  });
}

describe('Topics', () => {
  it('shows the external badge, auth mode, retention, last seq and live subscribers', async () => {
    serve([topic('news', true, 'public'), topic('audit', false)]);
    render(Topics, { props: { app: 'shop' } });
    const news = await screen.findByRole('row', { name: /news/ });
    expect(within(news).getByText('External')).toBeTruthy();
    expect(news.textContent).toContain('public');
    expect(news.textContent).toContain('100,000 events · 7 d');
    const cells = within(news).getAllByRole('cell').map((c) => c.textContent?.trim());
    expect(cells).toContain('7');
    expect(cells).toContain('3');
    const audit = screen.getByRole('row', { name: /audit/ });
    expect(within(audit).getByText('Internal')).toBeTruthy();
  });

  it('says who will be able to subscribe before making a public topic external', async () => {
    const user = userEvent.setup();
    const server = serve([topic('news', false, 'public')]);
    setCsrfToken('csrf-1');
    render(Topics, { props: { app: 'shop' } });
    await user.click(await screen.findByRole('button', { name: 'Make external: news' }));
    const dialog = screen.getByRole('dialog', { name: 'Make news external?' });
    expect(dialog.textContent).toContain('Anyone on the internet');
    expect(server.calls.some((c) => c.method === 'PATCH')).toBe(false);
    await user.click(within(dialog).getByRole('button', { name: 'Make external' }));
    const row = await screen.findByRole('row', { name: /news/ });
    await within(row).findByText('External');
    const patch = server.calls.find((c) => c.method === 'PATCH');
    expect(patch?.body).toEqual({ external_subscribable: true });
    expect(patch?.headers.get('x-csrf-token')).toBe('csrf-1');
  });

  it('warns about token holders for token topics, and cancelling changes nothing', async () => {
    const user = userEvent.setup();
    const server = serve([topic('news', false, 'token')]);
    render(Topics, { props: { app: 'shop' } });
    await user.click(await screen.findByRole('button', { name: 'Make external: news' }));
    const dialog = screen.getByRole('dialog');
    expect(dialog.textContent).toContain('Any browser holding a subscriber token');
    await user.click(within(dialog).getByRole('button', { name: 'Cancel' }));
    expect(screen.queryByRole('dialog')).toBeNull();
    expect(server.calls.some((c) => c.method === 'PATCH')).toBe(false);
  });

  it('has an empty state and an error state', async () => {
    serve([]);
    const { unmount } = render(Topics, { props: { app: 'shop' } });
    expect(await screen.findByText('No topics yet')).toBeTruthy();
    unmount();
    fakeServer({ 'GET /v1/apps/shop/topics': () => ({ status: 503, body: { error: { code: 'unavailable', message: 'the database is unavailable; retry later' } } }) });
    render(Topics, { props: { app: 'shop' } });
    expect((await screen.findByRole('alert')).textContent).toContain('the database is unavailable');
    expect(screen.getByRole('button', { name: 'Try again' })).toBeTruthy();
  });
});
