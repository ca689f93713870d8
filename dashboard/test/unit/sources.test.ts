import { render, screen, within } from '@testing-library/svelte';
import userEvent from '@testing-library/user-event';
import { describe, expect, it, vi } from 'vitest';
import Sources from '../../src/tabs/Sources.svelte';
import { fakeServer } from './fake-server';

const ERROR_AT = new Date(2030, 0, 2, 3, 4, 5).getTime();

const status = (over: Record<string, unknown> = {}) => ({
  connected: true, relay_node: 'node-a', rows_waiting: 1204, oldest_waiting_ms: 185_000, relayed_total: 98765,
  last_error: null, last_error_at: null, reported_at: 1, ...over,
});
const source = (id: string, over: Record<string, unknown> = {}) => ({
  id, kind: 'postgres_outbox', database_url: 'postgres://relay@db.internal:5432/shop', schema: 'picloud', enabled: true,
  status: status(), created_at: 1, updated_at: 1, ...over,
});

describe('Sources', () => {
  it('lists sources with their relay health', async () => {
    fakeServer({
      'GET /v1/apps/shop/sources': () => ({
        body: {
          sources: [
            source('src_1'),
            source('src_2', {
              database_url: 'postgres://relay@10.0.0.9/billing', schema: 'outbox',
              status: status({ connected: false, rows_waiting: null, oldest_waiting_ms: null, relayed_total: 0, last_error: 'connection refused', last_error_at: ERROR_AT }),
            }),
            source('src_3', { enabled: false, status: status({ connected: false, relay_node: null, rows_waiting: 0, oldest_waiting_ms: null }) }),
          ],
        },
      }),
    });
    render(Sources, { props: { app: 'shop' } });

    const up = await screen.findByRole('listitem', { name: 'Source src_1' });
    expect(within(up).getByTestId('source-url').textContent).toBe('postgres://relay@db.internal:5432/shop');
    expect(within(up).getByTestId('source-health').textContent).toBe('Connected');
    expect(up.textContent).toContain('node-a');
    expect(within(up).getByTestId('source-waiting').textContent).toBe('1,204');
    expect(up.textContent).toContain('3 min 5 s');
    expect(within(up).getByTestId('source-relayed').textContent).toBe('98,765');
    expect(within(up).getByTestId('source-last-error').textContent).toBe('—');
    expect(within(up).getByRole('button', { name: 'Disable source src_1' })).toBeTruthy();

    const down = screen.getByRole('listitem', { name: 'Source src_2' });
    expect(within(down).getByTestId('source-health').textContent).toBe('Not connected');
    expect(within(down).getByTestId('source-health').className).toContain('bad');
    const lastError = within(down).getByTestId('source-last-error');
    expect(lastError.textContent).toBe('connection refused');
    expect(lastError.className).toContain('bad-text');
    expect(down.textContent).toContain('at 2030-01-02 03:04:05');
    expect(down.textContent).toContain('outbox');

    const off = screen.getByRole('listitem', { name: 'Source src_3' });
    expect(within(off).getByTestId('source-health').textContent).toBe('Stopped');
    expect(off.textContent).toContain('Disabled');
    expect(within(off).getByRole('button', { name: 'Enable source src_3' })).toBeTruthy();
  });

  it('refreshes the status every 2 s', async () => {
    let reads = 0;
    fakeServer({
      'GET /v1/apps/shop/sources': () => {
        reads += 1;
        return { body: { sources: [source('src_1', { status: status(reads === 1 ? { connected: false, relay_node: null } : {}) })] } };
      },
    });
    render(Sources, { props: { app: 'shop' } });
    const card = await screen.findByRole('listitem', { name: 'Source src_1' });
    expect(within(card).getByTestId('source-health').textContent).toBe('Starting');
    await vi.waitFor(() => expect(within(card).getByTestId('source-health').textContent).toBe('Connected'), { timeout: 4000 });
    expect(reads).toBeGreaterThanOrEqual(2);
  });

  it('explains what a source is when there is none', async () => {
    fakeServer({ 'GET /v1/apps/shop/sources': () => ({ body: { sources: [] } }) });
    render(Sources, { props: { app: 'shop' } });
    await screen.findByText('No sources yet');
    const empty = document.querySelector('.empty-state')?.textContent ?? '';
    expect(empty).toContain('picloud sources install');
    expect(empty).toContain('docs/sources.md');
  });

  it('adds a source, clears the URL it was given and shows only the server\'s copy', async () => {
    const user = userEvent.setup();
    const sources: unknown[] = [];
    const server = fakeServer({
      'GET /v1/apps/shop/sources': () => ({ body: { sources } }),
      'POST /v1/apps/shop/sources': () => {
        const created = source('src_9', { database_url: 'postgres://relay@db.internal/shop', schema: 'events', status: status({ connected: false, relay_node: null }) });
        sources.push(created);
        return { status: 201, body: created };
      },
    });
    render(Sources, { props: { app: 'shop' } });
    await screen.findByText('No sources yet');
    const url = screen.getByLabelText('Database URL');
    expect(url.getAttribute('type')).toBe('password');
    await user.type(url, 'postgres://relay:s3cret@db.internal/shop');
    await user.type(screen.getByLabelText('Schema'), 'events');
    await user.click(screen.getByRole('button', { name: 'Add source' }));

    const card = await screen.findByRole('listitem', { name: 'Source src_9' });
    expect(server.calls.find((c) => c.method === 'POST')?.body).toEqual({
      kind: 'postgres_outbox', database_url: 'postgres://relay:s3cret@db.internal/shop', schema: 'events',
    });
    expect(within(card).getByTestId('source-url').textContent).toBe('postgres://relay@db.internal/shop');
    expect((url as HTMLInputElement).value).toBe('');
    expect((screen.getByLabelText('Schema') as HTMLInputElement).value).toBe('');
    expect(document.body.innerHTML).not.toContain('s3cret');
  });

  it('leaves the schema out when none is given, and shows the server\'s 400', async () => {
    const user = userEvent.setup();
    const server = fakeServer({
      'GET /v1/apps/shop/sources': () => ({ body: { sources: [] } }),
      'POST /v1/apps/shop/sources': () => ({
        status: 400, body: { error: { code: 'invalid_request', message: 'database_url must be a postgres:// URL' } },
      }),
    });
    render(Sources, { props: { app: 'shop' } });
    await screen.findByText('No sources yet');
    await user.type(screen.getByLabelText('Database URL'), 'mysql://root:hunter2@db/shop');
    await user.click(screen.getByRole('button', { name: 'Add source' }));
    expect((await screen.findByRole('alert')).textContent).toBe('database_url must be a postgres:// URL');
    expect(server.calls.find((c) => c.method === 'POST')?.body).toEqual({ kind: 'postgres_outbox', database_url: 'mysql://root:hunter2@db/shop' });
    expect((screen.getByLabelText('Database URL') as HTMLInputElement).value).toBe('');
    expect(document.body.innerHTML).not.toContain('hunter2');
  });

  it('disables and enables a source', async () => {
    const user = userEvent.setup();
    let current = source('src_1');
    const server = fakeServer({
      'GET /v1/apps/shop/sources': () => ({ body: { sources: [current] } }),
      'PATCH /v1/apps/shop/sources/src_1': (c) => {
        const enabled = (c.body as { enabled: boolean }).enabled;
        current = source('src_1', { enabled, status: status(enabled ? {} : { connected: false, relay_node: null }) });
        return { body: current };
      },
    });
    render(Sources, { props: { app: 'shop' } });
    const card = await screen.findByRole('listitem', { name: 'Source src_1' });
    await user.click(within(card).getByRole('button', { name: 'Disable source src_1' }));
    await within(card).findByRole('button', { name: 'Enable source src_1' });
    expect(within(card).getByTestId('source-health').textContent).toBe('Stopped');
    await user.click(within(card).getByRole('button', { name: 'Enable source src_1' }));
    await within(card).findByRole('button', { name: 'Disable source src_1' });
    expect(server.calls.filter((c) => c.method === 'PATCH').map((c) => c.body)).toEqual([{ enabled: false }, { enabled: true }]);
    // State-changing requests carry the session's credentials.
    expect(server.calls.find((c) => c.method === 'PATCH')?.credentials).toBe('same-origin');
  });

  it('deletes a source only through the confirmation', async () => {
    const user = userEvent.setup();
    let sources = [source('src_1')];
    const server = fakeServer({
      'GET /v1/apps/shop/sources': () => ({ body: { sources } }),
      'DELETE /v1/apps/shop/sources/src_1': () => {
        sources = [];
        return { status: 204 };
      },
    });
    render(Sources, { props: { app: 'shop' } });
    const card = await screen.findByRole('listitem', { name: 'Source src_1' });
    await user.click(within(card).getByRole('button', { name: 'Delete source src_1' }));
    let dialog = screen.getByRole('dialog', { name: 'Delete this source?' });
    await user.click(within(dialog).getByRole('button', { name: 'Cancel' }));
    expect(server.calls.some((c) => c.method === 'DELETE')).toBe(false);

    await user.click(within(card).getByRole('button', { name: 'Delete source src_1' }));
    dialog = screen.getByRole('dialog', { name: 'Delete this source?' });
    expect(dialog.textContent).toContain("Rows still waiting stay in the app's outbox");
    await user.click(within(dialog).getByRole('button', { name: 'Delete source' }));
    await screen.findByText('No sources yet');
    expect(server.calls.filter((c) => c.method === 'DELETE').map((c) => c.path)).toEqual(['/v1/apps/shop/sources/src_1']);
  });
});
