import { render, screen, within } from '@testing-library/svelte';
import userEvent from '@testing-library/user-event';
import { describe, expect, it, vi } from 'vitest';
import DeadLetters from '../../src/tabs/DeadLetters.svelte';
import { fakeServer } from './fake-server';

const letter = (id: number) => ({
  id, outbox_id: id, trigger_id: 'trg_1', topic: 'orders', seq: id, attempts: 3,
  last_error: 'HTTP 500', last_status: 500, created_at: 1, replayed_at: null,
});

describe('DeadLetters', () => {
  it('inspects the payload and last error, and replays a selection at the chosen pace', async () => {
    const user = userEvent.setup();
    const server = fakeServer({
      'GET /v1/apps/shop/dead-letters': () => ({ body: { dead_letters: [letter(3), letter(2), letter(1)] } }),
      'GET /v1/apps/shop/dead-letters/2': () => ({
        body: { ...letter(2), event: { topic: 'orders', seq: 2, id: 'evt_2', type: 'order.created', data: { total: 99 }, published_at: 1 } },
      }),
      'POST /v1/apps/shop/dead-letters/replay': (c) => ({ body: { count: (c.body as { ids: number[] }).ids.length } }),
    });
    render(DeadLetters, { props: { app: 'shop' } });
    await user.click(await screen.findByRole('button', { name: 'Dead letter 2: inspect' }));
    const dialog = screen.getByRole('dialog', { name: 'Dead letter #2' });
    expect(within(dialog).getByTestId('dead-letter-payload').textContent).toContain('"total": 99');
    expect(dialog.textContent).toContain('HTTP 500');
    await user.click(within(dialog).getByRole('button', { name: 'Close' }));

    await user.click(screen.getByRole('checkbox', { name: 'Select dead letter 3' }));
    await user.click(screen.getByRole('checkbox', { name: 'Select dead letter 1' }));
    const pace = screen.getByLabelText('Replay pace (/s)');
    await user.clear(pace);
    await user.type(pace, '5');
    await user.click(screen.getByRole('button', { name: 'Replay selected (2)' }));
    const replay = server.calls.find((c) => c.method === 'POST');
    expect(replay?.body).toEqual({ ids: [3, 1], per_second: 5 });
  });

  it('shows the row of a source that PiCloud refused, and replays it one at a time', async () => {
    const user = userEvent.setup();
    const row = { ...letter(4), trigger_id: 'src_1', topic: 'bad topic!', seq: 0, attempts: 1, last_status: null,
      last_error: 'invalid topic name', payload: '{"topic":"bad topic!","type":"placed","data":{"id":7},"idempotency_key":null}' };
    const server = fakeServer({
      'GET /v1/apps/shop/dead-letters': () => ({ body: { dead_letters: [row] } }),
      'GET /v1/apps/shop/dead-letters/4': () => ({ body: { ...row, event: null } }),
      'POST /v1/apps/shop/dead-letters/4/replay': () => ({ body: { count: 1 } }),
    });
    render(DeadLetters, { props: { app: 'shop' } });
    // Listed by its row in the source, not as an event seq it never had.
    expect((await screen.findByText('(source row #4)', { exact: false })).textContent).not.toContain('#0');
    await user.click(await screen.findByRole('button', { name: 'Dead letter 4: inspect' }));
    const dialog = screen.getByRole('dialog', { name: 'Dead letter #4' });
    expect(within(dialog).getByTestId('dead-letter-payload').textContent).toContain('"id": 7');
    expect(dialog.textContent).toContain('src_1');
    expect(dialog.textContent).toContain('invalid topic name');
    expect(dialog.textContent).not.toContain('no longer in the topic');
    expect(within(dialog).getByRole('button', { name: 'Purge' })).toBeTruthy();
    await user.click(within(dialog).getByRole('button', { name: 'Replay' }));
    expect(server.calls.some((c) => c.method === 'POST' && c.path === '/v1/apps/shop/dead-letters/4/replay')).toBe(true);
  });

  it('purges only after typing purge', async () => {
    const user = userEvent.setup();
    const server = fakeServer({
      'GET /v1/apps/shop/dead-letters': () => ({ body: { dead_letters: [letter(1)] } }),
      'DELETE /v1/apps/shop/dead-letters': () => ({ body: { count: 1 } }),
    });
    render(DeadLetters, { props: { app: 'shop' } });
    await user.click(await screen.findByRole('button', { name: 'Purge all' }));
    const dialog = screen.getByRole('dialog');
    const confirm = within(dialog).getByRole('button', { name: 'Purge all' });
    expect(confirm).toHaveProperty('disabled', true);
    await user.type(within(dialog).getByRole('textbox'), 'purge');
    await user.click(confirm);
    await vi.waitFor(() => expect(screen.queryByRole('dialog')).toBeNull());
    expect(server.calls.filter((c) => c.method === 'DELETE').map((c) => c.path)).toEqual(['/v1/apps/shop/dead-letters']);
  });
});
