import { describe, expect, it } from 'vitest';
import { appIdProblem } from '../../src/lib/app-id';
import { deliveryError, duration, elapsed, jsonText, optionalNumber, retention } from '../../src/lib/format';
import { relayHealth } from '../../src/lib/sources';
import { circuitMeaning, retrySchedule, triggerLabel } from '../../src/lib/triggers';
import { href, parseHash } from '../../src/lib/router.svelte';

describe('formatting', () => {
  it('says retention in words', () => {
    expect(retention({ max_events: 100000, max_age_secs: 604800 })).toBe('100,000 events · 7 d');
    expect(retention({ max_events: null, max_age_secs: 5400 })).toBe('90 min');
    expect(retention({})).toBe('unlimited');
    expect(duration(45)).toBe('45 s');
  });

  it('says how long something has waited, to its two largest units', () => {
    expect(elapsed(850)).toBe('850 ms');
    expect(elapsed(12_400)).toBe('12 s');
    expect(elapsed(60_000)).toBe('1 min');
    expect(elapsed(185_000)).toBe('3 min 5 s');
    expect(elapsed((2 * 3600 + 10 * 60 + 7) * 1000)).toBe('2 h 10 min');
    expect(elapsed((3 * 86_400 + 4 * 3600) * 1000)).toBe('3 d 4 h');
  });

  it('pretty-prints JSON text, and leaves other text as it is', () => {
    expect(jsonText('{"topic":"orders","data":{"id":1}}')).toBe('{\n  "topic": "orders",\n  "data": {\n    "id": 1\n  }\n}');
    expect(jsonText('not json')).toBe('not json');
  });

  it('reads optional number fields', () => {
    expect(optionalNumber('')).toBeUndefined();
    expect(optionalNumber(null)).toBeUndefined();
    expect(optionalNumber(3)).toBe(3);
    expect(optionalNumber('12')).toBe(12);
  });
});

describe('deliveries and triggers in words', () => {
  it('shows no error for a success, and a failure\'s status once with its reason', () => {
    expect(deliveryError(200, null)).toBe('');
    expect(deliveryError(null, null)).toBe('');
    expect(deliveryError(500, 'HTTP 500 Internal Server Error')).toBe('HTTP 500 Internal Server Error');
    expect(deliveryError(500, 'http_status')).toBe('HTTP 500');
    expect(deliveryError(null, 'connection failed: refused')).toBe('connection failed: refused');
    expect(deliveryError(502, 'timed out reading the body')).toBe('HTTP 502: timed out reading the body');
  });

  it('spells out the retry schedule and the circuit', () => {
    expect(retrySchedule({ max_attempts: 2, schedule_secs: [1] })).toBe('2 attempts: retried after 1 s');
    expect(retrySchedule({ max_attempts: 1, schedule_secs: [] })).toBe('1 attempt, no retries');
    expect(retrySchedule({ max_attempts: 4, schedule_secs: [5, 300, 1800] })).toBe('4 attempts: retried after 5 s, 5 min, 30 min');
    expect(circuitMeaning('open', new Date(2026, 0, 2, 3, 4, 5).getTime())).toContain('tried at 2026-01-02 03:04:05');
    expect(circuitMeaning('open', null)).toContain('after a cool-down');
    const trigger = { id: 'trg_1', source: { kind: 'topic', topic: 'orders.*' }, handler: { kind: 'webhook', url: 'https://x/h' } };
    expect(triggerLabel([trigger as never], 'trg_1')).toBe('orders.* → https://x/h');
    expect(triggerLabel([], 'trg_gone')).toBe('trg_gone');
  });

  it('says how a source\'s relay is doing', () => {
    const status = { connected: false, relayed_total: 0 };
    expect(relayHealth({ enabled: false, status: { ...status, last_error: 'refused' } }).label).toBe('Stopped');
    expect(relayHealth({ enabled: true, status: { ...status, connected: true, last_error: 'old' } }).label).toBe('Connected');
    expect(relayHealth({ enabled: true, status: { ...status, last_error: 'refused' } })).toMatchObject({ label: 'Not connected', tone: 'bad' });
    expect(relayHealth({ enabled: true, status }).label).toBe('Starting');
  });

  it('says what is wrong with an app id', () => {
    expect(appIdProblem('shop-2')).toBe('');
    expect(appIdProblem('Shop')).toContain('not “S” (use lower case: s)');
    expect(appIdProblem('s')).toContain('2–63 characters long; this one has 1');
    expect(appIdProblem('2shop')).toContain('starts with a letter');
    expect(appIdProblem('shop-')).toContain('does not end with -');
  });
});

describe('hash routes', () => {
  it('round-trip, and unknown ones go to the app list', () => {
    expect(parseHash('#/apps/shop/dead-letters')).toEqual({ page: 'app', app: 'shop', tab: 'dead-letters' });
    expect(parseHash('#/apps/shop')).toEqual({ page: 'app', app: 'shop', tab: 'overview' });
    expect(parseHash('#/apps/shop/nope')).toEqual({ page: 'app', app: 'shop', tab: 'overview' });
    expect(parseHash('#/whatever')).toEqual({ page: 'apps' });
    expect(href({ page: 'app', app: 'shop', tab: 'tail' })).toBe('#/apps/shop/tail');
    expect(parseHash('#/apps/shop/sources')).toEqual({ page: 'app', app: 'shop', tab: 'sources' });
  });
});
