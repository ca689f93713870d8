/**
 * The dashboard end to end, in headless Chromium against the real `picloud` binary
 * (PICLOUD_BIN, else ../target/debug/picloud) on a fresh SQLite database: sign in, create
 * an app and a topic, flip it external through the confirmation, publish through the API
 * and watch the event arrive in Live tail, make a failing webhook trigger and see the
 * delivery fail and dead-letter, replay it; write a public script that mints subscriber
 * tokens (a compile error marked first), test-run it, call it from the page and subscribe
 * with its token; add an outbox source that cannot connect and see its error. Every page
 * is screenshotted into test-results/screenshots/, and any browser console error fails
 * the test.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

import { chromium, type BrowserContext, type ConsoleMessage, type Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const EMAIL = 'admin@example.com';
const PASSWORD = 'correct horse battery staple';
const SHOTS = resolve(import.meta.dirname, '../../test-results/screenshots');

const bin = process.env.PICLOUD_BIN ?? resolve(import.meta.dirname, '../../../target/debug/picloud');
let dataDir: string;
let profile: string;
let server: ChildProcess;
let output = '';
let base = '';
let context: BrowserContext;
let page: Page;
const consoleErrors: string[] = [];
/** 400s of a script save or test run the test provokes on purpose (a source that does
 * not compile): that many are not console errors. */
let expectedCompileErrors = 0;
/** Run after the last test: servers a test started. */
const cleanups: (() => Promise<void>)[] = [];

/** Polls `check` until it returns a value (not undefined/false) or the time is up. */
async function waitFor<T>(what: string, check: () => Promise<T | undefined | false> | T | undefined | false, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Waits until no panel of the page is loading: a check made right after a click that
 * reloads a list would otherwise see the loading indicator instead of the list. */
async function loaded(): Promise<void> {
  await page.locator('[aria-busy="true"]').first().waitFor({ state: 'detached' });
}

/** A webhook receiver answering every delivery with `status` at once, counting the hits.
 * (A closed port is not a reliable failure: where connects to it hang rather than being
 * refused, each attempt waits out the webhook timeout.) */
async function receiver(status: number): Promise<{ server: Server; url: string; hits: () => number }> {
  let hits = 0;
  const receiving = createServer((request, response) => {
    hits += 1;
    request.resume();
    response.writeHead(status, { 'content-type': 'text/plain' }).end(status < 300 ? 'ok' : 'unavailable on purpose');
  });
  await new Promise<void>((resolveListen, reject) => {
    receiving.once('error', reject);
    receiving.listen(0, '127.0.0.1', () => resolveListen());
  });
  cleanups.push(() => new Promise((done) => {
    receiving.closeAllConnections();
    receiving.close(() => done());
  }));
  const address = receiving.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return { server: receiving, url: `http://127.0.0.1:${String(port)}/hook`, hits: () => hits };
}

/** The computed text colour of an element. */
async function colour(locator: ReturnType<Page['locator']>): Promise<string> {
  return locator.evaluate((el) => getComputedStyle(el).color);
}

/** Whether an element lies wholly within the viewport's width: seen without scrolling
 * anything sideways (scrolling down the page is fine). */
async function inViewport(locator: ReturnType<Page['locator']>): Promise<boolean> {
  const box = await locator.boundingBox();
  const size = page.viewportSize();
  return !!box && !!size && box.x >= 0 && box.x + box.width <= size.width;
}

const DANGER = 'rgb(185, 28, 28)';

async function shot(name: string): Promise<void> {
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

/** A console error is a failure, except the 401s of /v1/admin/session that the app asks
 * for on purpose (the session probe before sign-in and the deliberately wrong password),
 * and the script 400s a test announces in `expectedCompileErrors`. */
function onConsole(message: ConsoleMessage): void {
  if (message.type() !== 'error') return;
  const url = message.location().url;
  if (/status of 401/.test(message.text()) && new URL(url, base).pathname === '/v1/admin/session') return;
  if (/status of 400/.test(message.text()) && /^\/v1\/apps\/[^/]+\/scripts\/[^/]+(\/test)?$/.test(new URL(url, base).pathname) && expectedCompileErrors > 0) {
    expectedCompileErrors -= 1;
    return;
  }
  consoleErrors.push(`${message.text()} (${url})`);
}

async function api(method: string, path: string, key: string, body?: unknown): Promise<{ status: number; json: unknown }> {
  const response = await fetch(`${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? null : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, json: text ? JSON.parse(text) : null };
}

beforeAll(async () => {
  if (!existsSync(bin)) throw new Error(`picloud binary not found at ${bin}: cargo build -p picloud, or set PICLOUD_BIN`);
  mkdirSync(SHOTS, { recursive: true });
  dataDir = mkdtempSync(join(tmpdir(), 'picloud-dashboard-'));
  const env = {
    ...process.env,
    PICLOUD_DATA_DIR: dataDir,
    PICLOUD_DATABASE_URL: `sqlite://${join(dataDir, 'picloud.db')}`,
  };
  // `admins create` never creates a database: make it first, as an operator would.
  const migrated = spawnSync(bin, ['migrate'], { env, encoding: 'utf8' });
  if (migrated.status !== 0) throw new Error(`migrate failed: ${migrated.stdout}${migrated.stderr}`);
  const created = spawnSync(bin, ['admins', 'create', '--email', EMAIL, '--password-stdin'], {
    env,
    input: `${PASSWORD}\n`,
    encoding: 'utf8',
  });
  if (created.status !== 0) throw new Error(`admins create failed: ${created.stdout}${created.stderr}`);

  server = spawn(bin, ['serve'], {
    env: {
      ...env,
      PICLOUD_BIND: '127.0.0.1:0',
      PICLOUD_WEBHOOK_ALLOW_PRIVATE: 'true',
      PICLOUD_SOURCE_ALLOW_PRIVATE: 'true', // the source test's database URL is on loopback
      // Real delays: retries wait their 1 s, and an open circuit stays open for its 30 s
      // cool-down, long enough to be looked at.
      PICLOUD_DISPATCH_BACKOFF_SCALE: '1',
      PICLOUD_STATS_INTERVAL_SEC: '1',
      PICLOUD_SHUTDOWN_GRACE_SEC: '1',
      NO_COLOR: '1',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  server.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  server.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const addr = await waitFor('picloud to listen', () => /listening addr=(127\.0\.0\.1:\d+)/.exec(output)?.[1]);
  base = `http://${addr}`;

  profile = mkdtempSync(join(tmpdir(), 'picloud-dashboard-chromium-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM_BIN ?? '/usr/bin/chromium',
    args: CHROMIUM_ARGS,
    viewport: { width: 1280, height: 900 },
  });
  page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(20_000);
  page.on('console', onConsole);
  page.on('pageerror', (error) => consoleErrors.push(`page error: ${error.message}`));
});

afterAll(async () => {
  for (const cleanup of cleanups) await cleanup();
  await context?.close();
  server?.kill('SIGTERM');
  if (profile) rmSync(profile, { recursive: true, force: true });
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

afterEach(async (context) => {
  if (context.task.result?.state === 'fail' && page) {
    await shot(`failed-${context.task.name.replace(/\W+/g, '-')}`);
    // What the server said is the first thing to read when a step times out.
    console.error(`picloud output (last 60 lines):\n${output.split('\n').slice(-60).join('\n')}`);
  }
});

describe('the dashboard in Chromium', () => {
  let key = '';
  const tab = (name: string) => page.getByRole('navigation', { name: 'App sections' }).getByRole('link', { name, exact: true });

  it('signs in, refusing a wrong password first', async () => {
    await page.goto(`${base}/_/`);
    await page.getByLabel('Email').waitFor();
    await shot('01-sign-in');
    await page.getByLabel('Email').fill(EMAIL);
    await page.getByLabel('Password').fill('not the password');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expect(page.getByRole('alert').textContent()).resolves.toContain('Wrong email or password');
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Apps', exact: true }).waitFor();
    await page.getByText('No apps yet').waitFor();
    await shot('02-apps-empty');
    // The session is an HttpOnly cookie: scripts cannot read it, and nothing is in storage.
    expect(await page.evaluate(() => document.cookie)).toBe('');
    expect(await page.evaluate(() => Object.keys(localStorage).length + Object.keys(sessionStorage).length)).toBe(0);
  });

  it('creates an app and a topic, and flips the topic external through the confirmation', async () => {
    // A bad id is refused with the rule, not the browser's generic "match the format".
    await page.getByLabel('App id').fill('Shop');
    await page.getByRole('button', { name: 'Create app' }).click();
    expect(await page.getByTestId('app-id-problem').textContent()).toContain('use lower case: s');
    expect(await page.getByLabel('App id').evaluate((el) => (el as HTMLInputElement).validationMessage)).toContain('use lower case: s');
    await shot('02b-apps-bad-id');
    await page.getByLabel('App id').fill('shop');
    await page.getByLabel('Display name').fill('My Shop');
    await page.getByRole('button', { name: 'Create app' }).click();
    await page.getByRole('heading', { name: /My Shop/ }).waitFor();
    await page.getByText('No topics yet').waitFor();

    await page.getByLabel('Topic name').fill('orders');
    await page.getByRole('button', { name: 'Create topic' }).click();
    const row = page.getByRole('row', { name: /orders/ });
    await row.getByText('Internal').waitFor();

    // Keyboard: open the dialog with Enter, close it with Escape, focus comes back.
    const flip = row.getByRole('button', { name: 'Make external: orders' });
    await flip.focus();
    await page.keyboard.press('Enter');
    const dialog = page.getByRole('dialog', { name: 'Make orders external?' });
    await dialog.waitFor();
    await page.keyboard.press('Escape');
    await dialog.waitFor({ state: 'hidden' });
    expect(await flip.evaluate((el) => el === document.activeElement)).toBe(true);

    await flip.click();
    await dialog.waitFor();
    expect(await dialog.textContent()).toContain('Any browser holding a subscriber token');
    await shot('03-topics-flip-dialog');
    await dialog.getByRole('button', { name: 'Make external' }).click();
    await row.getByText('External').waitFor();
    await shot('04-topics');
  });

  it('creates an app key whose secret is shown once', async () => {
    await tab('Keys').click();
    await page.getByLabel('Key name').fill('backend');
    await page.getByRole('checkbox', { name: /app:admin/ }).check();
    await page.getByRole('button', { name: 'Create key' }).click();
    const secret = page.getByTestId('key-secret');
    key = (await secret.textContent()) ?? '';
    expect(key).toMatch(/^pk_/);
    await shot('05-keys-secret');
    await page.getByRole('button', { name: 'I have copied it' }).click();
    await page.getByRole('cell', { name: 'backend', exact: true }).waitFor();
    expect(await page.content()).not.toContain(key);
    await shot('06-keys');
  });

  it('shows events published through the API in Live tail, and holds them while paused', async () => {
    await tab('Live tail').click();
    // The app's only topic is ticked already: Start watching works at once.
    await page.getByRole('checkbox', { name: /orders/ }).waitFor();
    expect(await page.getByRole('checkbox', { name: /orders/ }).isChecked()).toBe(true);
    expect(await page.getByRole('button', { name: 'Start watching' }).isEnabled()).toBe(true);
    await page.getByRole('button', { name: 'Start watching' }).click();
    await page.getByRole('status').filter({ hasText: 'Live' }).waitFor();

    const published = await api('POST', '/v1/apps/shop/topics/orders/events', key, { type: 'order.created', data: { id: 42 } });
    expect(published.status).toBe(201);
    const events = page.getByRole('list', { name: 'Events' });
    await events.getByText('order.created').waitFor();
    expect(await events.textContent()).toContain('"id": 42');

    await page.getByRole('button', { name: 'Pause' }).click();
    await api('POST', '/v1/apps/shop/topics/orders/events', key, { type: 'order.paid', data: { id: 43 } });
    await page.getByRole('button', { name: 'Resume (1 waiting)' }).waitFor();
    expect(await events.textContent()).not.toContain('order.paid');
    await page.getByRole('button', { name: 'Resume (1 waiting)' }).click();
    await events.getByText('order.paid').waitFor();

    await page.getByLabel('Event type').fill('dashboard.test');
    await page.getByRole('button', { name: 'Publish', exact: true }).click();
    await events.getByText('dashboard.test').waitFor();
    await shot('07-live-tail');
  });

  it('makes a failing webhook trigger, sees the delivery fail and dead-letter, and replays it', async () => {
    const failing = await receiver(503);
    await tab('Triggers').click();
    await page.getByText('No triggers yet').waitFor();
    await page.getByLabel('Topic pattern').fill('orders');
    await page.getByLabel('Webhook URL').fill(failing.url);
    await page.getByLabel('Max attempts').fill('2');
    await page.getByLabel('Retry delays (s)').fill('1');
    await page.getByRole('button', { name: 'Create trigger' }).click();
    expect(await page.getByTestId('trigger-secret').textContent()).toMatch(/^whsec_/);
    await page.getByRole('button', { name: 'Done' }).click();

    expect((await api('POST', '/v1/apps/shop/topics/orders/events', key, { type: 'order.shipped', data: { id: 44 } })).status).toBe(201);

    // The last error shows on the trigger once the first attempt has failed.
    await waitFor('the trigger to show its last error', async () => {
      await tab('Deliveries').click();
      await tab('Triggers').click();
      await loaded();
      return (await page.locator('.trigger div', { hasText: 'Last error' }).locator('dd.bad-text').count()) > 0;
    });
    expect(await page.getByRole('listitem', { name: /^Trigger orders/ }).textContent()).toContain('2 attempts: retried after 1 s');
    await shot('08-triggers');

    await tab('Deliveries').click();
    await page.getByLabel('State').selectOption('dead');
    await waitFor('a dead delivery', async () => {
      await page.getByRole('button', { name: 'Refresh' }).click();
      await loaded();
      return (await page.getByRole('button', { name: /^Delivery \d+: show attempts$/ }).count()) > 0;
    });
    await page.getByRole('button', { name: /^Delivery \d+: show attempts$/ }).first().click();
    const timeline = page.getByRole('dialog');
    await timeline.getByText('Attempt 2').waitFor();
    expect(await timeline.textContent()).toContain('Attempt 1');
    expect(await timeline.textContent()).toContain('HTTP 503');
    expect(failing.hits()).toBe(2);
    await shot('09-delivery-attempts');
    await timeline.getByRole('button', { name: 'Close', exact: true }).click();
    await shot('10-deliveries');

    await tab('Dead letters').click();
    const inspect = page.getByRole('button', { name: /^Dead letter \d+: inspect$/ }).first();
    await inspect.click();
    const letter = page.getByRole('dialog');
    expect(await letter.getByTestId('dead-letter-payload').textContent()).toContain('"id": 44');
    expect(await letter.textContent()).toContain(`orders → ${failing.url}`);
    expect(await letter.textContent()).not.toContain('trg_');
    await shot('11-dead-letter');
    await letter.getByRole('button', { name: 'Replay' }).click();
    await letter.waitFor({ state: 'hidden' });
    await page.getByRole('status').filter({ hasText: /replayed/ }).waitFor();
    // Replayed: the dead letter says when, and the trigger got a fresh delivery to try.
    const replayed = page.getByRole('row').filter({ hasText: 'orders #4' }).first().getByRole('cell').last();
    await waitFor('the replayed mark', async () => /\d{4}-\d\d-\d\d/.test((await replayed.textContent()) ?? ''));
    const deliveries = (await api('GET', '/v1/apps/shop/deliveries', key)).json as { deliveries: { seq: number }[] };
    expect(deliveries.deliveries.filter((d) => d.seq === 4).length).toBe(2);
    await shot('12-dead-letters');
  });

  it('shows no error on a successful delivery, and a failure\'s status once, in red', async () => {
    const ok = await receiver(200);
    const created = await api('POST', '/v1/apps/shop/triggers', key, {
      source: { kind: 'topic', topic: 'receipts' },
      handler: { kind: 'webhook', url: ok.url },
    });
    expect(created.status).toBe(201);
    expect((await api('POST', '/v1/apps/shop/topics/receipts/events', key, { type: 'receipt.sent', data: {} })).status).toBe(201);
    await waitFor('the delivery to succeed', () => ok.hits() > 0);

    await tab('Deliveries').click();
    await page.getByLabel('State').selectOption('');
    await waitFor('the delivered row', async () => {
      await page.getByRole('button', { name: 'Refresh' }).click();
      await loaded();
      return (await page.getByRole('row').filter({ hasText: 'receipts #' }).filter({ hasText: 'delivered' }).count()) > 0;
    });
    const success = page.getByRole('row').filter({ hasText: 'receipts #' }).first().getByRole('cell').nth(5);
    expect((await success.textContent())?.trim()).toBe('');
    expect(await success.evaluate((el) => el.classList.contains('bad-text'))).toBe(false);
    const failure = page.getByRole('row').filter({ hasText: 'orders #' }).filter({ hasText: 'dead' }).first().getByRole('cell').nth(5);
    expect((await failure.textContent())?.trim()).toBe('HTTP 503 Service Unavailable');
    expect(await colour(failure)).toBe(DANGER);
    await shot('12b-deliveries-success-and-failure');

    await tab('Dead letters').click();
    // A row of the dead-letter table (the deliveries table may still be on the page).
    const inspectable = page.getByRole('button', { name: /^Dead letter \d+: inspect$/ });
    const dead = page.getByRole('row').filter({ hasText: 'orders #4' }).filter({ has: inspectable }).first().getByRole('cell').nth(4);
    expect((await dead.textContent())?.trim()).toBe('HTTP 503 Service Unavailable');
    expect(await colour(dead)).toBe(DANGER);
  });

  it('explains an open circuit and shows its last error while newer deliveries wait', async () => {
    const failing = await receiver(503);
    const created = await api('POST', '/v1/apps/shop/triggers', key, {
      source: { kind: 'topic', topic: 'alerts' },
      handler: { kind: 'webhook', url: failing.url },
      retry: { max_attempts: 1 },
    });
    expect(created.status).toBe(201);
    const id = (created.json as { id: string }).id;
    // Five failures in a row open the circuit (for a 30 s cool-down).
    const events = Array.from({ length: 5 }, (_, n) => ({ topic: 'alerts', type: 'alert.raised', data: { n } }));
    expect((await api('POST', '/v1/apps/shop/events', key, { events })).status).toBe(201);
    await waitFor('the circuit to open', async () => {
      const trigger = (await api('GET', `/v1/apps/shop/triggers/${id}`, key)).json as { circuit_state: string };
      return trigger.circuit_state === 'open';
    });
    // A newer event waits untried behind the open circuit: the newest delivery has no error.
    expect((await api('POST', '/v1/apps/shop/topics/alerts/events', key, { type: 'alert.raised', data: { n: 5 } })).status).toBe(201);
    const newest = (await api('GET', `/v1/apps/shop/deliveries?trigger=${id}&limit=1`, key)).json as { deliveries: { attempts: number }[] };
    expect(newest.deliveries[0]?.attempts).toBe(0);

    await tab('Triggers').click();
    const card = page.getByRole('listitem', { name: `Trigger alerts → ${failing.url}` });
    await card.getByText('Circuit: Open').waitFor();
    const lastError = card.getByTestId('trigger-last-error');
    await waitFor('the last error', async () => (await lastError.textContent()) === 'HTTP 503 Service Unavailable');
    expect(await colour(lastError)).toBe(DANGER);
    expect(await card.getByTestId('circuit-note').textContent()).toMatch(/paused.*tried at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d/);
    expect(await card.textContent()).toContain('1 attempt, no retries');
    await card.getByRole('button', { name: `Disable: alerts → ${failing.url}` }).waitFor();
    await shot('12c-triggers-open-circuit');
  });

  it('writes a public function that mints a token, test-runs it, and subscribes with the token it mints', async () => {
    // A topic of its own, external so browsers holding a token may subscribe to it.
    expect((await api('POST', '/v1/apps/shop/topics', key, { name: 'chat' })).status).toBe(201);
    expect((await api('PATCH', '/v1/apps/shop/topics/chat/external', key, { external_subscribable: true })).status).toBe(200);

    await tab('Scripts').click();
    await page.getByText('No scripts yet').waitFor();
    await page.getByLabel('Script name').fill('mint_token');
    await page.getByRole('button', { name: 'New script' }).click();
    await page.getByRole('heading', { name: 'mint_token' }).waitFor();
    const source = page.getByLabel('Source (Rhai)');
    expect(await source.inputValue()).toContain('fn handle(req)');

    // A missing comma on line 2: not saved, and the editor marks the line.
    await source.fill('fn handle(req) {\n    let token = pubsub::subscriber_token(["chat"] 600);\n    #{ token: token }\n}\n');
    await page.getByLabel('Who may call it').selectOption('public');
    expectedCompileErrors += 1;
    await page.getByRole('button', { name: 'Save', exact: true }).click();
    const problem = page.getByTestId('source-error');
    await problem.waitFor();
    expect(await problem.textContent()).toMatch(/Not saved: the script does not compile — Line 2, column \d+:/);
    expect(await page.locator('.code-gutter .error').textContent()).toBe('2');
    expect(await page.locator('.code-highlight .code-line').nth(1).evaluate((el) => el.classList.contains('error-line'))).toBe(true);
    expect(await source.getAttribute('aria-invalid')).toBe('true');
    expect(expectedCompileErrors).toBe(0);
    await shot('16-scripts-compile-error');

    // Highlighted as Rhai: the keywords, the module path, the string.
    const highlight = page.getByTestId('code-highlight');
    expect(await highlight.locator('.tok-keyword').allTextContents()).toEqual(['fn', 'let']);
    expect(await highlight.locator('.tok-module').allTextContents()).toEqual(['pubsub']);
    expect(await highlight.locator('.tok-string').allTextContents()).toEqual(['"chat"']);

    await source.fill('fn handle(req) {\n    log::info("minting");\n    #{ token: pubsub::subscriber_token(["chat"], 600) }\n}\n');
    expect(await problem.count()).toBe(0);
    await page.getByRole('button', { name: 'Save', exact: true }).click();
    await page.getByText('Version 1 · saved').waitFor();
    await page.getByRole('navigation', { name: 'Scripts' }).getByText('v1 · public').waitFor();

    // A test run shows the token the function answers, and what it logged.
    await page.getByLabel('Run as').selectOption('function');
    await page.getByRole('button', { name: 'Run test' }).click();
    const result = page.getByTestId('test-result');
    await result.waitFor();
    expect(await result.getByTestId('test-outcome').textContent()).toBe('ok');
    expect(await result.getByTestId('test-value').textContent()).toMatch(/"token": "eyJ[\w-]+\.[\w-]+\.[\w-]+"/);
    expect(await result.getByRole('list', { name: 'Logged lines' }).textContent()).toContain('minting');

    // The page calls the public function with no credentials at all, then subscribes
    // with the token it minted (no cookie either: the token alone lets it in).
    const minted = await page.evaluate(async () => {
      const response = await fetch('/v1/apps/shop/functions/mint_token', { method: 'POST', credentials: 'omit' });
      return { status: response.status, body: (await response.json()) as { token?: string } };
    });
    expect(minted.status).toBe(200);
    expect(minted.body.token).toMatch(/^eyJ/);
    await page.evaluate(async (token) => {
      const w = window as unknown as { frames_: string[]; stream_: AbortController; status_: number; failure_: string };
      w.frames_ = [];
      w.stream_ = new AbortController();
      const response = await fetch('/v1/apps/shop/realtime?topic=chat', {
        headers: { authorization: `Bearer ${token}`, accept: 'text/event-stream' },
        credentials: 'omit',
        signal: w.stream_.signal,
      });
      w.status_ = response.status;
      const reader = (response.body as ReadableStream<Uint8Array>).getReader();
      const decoder = new TextDecoder();
      let buffer = '';
      void (async () => {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) return;
          buffer += decoder.decode(value, { stream: true });
          for (let end = buffer.indexOf('\n\n'); end !== -1; end = buffer.indexOf('\n\n')) {
            w.frames_.push(buffer.slice(0, end));
            buffer = buffer.slice(end + 2);
          }
        }
      })().catch((error: unknown) => {
        if (!(error instanceof DOMException && error.name === 'AbortError')) w.failure_ = String(error);
      });
    }, minted.body.token as string);
    const frames = () => page.evaluate(() => (window as unknown as { frames_: string[] }).frames_);
    expect(await page.evaluate(() => (window as unknown as { status_: number }).status_)).toBe(200);
    await waitFor('the hello frame', async () => (await frames()).some((f) => f.includes('event: hello')));
    expect((await api('POST', '/v1/apps/shop/topics/chat/events', key, { type: 'chat.message', data: { text: 'minted by a script' } })).status).toBe(201);
    const received = await waitFor('the event on the stream', async () => (await frames()).find((f) => f.includes('event: chat.message')));
    expect(received).toContain('"text":"minted by a script"');
    await page.evaluate(() => (window as unknown as { stream_: AbortController }).stream_.abort());
    expect(await page.evaluate(() => (window as unknown as { failure_?: string }).failure_)).toBeUndefined();

    // The run log has the test run and the call.
    await waitFor('the call in the run log', async () => {
      await page.getByRole('button', { name: 'Refresh' }).click();
      await loaded();
      return (await page.getByTestId('run-row').filter({ hasText: 'Function call' }).count()) > 0;
    });
    const call = page.getByTestId('run-row').filter({ hasText: 'Function call' }).first();
    expect(await call.textContent()).toContain('v1');
    expect(await call.locator('.badge').textContent()).toBe('ok');
    const test = page.getByTestId('run-row').filter({ hasText: 'Test run' }).first();
    await test.getByRole('button', { name: '1 line' }).click();
    await page.getByRole('list', { name: /^Lines logged by run/ }).getByText('minting').waitFor();

    // The caret stays in view, not under the line numbers: the editor scrolls sideways to
    // it and back to the start of the line.
    const good = await source.inputValue();
    await source.fill(`// ${'wide '.repeat(100)}\n${Array.from({ length: 30 }, (_, i) => `let v${String(i)} = ${String(i)};`).join('\n')}`);
    const editorBox = page.locator('.code-editor').first();
    await source.press('Control+Home');
    await source.press('End');
    await waitFor('the editor scrolled to the end of the long line', async () => (await editorBox.evaluate((el) => el.scrollLeft)) > 1000);
    await source.press('Control+End');
    await waitFor('the editor scrolled back to the caret', async () => {
      const at = await editorBox.evaluate((el) => ({ left: el.scrollLeft, top: el.scrollTop, bottom: el.scrollHeight - el.clientHeight }));
      return at.left === 0 && at.top > 0 && at.bottom - at.top < 60;
    });
    await source.fill(good);
    expect(await page.getByTestId('unsaved').count()).toBe(0);

    // Its one version is in the history.
    await page.getByRole('button', { name: 'History' }).click();
    const history = page.getByRole('dialog', { name: 'Versions of mint_token' });
    await history.getByText('Version 1').waitFor();
    await history.getByRole('button', { name: 'Close', exact: true }).click();
    await shot('17-scripts');
  });

  it('adds an outbox source, shows it without its password and with its relay\'s error, and deletes it', async () => {
    await tab('Sources').click();
    await page.getByText('No sources yet').waitFor();
    // Nothing listens on port 1 of the loopback: the relay fails to connect and says so.
    await page.getByLabel('Database URL').fill('postgres://relay:pw@127.0.0.1:1/app');
    await page.getByRole('button', { name: 'Add source' }).click();
    const card = page.getByRole('listitem', { name: /^Source src_/ });
    expect(await card.getByTestId('source-url').textContent()).toBe('postgres://relay@127.0.0.1:1/app');
    expect(await page.getByLabel('Database URL').inputValue()).toBe('');
    // The tab refreshes by itself: no clicking needed for the error to show.
    await waitFor('the relay\'s error', async () => (await card.getByTestId('source-health').textContent()) === 'Not connected', 30_000);
    expect((await card.getByTestId('source-last-error').textContent())?.trim()).not.toBe('—');
    expect(await page.content()).not.toContain(':pw@');
    await shot('18-sources');
    await card.getByRole('button', { name: /^Delete source src_/ }).click();
    await page.getByRole('dialog', { name: 'Delete this source?' }).getByRole('button', { name: 'Delete source' }).click();
    await page.getByText('No sources yet').waitFor();
  });

  it('charts the last hour on the Overview', async () => {
    await tab('Overview').click();
    await waitFor('the charts', async () => (await page.locator('.chart canvas').count()) >= 5, 30_000);
    await waitFor('the published count', async () => Number((await page.locator('.stats div', { hasText: 'Published' }).locator('dd').textContent()) ?? 0) >= 4, 30_000);
    // Not hovering: every legend shows the newest sample, not "--".
    await page.mouse.move(0, 0);
    const legends = await page.locator('.chart .u-legend').allTextContents();
    expect(legends.length).toBeGreaterThanOrEqual(5);
    for (const legend of legends) expect(legend).not.toContain('--');

    // Keyboard: the focus ring of a tab link is drawn wholly inside the tab bar, which
    // clips whatever sticks out of it (it scrolls sideways).
    await tab('Overview').focus();
    await page.keyboard.press('Tab');
    const ring = await page.evaluate(() => {
      const link = document.activeElement as HTMLElement;
      const bar = link.closest('nav') as HTMLElement;
      const style = getComputedStyle(link);
      const reach = parseFloat(style.outlineWidth) + parseFloat(style.outlineOffset);
      const a = link.getBoundingClientRect();
      const b = bar.getBoundingClientRect();
      return { label: link.textContent, style: style.outlineStyle, inside: a.top - reach >= b.top && a.bottom + reach <= b.bottom };
    });
    expect(ring).toEqual({ label: 'Topics', style: 'solid', inside: true });
    await shot('13-overview');
  });

  it('works at phone width', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    for (const name of ['Topics', 'Live tail', 'Sources', 'Dead letters']) {
      await tab(name).click();
      await page.getByRole('heading', { name, exact: true }).waitFor({ state: 'attached' });
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
      expect(overflow, `${name} scrolls sideways at phone width`).toBeLessThanOrEqual(1);
    }
    // The current tab is scrolled into the tab bar's view, even the last one.
    const nav = page.getByRole('navigation', { name: 'App sections' });
    for (const name of ['Keys', 'Dead letters', 'Overview']) {
      await tab(name).click();
      await waitFor(`the ${name} tab in view`, () => inViewport(tab(name)));
    }
    expect(await nav.evaluate((el) => el.scrollWidth > el.clientWidth)).toBe(true);
    await tab('Keys').click();
    await waitFor('the Keys tab in view', () => inViewport(tab('Keys')));
    await shot('14a-phone-keys');
    // Row actions stay on screen although the table is wider than it.
    await page.getByRole('button', { name: 'Revoke key backend' }).waitFor();
    expect(await inViewport(page.getByRole('button', { name: 'Revoke key backend' }))).toBe(true);
    // The script editor and its run log fit too (long lines scroll inside the editor).
    await tab('Scripts').click();
    await page.getByLabel('Source (Rhai)').waitFor();
    await loaded();
    expect(await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth), 'Scripts scrolls sideways at phone width').toBeLessThanOrEqual(1);
    await shot('14b-phone-scripts');
    await tab('Topics').click();
    await page.getByRole('row', { name: /orders/ }).waitFor();
    expect(await page.locator('.table-wrap').first().evaluate((el) => el.scrollWidth > el.clientWidth)).toBe(true);
    expect(await inViewport(page.getByRole('button', { name: 'Make internal: orders' }))).toBe(true);
    expect(await inViewport(page.getByRole('button', { name: 'Delete topic orders' }))).toBe(true);
    await shot('14-phone-topics');
    await page.goto(`${base}/_/#/apps`);
    await page.getByRole('link', { name: 'shop' }).waitFor();
    expect(await inViewport(page.getByRole('button', { name: 'Delete app shop' }))).toBe(true);
    await shot('15-phone-apps');
    await page.setViewportSize({ width: 1280, height: 900 });
  });

  it('signs out', async () => {
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByLabel('Email').waitFor();
    const after = await fetch(`${base}/v1/admin/session`);
    expect(after.status).toBe(401);
  });

  it('logged no console errors', () => {
    expect(consoleErrors).toEqual([]);
  });
});
