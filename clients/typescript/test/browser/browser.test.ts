/**
 * Headless Chromium loads a page that uses the built bundle (dist/index.js), subscribes
 * to a real picloud server from another origin (CORS) and shows what the test publishes.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { PicloudClient } from '../../src/index.js';
import { AppOrigin } from '../support/app-origin.js';
import { externalTopic, PicloudServer } from '../support/picloud-server.js';
import { waitFor } from '../support/wait.js';

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

let origin: AppOrigin;
let server: PicloudServer;
let backend: PicloudClient;
let profile: string;
let context: BrowserContext;

beforeAll(async () => {
  if (!existsSync(resolve(import.meta.dirname, '../../dist/index.js'))) {
    throw new Error('dist/index.js is missing: run `npm run build` first');
  }
  origin = await AppOrigin.start();
  server = await PicloudServer.start({ PICLOUD_CORS_ORIGINS: origin.url });
  backend = await server.createApp('shop');
  origin.backend = backend;
  profile = mkdtempSync(join(tmpdir(), 'picloud-chromium-'));
  // A fresh profile every run (Playwright passes it as --user-data-dir).
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM_BIN ?? '/usr/bin/chromium',
    args: CHROMIUM_ARGS,
  });
});

afterAll(async () => {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
  await server.dispose();
  await origin.close();
});

async function open(topic: string, share = false): Promise<Page> {
  const page = await context.newPage();
  const query = new URLSearchParams({ server: server.url, app: 'shop', topic, share: share ? '1' : '0' });
  await page.goto(`${origin.url}/?${query.toString()}`);
  await page.locator('#status', { hasText: 'open' }).waitFor();
  return page;
}

const received = (page: Page): Promise<number[]> => page.evaluate(() => (window as unknown as { received: number[] }).received);

async function publish(topic: string, seqs: number[]): Promise<void> {
  for (const n of seqs) await backend.publish(topic, { n }, { type: 'demo' });
}

describe('in Chromium', () => {
  it('subscribes with the built bundle and shows events published from Node', async () => {
    await externalTopic(backend, 'browser.demo');
    const page = await open('browser.demo');
    await publish('browser.demo', [1, 2, 3]);
    await page.locator('#events li').nth(2).waitFor();
    expect(await page.locator('#events li').allTextContents()).toEqual([
      '#1 demo {"n":1}',
      '#2 demo {"n":2}',
      '#3 demo {"n":3}',
    ]);
    await page.close();
  });

  it('shares one connection among ten tabs and hands over to a new leader without loss', async () => {
    const topic = 'browser.shared';
    await externalTopic(backend, topic);
    const streams: { page: Page; lastEventId: string | undefined }[] = [];
    const onRequest = (request: import('playwright-core').Request): void => {
      if (request.url().includes('/realtime') && request.method() === 'GET') {
        streams.push({ page: request.frame().page(), lastEventId: request.headers()['last-event-id'] });
      }
    };
    context.on('request', onRequest);
    try {
      // More tabs than the browser's six connections per origin.
      const pages: Page[] = [];
      for (let i = 0; i < 10; i++) pages.push(await open(topic, true));
      await publish(topic, [1, 2, 3]);
      for (const page of pages) await waitFor('three events in every tab', async () => (await received(page)).length === 3);
      expect(streams).toHaveLength(1);

      const leader = streams[0]!.page;
      await leader.close();
      const followers = pages.filter((p) => p !== leader);
      await publish(topic, [4]); // during the hand-over
      await waitFor('a new leader connects', () => streams.length === 2);
      expect(followers).toContain(streams[1]!.page);
      expect(streams[1]!.lastEventId).toBe(`${topic}:3`);

      await publish(topic, [5]);
      for (const page of followers) {
        await waitFor('five events', async () => (await received(page)).length >= 5);
        expect(await received(page)).toEqual([1, 2, 3, 4, 5]);
      }
      for (const page of followers) await page.close();
    } finally {
      context.off('request', onRequest);
    }
  });
});
