import { render, screen, within } from '@testing-library/svelte';
import userEvent from '@testing-library/user-event';
import { describe, expect, it } from 'vitest';
import Keys from '../../src/tabs/Keys.svelte';
import { fakeServer } from './fake-server';

const SECRET = 'pk_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG';

describe('Keys', () => {
  it('creates a key with the chosen scopes and shows its secret once', async () => {
    const user = userEvent.setup();
    const keys: unknown[] = [];
    const server = fakeServer({
      'GET /v1/apps/shop/keys': () => ({ body: { keys } }),
      'POST /v1/apps/shop/keys': (c) => {
        const body = c.body as { name: string; scopes: string[] };
        const key = { id: 'key_1', app: 'shop', name: body.name, prefix: 'pk_abcdefgh', scopes: body.scopes, created_at: 1 };
        keys.push(key);
        return { status: 201, body: { ...key, key: SECRET } };
      },
    });
    render(Keys, { props: { app: 'shop' } });
    expect(await screen.findByText('No keys yet')).toBeTruthy();
    await user.type(screen.getByLabelText('Key name'), 'web');
    await user.click(screen.getByRole('checkbox', { name: /app:read/ }));
    await user.click(screen.getByRole('button', { name: 'Create key' }));
    const dialog = await screen.findByRole('dialog', { name: 'Key created' });
    expect(within(dialog).getByText(SECRET)).toBeTruthy();
    expect(within(dialog).getByRole('button', { name: 'Copy' })).toBeTruthy();
    const sent = server.calls.find((c) => c.method === 'POST')?.body as { name: string; scopes: string[] };
    expect(sent.name).toBe('web');
    expect([...sent.scopes].sort()).toEqual(['app:read', 'pubsub:publish']);
    await user.click(within(dialog).getByRole('button', { name: 'I have copied it' }));
    expect(await screen.findByRole('cell', { name: 'web' })).toBeTruthy();
    expect(document.body.textContent).not.toContain(SECRET);
  });
});
