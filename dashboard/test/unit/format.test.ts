import { describe, expect, it } from 'vitest';
import { duration, optionalNumber, retention } from '../../src/lib/format';
import { href, parseHash } from '../../src/lib/router.svelte';

describe('formatting', () => {
  it('says retention in words', () => {
    expect(retention({ max_events: 100000, max_age_secs: 604800 })).toBe('100,000 events · 7 d');
    expect(retention({ max_events: null, max_age_secs: 5400 })).toBe('90 min');
    expect(retention({})).toBe('unlimited');
    expect(duration(45)).toBe('45 s');
  });

  it('reads optional number fields', () => {
    expect(optionalNumber('')).toBeUndefined();
    expect(optionalNumber(null)).toBeUndefined();
    expect(optionalNumber(3)).toBe(3);
    expect(optionalNumber('12')).toBe(12);
  });
});

describe('hash routes', () => {
  it('round-trip, and unknown ones go to the app list', () => {
    expect(parseHash('#/apps/shop/dead-letters')).toEqual({ page: 'app', app: 'shop', tab: 'dead-letters' });
    expect(parseHash('#/apps/shop')).toEqual({ page: 'app', app: 'shop', tab: 'overview' });
    expect(parseHash('#/apps/shop/nope')).toEqual({ page: 'app', app: 'shop', tab: 'overview' });
    expect(parseHash('#/whatever')).toEqual({ page: 'apps' });
    expect(href({ page: 'app', app: 'shop', tab: 'tail' })).toBe('#/apps/shop/tail');
  });
});
