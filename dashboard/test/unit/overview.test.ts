import { render, screen } from '@testing-library/svelte';
import { describe, expect, it } from 'vitest';
import Overview from '../../src/tabs/Overview.svelte';
import { fakeServer } from './fake-server';

const sample = (at: number, publishes: number, failed: number, dead: number) => ({
  at, publishes, deliveries_ok: 1, deliveries_failed: failed, dead_letters: dead, sse_streams: 2, outbox_pending: 5,
});

describe('Overview', () => {
  it('says samples are being collected before the first one', async () => {
    const server = fakeServer({ 'GET /v1/admin/stats': () => ({ body: { app: 'shop', interval_secs: 10, window_secs: 3600, samples: [] } }) });
    render(Overview, { props: { app: 'shop' } });
    expect(await screen.findByText('Collecting the first samples')).toBeTruthy();
    expect(server.calls[0]?.query.get('app')).toBe('shop');
  });

  it('sums the hour and charts each series', async () => {
    fakeServer({
      'GET /v1/admin/stats': () => ({ body: { app: 'shop', interval_secs: 10, window_secs: 3600, samples: [sample(1, 20, 0, 0), sample(2, 30, 4, 1)] } }),
    });
    render(Overview, { props: { app: 'shop' } });
    const published = await screen.findByText('Published (1 h)');
    expect(published.nextElementSibling?.textContent).toBe('50');
    expect(screen.getByText('New dead letters').nextElementSibling?.textContent).toBe('1');
    expect(screen.getByText('Queue depth now').nextElementSibling?.textContent).toBe('5');
    const titles = Array.from(document.querySelectorAll('figcaption')).map((f) => f.textContent);
    expect(titles).toEqual([
      'Publishes per second',
      'Deliveries',
      'Dead letters',
      'SSE connections (this node)',
      'Queue depth (pending deliveries)',
    ]);
    expect(screen.getByText('2 delivered and 4 failed attempts in the last hour')).toBeTruthy();
  });
});
