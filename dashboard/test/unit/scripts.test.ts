import { fireEvent, render, screen, waitFor, within } from '@testing-library/svelte';
import userEvent from '@testing-library/user-event';
import { afterEach, describe, expect, it } from 'vitest';
import { setCsrfToken } from '../../src/lib/api';
import Scripts from '../../src/tabs/Scripts.svelte';
import { fakeServer, type Call } from './fake-server';

const BASE = '/v1/apps/shop/scripts';
const SOURCE = 'fn handle(req) {\n    #{ token: pubsub::subscriber_token(["orders"], 600) }\n}\n';

const summary = (name: string, version = 2, access = 'key') => ({ name, version, access, created_at: 1, updated_at: new Date(2030, 0, 2, 3, 4, 5).getTime() });
const script = (name: string, source = SOURCE, version = 2, access = 'key') => ({ ...summary(name, version, access), source });
const run = (id: number, extra: Record<string, unknown> = {}) => ({
  id, script: 'mint_token', kind: 'function', version: 2, started_at: 1, duration_us: 180, outcome: 'ok', error: null,
  logs: [], dropped_logs: 0, request_id: `req_${id}`, delivery_id: null, ...extra,
});

/** A fake API holding one app's scripts, saving and restoring like the server does. */
function scriptsServer(options: {
  compileError?: { line: number; column: number; message: string };
  runs?: (c: Call) => unknown[];
  test?: (c: Call) => { status?: number; body: unknown };
} = {}) {
  const stored = new Map<string, { access: string; versions: string[] }>([['mint_token', { access: 'key', versions: ['// v1\n', SOURCE] }]]);
  const current = (name: string) => {
    const s = stored.get(name);
    if (!s) return undefined;
    return script(name, s.versions.at(-1), s.versions.length, s.access);
  };
  const server = fakeServer({
    [`GET ${BASE}`]: () => ({ body: { scripts: [...stored.keys()].map((n) => { const c = current(n); return c && summary(n, c.version, c.access); }) } }),
    [`GET ${BASE}/mint_token`]: () => ({ body: current('mint_token') }),
    [`PUT ${BASE}/mint_token`]: (c) => save('mint_token', c),
    [`PUT ${BASE}/hello`]: (c) => save('hello', c),
    [`DELETE ${BASE}/mint_token`]: () => {
      stored.delete('mint_token');
      return { status: 204 };
    },
    [`GET ${BASE}/mint_token/versions`]: () => ({
      body: { versions: (stored.get('mint_token')?.versions ?? []).map((source, i) => ({ version: i + 1, source, created_at: i + 1 })).reverse() },
    }),
    [`POST ${BASE}/mint_token/versions/1/restore`]: () => {
      const s = stored.get('mint_token');
      s?.versions.push(s.versions[0] ?? '');
      return { body: current('mint_token') };
    },
    [`GET ${BASE}/mint_token/runs`]: (c) => ({ body: { runs: options.runs?.(c) ?? [] } }),
    [`GET ${BASE}/hello/runs`]: () => ({ body: { runs: [] } }),
    [`POST ${BASE}/mint_token/test`]: (c) => options.test?.(c),
  });

  function save(name: string, c: Call) {
    if (options.compileError) {
      const { line, column, message } = options.compileError;
      const error = { code: 'script_compile_error', message: `the script does not compile: line ${line}, column ${column}: ${message}`, line, column };
      return { status: 400, body: { error } };
    }
    const body = c.body as { source: string; access?: string };
    const s = stored.get(name) ?? { access: 'key', versions: [] };
    s.versions.push(body.source);
    if (body.access) s.access = body.access;
    stored.set(name, s);
    return { body: current(name) };
  }

  return { ...server, stored };
}

const editor = () => screen.getByLabelText('Source (Rhai)') as HTMLTextAreaElement;
const setSource = (text: string) => fireEvent.input(editor(), { target: { value: text } });
const highlighted = () => screen.getByTestId('code-highlight');

describe('Scripts', () => {
  afterEach(() => setCsrfToken(''));

  it('lists scripts and opens the first in a highlighted editor', async () => {
    scriptsServer();
    render(Scripts, { props: { app: 'shop' } });
    const list = await screen.findByRole('navigation', { name: 'Scripts' });
    const item = within(list).getByRole('button', { name: /mint_token/ });
    expect(item.textContent).toContain('v2 · key · 2030-01-02 03:04:05');
    await waitFor(() => expect(editor().value).toBe(SOURCE));
    expect(item.getAttribute('aria-current')).toBe('true');
    const keywords = [...highlighted().querySelectorAll('.tok-keyword')].map((e) => e.textContent);
    expect(keywords).toEqual(['fn']);
    expect([...highlighted().querySelectorAll('.tok-module')].map((e) => e.textContent)).toEqual(['pubsub']);
    expect(highlighted().querySelector('.tok-string')?.textContent).toBe('"orders"');
    // One line number per line, the trailing empty line included.
    expect(screen.getByText('Version 2 · saved 2030-01-02 03:04:05', { exact: false })).toBeTruthy();
    expect((screen.getByLabelText('Who may call it') as HTMLSelectElement).value).toBe('key');
    expect(screen.queryByTestId('unsaved')).toBeNull();
    await setSource(`${SOURCE}// more\n`);
    expect(screen.getByTestId('unsaved').textContent).toBe('unsaved changes');
  });

  it('shows markup in a script as text', async () => {
    scriptsServer();
    render(Scripts, { props: { app: 'shop' } });
    await waitFor(() => expect(editor().value).toBe(SOURCE));
    await setSource('let x = "<img src=x onerror=alert(1)>"; // <b>bold</b>\n');
    expect(highlighted().querySelector('img, b')).toBeNull();
    expect(highlighted().textContent).toContain('<img src=x onerror=alert(1)>');
  });

  it('shows a very large source unhighlighted, to keep typing quick', async () => {
    scriptsServer();
    render(Scripts, { props: { app: 'shop' } });
    await waitFor(() => expect(editor().value).toBe(SOURCE));
    await setSource(`let x = 1;\n// ${'filler '.repeat(15_000)}\n`);
    expect(highlighted().querySelector('[class^="tok-"]')).toBeNull();
    expect(highlighted().textContent).toContain('let x = 1;');
    expect(screen.getByText(/Highlighting is off for sources over 100,000 characters/)).toBeTruthy();
    await setSource('let x = 1;\n');
    expect(highlighted().querySelector('.tok-keyword')?.textContent).toBe('let');
    expect(screen.queryByText(/Highlighting is off/)).toBeNull();
  });

  it('saves the source and access as a new version, also with Ctrl+S', async () => {
    const user = userEvent.setup();
    const server = scriptsServer();
    setCsrfToken('csrf-1');
    render(Scripts, { props: { app: 'shop' } });
    await waitFor(() => expect(editor().value).toBe(SOURCE));
    await setSource('fn handle(req) { 1 }\n');
    await user.selectOptions(screen.getByLabelText('Who may call it'), 'public');
    await user.click(screen.getByRole('button', { name: 'Save' }));
    await screen.findByText('Version 3 · saved', { exact: false });
    const puts = server.calls.filter((c) => c.method === 'PUT');
    expect(puts.map((c) => c.body)).toEqual([{ source: 'fn handle(req) { 1 }\n', access: 'public' }]);
    // Saves go through the session's fetch: the CSRF token rides along.
    expect(puts[0]?.headers.get('x-csrf-token')).toBe('csrf-1');
    expect(puts[0]?.credentials).toBe('same-origin');
    expect(await within(screen.getByRole('navigation', { name: 'Scripts' })).findByText('v3 · public', { exact: false })).toBeTruthy();
    expect(screen.queryByTestId('unsaved')).toBeNull();

    await setSource('fn handle(req) { 2 }\n');
    editor().focus();
    await user.keyboard('{Control>}s{/Control}');
    await screen.findByText('Version 4 · saved', { exact: false });
    expect(server.calls.filter((c) => c.method === 'PUT').at(-1)?.body).toEqual({ source: 'fn handle(req) { 2 }\n', access: 'public' });
  });

  it('marks the line of a compile error, says where, and clears the mark on edit', async () => {
    const user = userEvent.setup();
    scriptsServer({ compileError: { line: 2, column: 9, message: "Expecting ';'" } });
    render(Scripts, { props: { app: 'shop' } });
    await waitFor(() => expect(editor().value).toBe(SOURCE));
    await setSource('fn handle(req) {\n    let = 5;\n}\n');
    await user.click(screen.getByRole('button', { name: 'Save' }));
    const message = await screen.findByTestId('source-error');
    expect(message.textContent).toContain("Not saved: the script does not compile — Line 2, column 9: Expecting ';'");
    expect(message.textContent).not.toContain('the script does not compile: line 2');
    const gutter = [...document.querySelectorAll('.code-gutter span')];
    expect(gutter.map((s) => s.textContent)).toEqual(['1', '2', '3', '4']);
    expect(gutter.filter((s) => s.classList.contains('error')).map((s) => s.textContent)).toEqual(['2']);
    const lines = [...highlighted().querySelectorAll('.code-line')];
    expect(lines.findIndex((l) => l.classList.contains('error-line'))).toBe(1);
    expect(editor().getAttribute('aria-invalid')).toBe('true');
    expect(editor().getAttribute('aria-describedby')).toBe(message.id);
    expect(screen.getByText('Version 2 · saved', { exact: false })).toBeTruthy();

    await setSource('fn handle(req) {\n    let x = 5;\n}\n');
    expect(screen.queryByTestId('source-error')).toBeNull();
    expect(document.querySelector('.code-gutter .error')).toBeNull();
    expect(editor().getAttribute('aria-invalid')).toBeNull();
  });

  it('test-runs the editor text as a handler and as a function, and shows what it did', async () => {
    const user = userEvent.setup();
    let answer: { status?: number; body: unknown } = {
      body: { outcome: 'ok', result: { token: 'eyJ.x.y' }, error: null, duration_us: 1830, logs: [{ at_ms: 1, level: 'info', message: 'minted' }], dropped_logs: 0 },
    };
    const tests: Call[] = [];
    scriptsServer({
      test: (c) => {
        tests.push(c);
        return answer;
      },
    });
    render(Scripts, { props: { app: 'shop' } });
    await waitFor(() => expect(editor().value).toBe(SOURCE));
    const unsaved = 'fn handle(req) {\n    log::info("minted");\n    #{ token: "eyJ.x.y" }\n}\n';
    await setSource(unsaved);
    expect(screen.getByText(/A test run is real/).textContent).toContain('what it publishes is');

    // As a handler, with the prefilled sample event.
    await user.selectOptions(screen.getByLabelText('Run as'), 'handler');
    const event = screen.getByLabelText('Event') as HTMLTextAreaElement;
    expect(JSON.parse(event.value)).toMatchObject({ app: 'shop', topic: 'orders', seq: 1, type: 'order.created' });
    await user.click(screen.getByRole('button', { name: 'Run test' }));
    const output = await screen.findByTestId('test-result');
    expect(within(output).getByTestId('test-outcome').textContent).toBe('ok');
    expect(output.textContent).toContain('1.8 ms');
    expect(within(output).getByTestId('test-value').textContent).toContain('"token": "eyJ.x.y"');
    expect(within(output).getByRole('list', { name: 'Logged lines' }).textContent).toContain('minted');
    expect(tests[0]?.body).toMatchObject({ kind: 'handler', source: unsaved, event: { app: 'shop', topic: 'orders' } });

    // As a function, with a query, headers and a body; a throw marks its line.
    answer = { body: { outcome: 'error', result: null, error: 'Runtime error: no (line 2, position 5)', duration_us: 90, logs: [], dropped_logs: 0 } };
    await user.selectOptions(screen.getByLabelText('Run as'), 'function');
    await user.selectOptions(screen.getByLabelText('Method'), 'GET');
    await user.type(screen.getByLabelText('Query'), 'lang=fr{Enter}n=2');
    await user.click(screen.getByRole('button', { name: 'Run test' }));
    await waitFor(() => expect(screen.getByTestId('test-outcome').textContent).toBe('error'));
    expect(screen.getByTestId('test-error').textContent).toBe('Runtime error: no (line 2, position 5)');
    expect(tests[1]?.body).toEqual({
      kind: 'function', source: unsaved,
      request: { method: 'GET', query: { lang: 'fr', n: '2' }, headers: { 'content-type': 'application/json' }, body: '{}' },
    });
    expect(document.querySelector('.code-gutter .error')?.textContent).toBe('2');
    expect(screen.getByTestId('source-error').textContent).toContain('The test run ended with error — Line 2, column 5');

    // A source that does not compile is not run: the editor marks where.
    answer = { status: 400, body: { error: { code: 'script_compile_error', message: 'the script does not compile: line 3, column 1: Unexpected }', line: 3, column: 1 } } };
    await user.click(screen.getByRole('button', { name: 'Run test' }));
    expect((await screen.findByTestId('test-compile-error')).textContent).toContain('Line 3, column 1: Unexpected }');
    expect(document.querySelector('.code-gutter .error')?.textContent).toBe('3');
    expect(screen.queryByTestId('test-result')).toBeNull();

    // Bad input is caught before anything is sent.
    await user.clear(screen.getByLabelText('Headers'));
    await user.type(screen.getByLabelText('Headers'), 'not a header');
    await user.click(screen.getByRole('button', { name: 'Run test' }));
    expect((await screen.findByText(/is not name: value/)).textContent).toContain('not a header');
    expect(tests.length).toBe(3);
  });

  it('lists versions, shows one, and restores it', async () => {
    const user = userEvent.setup();
    const server = scriptsServer();
    render(Scripts, { props: { app: 'shop' } });
    await waitFor(() => expect(editor().value).toBe(SOURCE));
    await user.click(screen.getByRole('button', { name: 'History' }));
    const dialog = await screen.findByRole('dialog', { name: 'Versions of mint_token' });
    const items = await within(dialog).findAllByRole('listitem');
    expect(items.map((li) => li.textContent?.replace(/\s+/g, ' ').trim())).toEqual([
      expect.stringContaining('Version 2') as string,
      expect.stringContaining('Version 1') as string,
    ]);
    expect(items[0]?.textContent).toContain('current');
    // The current version has nothing to restore.
    await user.click(within(dialog).getByRole('button', { name: 'View version 2' }));
    expect(within(dialog).queryByRole('button', { name: /Restore/ })).toBeNull();
    await user.click(within(dialog).getByRole('button', { name: 'View version 1' }));
    expect((within(dialog).getByLabelText('Source of version 1') as HTMLTextAreaElement).value).toBe('// v1\n');
    await user.click(within(dialog).getByRole('button', { name: 'Restore version 1' }));
    await waitFor(() => expect(editor().value).toBe('// v1\n'));
    expect(screen.queryByRole('dialog')).toBeNull();
    expect(server.calls.some((c) => c.method === 'POST' && c.path === `${BASE}/mint_token/versions/1/restore`)).toBe(true);
    expect(screen.getByText('Version 3 · saved', { exact: false })).toBeTruthy();
  });

  it('shows the run log, expands a run\'s lines and pages back', async () => {
    const user = userEvent.setup();
    const page = Array.from({ length: 25 }, (_, i) => run(100 - i));
    page[0] = run(100, {
      kind: 'test', version: 0, outcome: 'error', error: 'Runtime error: boom (line 2, position 5)', duration_us: 2500,
      logs: [{ at_ms: 0, level: 'info', message: 'starting' }, { at_ms: 2, level: 'error', message: 'about to throw' }], dropped_logs: 3,
    });
    const server = scriptsServer({
      runs: (c) => (c.query.get('before') === '76' ? [run(75, { kind: 'handler', delivery_id: 9 })] : page),
    });
    render(Scripts, { props: { app: 'shop' } });
    const rows = await screen.findAllByTestId('run-row');
    expect(rows.length).toBe(25);
    const first = rows[0] as HTMLElement;
    expect(within(first).getAllByRole('cell').map((c) => c.textContent?.trim())).toEqual([
      expect.any(String), 'Test run', 'unsaved', '2.5 ms', 'error', 'Runtime error: boom (line 2, position 5)', '2 lines',
    ]);
    const toggle = within(first).getByRole('button', { name: '2 lines' });
    expect(toggle.getAttribute('aria-expanded')).toBe('false');
    await user.click(toggle);
    expect(toggle.getAttribute('aria-expanded')).toBe('true');
    const logged = screen.getByRole('list', { name: 'Lines logged by run 100' });
    expect(within(logged).getAllByRole('listitem').map((li) => li.textContent)).toEqual(['+0 msinfostarting', '+2 mserrorabout to throw']);
    expect(screen.getByText('3 more lines were dropped.')).toBeTruthy();

    await user.click(screen.getByRole('button', { name: 'Load older' }));
    await waitFor(() => expect(screen.getAllByTestId('run-row').length).toBe(26));
    expect(screen.getAllByTestId('run-row').at(-1)?.textContent).toContain('Trigger handler');
    expect(screen.queryByRole('button', { name: 'Load older' })).toBeNull();
    const runCalls = server.calls.filter((c) => c.path === `${BASE}/mint_token/runs`);
    expect(runCalls.map((c) => [c.query.get('limit'), c.query.get('before')])).toEqual([['25', null], ['25', '76']]);

    await user.click(screen.getByRole('button', { name: 'Refresh' }));
    await waitFor(() => expect(server.calls.filter((c) => c.path === `${BASE}/mint_token/runs`).length).toBe(3));
  });

  it('starts a new script from a template, refusing a bad name, and saves it', async () => {
    const user = userEvent.setup();
    const server = scriptsServer();
    render(Scripts, { props: { app: 'shop' } });
    await waitFor(() => expect(editor().value).toBe(SOURCE));
    await user.type(screen.getByLabelText('Script name'), 'hel lo');
    await user.click(screen.getByRole('button', { name: 'New script' }));
    expect(screen.getByTestId('script-name-problem').textContent).toContain('not spaces');
    await user.clear(screen.getByLabelText('Script name'));
    await user.type(screen.getByLabelText('Script name'), 'hello');
    await user.click(screen.getByRole('button', { name: 'New script' }));
    await screen.findByRole('heading', { name: 'hello' });
    expect(editor().value).toContain('fn handle(req)');
    expect(screen.getByText('New, not saved yet', { exact: false })).toBeTruthy();
    expect((screen.getByRole('button', { name: 'History' }) as HTMLButtonElement).disabled).toBe(true);
    expect(screen.getByRole('button', { name: 'Copy URL' })).toBeTruthy();
    expect(screen.getByText('/v1/apps/shop/functions/hello', { exact: false })).toBeTruthy();
    // The server keeps no run log for a name never saved: none is asked for until the save.
    expect(screen.getByText('Not saved yet')).toBeTruthy();
    const runsOfHello = () => server.calls.filter((c) => c.path === `${BASE}/hello/runs`).length;
    expect(runsOfHello()).toBe(0);
    await user.click(screen.getByRole('button', { name: 'Save' }));
    await screen.findByText('Version 1 · saved', { exact: false });
    await screen.findByText('No runs yet');
    expect(runsOfHello()).toBe(1);
    expect(server.stored.get('hello')?.versions).toHaveLength(1);
    expect(within(screen.getByRole('navigation', { name: 'Scripts' })).getByRole('button', { name: /hello/ })).toBeTruthy();
  });

  it('asks before dropping unsaved changes for another script', async () => {
    const user = userEvent.setup();
    scriptsServer();
    render(Scripts, { props: { app: 'shop' } });
    await waitFor(() => expect(editor().value).toBe(SOURCE));
    await setSource('// changed\n');
    await user.type(screen.getByLabelText('Script name'), 'hello');
    await user.click(screen.getByRole('button', { name: 'New script' }));
    const dialog = await screen.findByRole('dialog', { name: 'Discard unsaved changes?' });
    await user.click(within(dialog).getByRole('button', { name: 'Cancel' }));
    expect(editor().value).toBe('// changed\n');
    await user.click(screen.getByRole('button', { name: 'New script' }));
    await user.click(within(await screen.findByRole('dialog', { name: 'Discard unsaved changes?' })).getByRole('button', { name: 'Discard changes' }));
    await screen.findByRole('heading', { name: 'hello' });
  });

  it('deletes a script only after its name is typed', async () => {
    const user = userEvent.setup();
    const server = scriptsServer();
    render(Scripts, { props: { app: 'shop' } });
    await waitFor(() => expect(editor().value).toBe(SOURCE));
    await user.click(screen.getByRole('button', { name: 'Delete script mint_token' }));
    const dialog = await screen.findByRole('dialog', { name: 'Delete script mint_token?' });
    const confirm = within(dialog).getByRole('button', { name: 'Delete script' }) as HTMLButtonElement;
    expect(confirm.disabled).toBe(true);
    await user.type(within(dialog).getByRole('textbox'), 'mint_token');
    await user.click(confirm);
    await screen.findByText('No scripts yet');
    expect(server.calls.some((c) => c.method === 'DELETE' && c.path === `${BASE}/mint_token`)).toBe(true);
    expect(screen.queryByLabelText('Source (Rhai)')).toBeNull();
  });
});
