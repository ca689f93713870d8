import { render, screen } from '@testing-library/svelte';
import userEvent from '@testing-library/user-event';
import { describe, expect, it, vi } from 'vitest';
import SignIn from '../../src/pages/SignIn.svelte';
import { fakeServer } from './fake-server';

async function attempt(password: string) {
  const user = userEvent.setup();
  const onsignedin = vi.fn();
  render(SignIn, { props: { onsignedin } });
  await user.type(screen.getByLabelText('Email'), 'root@example.com');
  await user.type(screen.getByLabelText('Password'), password);
  await user.keyboard('{Enter}');
  return onsignedin;
}

describe('SignIn', () => {
  it('signs in and hands over the session', async () => {
    const session = { admin: { id: 'adm_1', email: 'root@example.com' }, csrf_token: 'c', expires_at: 1 };
    const server = fakeServer({ 'POST /v1/admin/session': () => ({ body: session }) });
    const onsignedin = await attempt('correct horse');
    await vi.waitFor(() => expect(onsignedin).toHaveBeenCalledWith(session));
    expect(server.calls[0]?.body).toEqual({ email: 'root@example.com', password: 'correct horse' });
  });

  it('says a wrong password is wrong, and a locked account is locked', async () => {
    fakeServer({ 'POST /v1/admin/session': () => ({ status: 401, body: { error: { code: 'unauthorized', message: 'invalid email or password' } } }) });
    const onsignedin = await attempt('nope');
    expect((await screen.findByRole('alert')).textContent).toBe('Wrong email or password.');
    expect(onsignedin).not.toHaveBeenCalled();
  });

  it('explains the lockout', async () => {
    fakeServer({ 'POST /v1/admin/session': () => ({ status: 429, body: { error: { code: 'rate_limited', message: 'too many failed sign-ins; try again in 30 s' } } }) });
    await attempt('nope');
    expect((await screen.findByRole('alert')).textContent).toContain('try again in 30 s');
  });
});
