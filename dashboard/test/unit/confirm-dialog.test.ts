import { render, screen } from '@testing-library/svelte';
import userEvent from '@testing-library/user-event';
import { createRawSnippet } from 'svelte';
import { describe, expect, it, vi } from 'vitest';
import ConfirmDialog from '../../src/components/ConfirmDialog.svelte';

const text = (s: string) => createRawSnippet(() => ({ render: () => `<p>${s}</p>` }));

describe('ConfirmDialog', () => {
  it('keeps the button disabled until the exact word is typed', async () => {
    const user = userEvent.setup();
    const onconfirm = vi.fn();
    const onclose = vi.fn();
    render(ConfirmDialog, {
      props: { title: 'Delete app shop', open: true, confirmLabel: 'Delete app', danger: true, typed: 'shop', onconfirm, onclose, children: text('Gone for good.') },
    });
    const button = screen.getByRole('button', { name: 'Delete app' });
    expect(button).toHaveProperty('disabled', true);
    const field = screen.getByLabelText(/Type shop to confirm/);
    expect(document.activeElement).toBe(field);
    await user.type(field, 'sho');
    expect(button).toHaveProperty('disabled', true);
    await user.type(field, 'p');
    expect(button).toHaveProperty('disabled', false);
    await user.click(button);
    expect(onconfirm).toHaveBeenCalledTimes(1);
    expect(onclose).toHaveBeenCalledTimes(1);
  });

  it('shows the failure and stays open when the action fails', async () => {
    const user = userEvent.setup();
    const onclose = vi.fn();
    render(ConfirmDialog, {
      props: {
        title: 'Rotate?',
        open: true,
        confirmLabel: 'Rotate',
        onconfirm: () => Promise.reject(new Error('the database is unavailable; retry later')),
        onclose,
        children: text('New secret.'),
      },
    });
    expect(document.activeElement).toBe(screen.getByRole('button', { name: 'Cancel' }));
    await user.click(screen.getByRole('button', { name: 'Rotate' }));
    expect((await screen.findByRole('alert')).textContent).toContain('the database is unavailable');
    expect(onclose).not.toHaveBeenCalled();
    await user.click(screen.getByRole('button', { name: 'Cancel' }));
    expect(onclose).toHaveBeenCalledTimes(1);
  });
});
