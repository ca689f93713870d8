import { describe, expect, it } from 'vitest';

import { CursorTracker, formatCursor, parseCursor } from '../../src/cursor.js';

describe('cursor format', () => {
  it('reads topic:seq pairs where the topic itself contains colons', () => {
    expect([...parseCursor('chat:lobby:7,orders:12')]).toEqual([
      ['chat:lobby', 7],
      ['orders', 12],
    ]);
  });

  it('skips malformed parts', () => {
    expect([...parseCursor('orders:x,:3,nocolon,,a:1')]).toEqual([['a', 1]]);
  });

  it('writes topics in sorted order', () => {
    expect(formatCursor(new Map([['orders', 12], ['chat:lobby', 7]]))).toBe('chat:lobby:7,orders:12');
  });
});

describe('CursorTracker', () => {
  it('accepts each (topic, seq) once and in increasing order only', () => {
    const tracker = new CursorTracker(['a', 'b']);
    expect([tracker.accept('a', 1), tracker.accept('a', 1), tracker.accept('b', 5), tracker.accept('a', 2)]).toEqual([
      true,
      false,
      true,
      true,
    ]);
    expect(tracker.accept('a', 1)).toBe(false);
    expect(tracker.cursor).toBe('a:2,b:5');
  });

  it('ignores topics it does not track, in events and in cursors', () => {
    const tracker = new CursorTracker(['a'], 'a:3,zzz:9');
    expect(tracker.cursor).toBe('a:3');
    expect(tracker.accept('zzz', 10)).toBe(false);
  });

  it('starts from a given cursor and drops what it covers', () => {
    const tracker = new CursorTracker(['a'], 'a:3');
    expect(tracker.accept('a', 3)).toBe(false);
    expect(tracker.accept('a', 4)).toBe(true);
  });

  it("takes a stream's start only for topics without a position", () => {
    const tracker = new CursorTracker(['a', 'b'], 'a:3');
    tracker.adoptStart('a:1,b:8');
    expect(tracker.cursor).toBe('a:3,b:8');
  });

  it('moves to where a reset continues, backwards too, so the next events count', () => {
    const tracker = new CursorTracker(['a', 'b'], 'a:500,b:12');
    tracker.applyReset({
      reason: 'cursor_expired',
      cursor: 'a:3,b:40',
      lost: [{ topic: 'b', fromSeq: 13, toSeq: 39 }],
    });
    expect(tracker.accept('a', 4)).toBe(true);
    expect(tracker.accept('b', 40)).toBe(true);
  });
});
