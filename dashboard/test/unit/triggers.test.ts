import { render, screen, within } from '@testing-library/svelte';
import userEvent from '@testing-library/user-event';
import { describe, expect, it } from 'vitest';
import Triggers from '../../src/tabs/Triggers.svelte';
import { fakeServer } from './fake-server';

const trigger = {
  id: 'trg_1', app: 'shop', source: { kind: 'topic', topic: 'orders' }, handler: { kind: 'webhook', url: 'http://hook' },
  retry: { max_attempts: 2, schedule_secs: [1] }, ordered: false, pacing: {}, enabled: true,
  circuit_state: 'open', circuit_probe_at: new Date(2030, 0, 2, 3, 4, 5).getTime(), consecutive_failures: 27, created_at: 1, updated_at: 1,
};
const delivery = (id: number, attempts: number, last_error: string | null) => ({
  id, trigger_id: 'trg_1', topic: 'orders', seq: id, state: attempts ? 'dead' : 'pending', attempts, next_attempt_at: 0,
  last_error, last_status: last_error ? 503 : null, created_at: 1,
});

describe('Triggers', () => {
  it('shows the last error of an open circuit whose newest delivery waits untried, and explains the circuit', async () => {
    fakeServer({
      'GET /v1/apps/shop/triggers': () => ({ body: { triggers: [trigger] } }),
      'GET /v1/apps/shop/deliveries': (c) => ({
        body: {
          deliveries: c.query.get('state') === 'dead'
            ? [delivery(5, 2, 'HTTP 503 Service Unavailable')]
            : [delivery(6, 0, null), delivery(5, 2, 'HTTP 503 Service Unavailable')],
        },
      }),
    });
    render(Triggers, { props: { app: 'shop' } });
    const card = await screen.findByRole('listitem', { name: 'Trigger orders → http://hook' });
    expect((await within(card).findByText('HTTP 503 Service Unavailable')).className).toContain('bad-text');
    expect(within(card).getByTestId('circuit-note').textContent).toContain('tried at 2030-01-02 03:04:05');
    expect(card.textContent).toContain('2 attempts: retried after 1 s');
    expect(within(card).getByRole('button', { name: 'Disable: orders → http://hook' })).toBeTruthy();
  });

  it('shows no last error once the last attempt succeeded', async () => {
    fakeServer({
      'GET /v1/apps/shop/triggers': () => ({ body: { triggers: [{ ...trigger, circuit_state: 'closed', circuit_probe_at: null, consecutive_failures: 0 }] } }),
      'GET /v1/apps/shop/deliveries': () => ({ body: { deliveries: [delivery(5, 2, 'HTTP 503 Service Unavailable')] } }),
    });
    render(Triggers, { props: { app: 'shop' } });
    const card = await screen.findByRole('listitem', { name: /^Trigger orders/ });
    expect(within(card).getByTestId('trigger-last-error').textContent).toBe('—');
    expect(within(card).queryByTestId('circuit-note')).toBeNull();
  });

  it('names a script handler and creates one without showing a signing secret', async () => {
    const created: unknown[] = [];
    const scripted = { ...trigger, id: 'trg_2', handler: { kind: 'script', script: 'on_order' }, circuit_state: 'closed', circuit_probe_at: null, consecutive_failures: 0 };
    fakeServer({
      'GET /v1/apps/shop/triggers': () => ({ body: { triggers: created.length ? [scripted] : [] } }),
      'POST /v1/apps/shop/triggers': (c) => {
        created.push(c.body);
        return { status: 201, body: { ...scripted, secret: 'whsec_x' } };
      },
      'GET /v1/apps/shop/deliveries': () => ({ body: { deliveries: [] } }),
    });
    const user = userEvent.setup();
    render(Triggers, { props: { app: 'shop' } });
    await screen.findByText('No triggers yet');
    await user.type(screen.getByLabelText('Topic pattern'), 'orders');
    await user.selectOptions(screen.getByLabelText('Handler'), 'script');
    await user.type(await screen.findByLabelText('Script'), 'on_order');
    await user.click(screen.getByRole('button', { name: 'Create trigger' }));
    const card = await screen.findByRole('listitem', { name: 'Trigger orders → script on_order' });
    expect(created).toEqual([{ source: { kind: 'topic', topic: 'orders' }, handler: { kind: 'script', script: 'on_order' } }]);
    expect(within(card).queryByRole('button', { name: /Reveal secret/ })).toBeNull();
    expect(screen.queryByTestId('trigger-secret')).toBeNull();
  });

  it('creates a cron trigger and shows when it ticks next', async () => {
    const user = userEvent.setup();
    const created: unknown[] = [];
    const next = new Date(2030, 0, 2, 9, 0, 0).getTime();
    const cron = {
      ...trigger, id: 'trg_3', source: { kind: 'cron', schedule: '0 9 * * 1-5', timezone: 'Europe/Berlin', catch_up: 'one' },
      handler: { kind: 'script', script: 'daily_report' }, circuit_state: 'closed', circuit_probe_at: null, consecutive_failures: 0, next_tick_at: next,
    };
    fakeServer({
      'GET /v1/apps/shop/triggers': () => ({ body: { triggers: created.length ? [cron] : [] } }),
      'POST /v1/apps/shop/triggers': (c) => {
        created.push(c.body);
        return { status: 201, body: { ...cron, secret: 'whsec_x' } };
      },
      'GET /v1/apps/shop/deliveries': () => ({ body: { deliveries: [] } }),
    });
    render(Triggers, { props: { app: 'shop' } });
    await screen.findByText('No triggers yet');
    await user.selectOptions(screen.getByLabelText('Source'), 'cron');
    await user.type(await screen.findByLabelText('Schedule'), '0 9 * * 1-5');
    await user.clear(screen.getByLabelText('Time zone'));
    await user.type(screen.getByLabelText('Time zone'), 'Europe/Berlin');
    await user.selectOptions(screen.getByLabelText('Handler'), 'script');
    await user.type(await screen.findByLabelText('Script'), 'daily_report');
    await user.click(screen.getByRole('button', { name: 'Create trigger' }));
    const card = await screen.findByRole('listitem', { name: 'Trigger cron 0 9 * * 1-5 (Europe/Berlin) → script daily_report' });
    expect(created).toEqual([{
      source: { kind: 'cron', schedule: '0 9 * * 1-5', timezone: 'Europe/Berlin' },
      handler: { kind: 'script', script: 'daily_report' },
    }]);
    expect(card.textContent).toContain('2030-01-02 09:00:00');
  });
});
