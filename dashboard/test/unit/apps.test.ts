import { render, screen, within } from '@testing-library/svelte';
import userEvent from '@testing-library/user-event';
import { describe, expect, it } from 'vitest';
import Apps from '../../src/pages/Apps.svelte';
import { fakeServer } from './fake-server';

describe('Apps', () => {
  it('deletes an app only after its id is typed', async () => {
    const user = userEvent.setup();
    let apps = [{ id: 'shop', name: 'My Shop', created_at: 1 }];
    const server = fakeServer({
      'GET /v1/apps': () => ({ body: { apps } }),
      'DELETE /v1/apps/shop': () => {
        apps = [];
        return { status: 204 };
      },
    });
    render(Apps);
    await user.click(await screen.findByRole('button', { name: 'Delete app shop' }));
    const dialog = screen.getByRole('dialog', { name: 'Delete app shop' });
    const confirm = within(dialog).getByRole('button', { name: 'Delete app' });
    await user.type(within(dialog).getByRole('textbox'), 'Shop');
    expect(confirm).toHaveProperty('disabled', true);
    await user.clear(within(dialog).getByRole('textbox'));
    await user.type(within(dialog).getByRole('textbox'), 'shop');
    await user.click(confirm);
    expect(await screen.findByText('No apps yet')).toBeTruthy();
    expect(server.calls.filter((c) => c.method === 'DELETE').map((c) => c.path)).toEqual(['/v1/apps/shop']);
  });
});
