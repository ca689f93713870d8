import { render, screen } from '@testing-library/svelte';
import { describe, expect, it } from 'vitest';
import LiveTail from '../../src/tabs/LiveTail.svelte';
import { fakeServer, topic } from './fake-server';

describe('LiveTail', () => {
  it('ticks the only topic, so Start watching works at once', async () => {
    fakeServer({ 'GET /v1/apps/shop/topics': () => ({ body: { topics: [topic('orders', false)] } }) });
    render(LiveTail, { props: { app: 'shop' } });
    expect(await screen.findByRole('checkbox', { name: /orders/ })).toHaveProperty('checked', true);
    expect(screen.getByRole('button', { name: 'Start watching' })).toHaveProperty('disabled', false);
  });

  it('ticks nothing among several topics, and says what to do', async () => {
    fakeServer({ 'GET /v1/apps/shop/topics': () => ({ body: { topics: [topic('orders', false), topic('news', true)] } }) });
    render(LiveTail, { props: { app: 'shop' } });
    expect(await screen.findByRole('checkbox', { name: /orders/ })).toHaveProperty('checked', false);
    const start = screen.getByRole('button', { name: 'Start watching' });
    expect(start).toHaveProperty('disabled', true);
    expect(document.getElementById(start.getAttribute('aria-describedby') ?? '')?.textContent).toContain('Tick at least one topic');
  });
});
