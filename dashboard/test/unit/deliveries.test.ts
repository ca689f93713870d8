import { render, screen, within } from '@testing-library/svelte';
import userEvent from '@testing-library/user-event';
import { describe, expect, it } from 'vitest';
import Deliveries from '../../src/tabs/Deliveries.svelte';
import { fakeServer } from './fake-server';

const delivery = { id: 7, trigger_id: 'trg_1', topic: 'orders', seq: 4, state: 'dead', attempts: 2, next_attempt_at: 0, last_error: 'connection refused', last_status: null, created_at: 1 };

describe('Deliveries', () => {
  it('filters by state and trigger, shows the attempt timeline and retries', async () => {
    const user = userEvent.setup();
    const server = fakeServer({
      'GET /v1/apps/shop/triggers': () => ({
        body: { triggers: [{ id: 'trg_1', source: { kind: 'topic', topic: 'orders' }, handler: { kind: 'webhook', url: 'http://hook' } }] },
      }),
      'GET /v1/apps/shop/deliveries': () => ({ body: { deliveries: [delivery] } }),
      'GET /v1/apps/shop/deliveries/7': () => ({
        body: {
          ...delivery,
          attempts: [
            { attempt: 1, started_at: 1, duration_ms: 3, error: 'connection refused' },
            { attempt: 2, started_at: 2, duration_ms: 4, status_code: 503, response_body: 'busy' },
          ],
        },
      }),
      'POST /v1/apps/shop/deliveries/7/retry': () => ({ body: { ...delivery, state: 'pending' } }),
    });
    render(Deliveries, { props: { app: 'shop' } });
    await screen.findByRole('button', { name: 'Delivery 7: show attempts' });
    await user.selectOptions(screen.getByLabelText('State'), 'dead');
    await user.selectOptions(screen.getByLabelText('Trigger'), 'trg_1');
    const lists = server.calls.filter((c) => c.path === '/v1/apps/shop/deliveries');
    const last = lists.at(-1);
    expect([last?.query.get('state'), last?.query.get('trigger')]).toEqual(['dead', 'trg_1']);

    await user.click(screen.getByRole('button', { name: 'Delivery 7: show attempts' }));
    const dialog = await screen.findByRole('dialog', { name: 'Delivery #7' });
    const steps = within(dialog).getAllByRole('listitem').map((li) => li.textContent);
    expect(steps[0]).toContain('Attempt 1');
    expect(steps[0]).toContain('connection refused');
    expect(steps[1]).toContain('HTTP 503');
    expect(steps[1]).toContain('busy');
    await user.click(within(dialog).getByRole('button', { name: 'Retry now' }));
    expect(server.calls.some((c) => c.method === 'POST' && c.path === '/v1/apps/shop/deliveries/7/retry')).toBe(true);
  });

  it('shows no error on a success and a failure\'s status once', async () => {
    fakeServer({
      'GET /v1/apps/shop/triggers': () => ({ body: { triggers: [] } }),
      'GET /v1/apps/shop/deliveries': () => ({
        body: {
          deliveries: [
            { ...delivery, id: 9, state: 'delivered', last_status: 200, last_error: null },
            { ...delivery, id: 8, state: 'dead', last_status: 500, last_error: 'HTTP 500 Internal Server Error' },
          ],
        },
      }),
    });
    render(Deliveries, { props: { app: 'shop' } });
    await screen.findByRole('button', { name: 'Delivery 9: show attempts' });
    const lastError = (id: number) => within(screen.getByRole('row', { name: new RegExp(`#${id}`) })).getAllByRole('cell')[5]?.textContent?.trim();
    expect(lastError(9)).toBe('');
    expect(lastError(8)).toBe('HTTP 500 Internal Server Error');
  });
});
