import { describe, expect, it } from 'vitest';

import { Backoff } from '../../src/backoff.js';

const take = (backoff: Backoff, n: number): number[] => Array.from({ length: n }, () => backoff.next());

describe('Backoff', () => {
  it('doubles from 1 s and stops growing at 30 s', () => {
    const backoff = new Backoff({ random: () => 0 });
    expect(take(backoff, 8)).toEqual([1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
  });

  it('takes up to 20 % off at random, never adding', () => {
    expect(take(new Backoff({ random: () => 0.999999 }), 3)).toEqual([800, 1600, 3200]);
    const delays = take(new Backoff(), 200);
    for (const d of delays) expect(d).toBeLessThanOrEqual(30000);
    expect(new Set(delays.slice(10)).size).toBeGreaterThan(1);
  });

  it('starts over after reset', () => {
    const backoff = new Backoff({ random: () => 0 });
    take(backoff, 4);
    backoff.reset();
    expect(take(backoff, 2)).toEqual([1000, 2000]);
  });

  it("uses the server's retry as the first delay", () => {
    const backoff = new Backoff({ random: () => 0 });
    backoff.setInitialDelay(5000);
    backoff.reset();
    expect(take(backoff, 3)).toEqual([5000, 10000, 20000]);
  });

  it('honours custom bounds', () => {
    expect(take(new Backoff({ initialDelayMs: 10, maxDelayMs: 50, random: () => 0 }), 4)).toEqual([10, 20, 40, 50]);
  });
});
