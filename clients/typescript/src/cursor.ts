/**
 * Resume cursors (`topic:seq` pairs joined by `,`, topics sorted; a topic may contain
 * `:`, the seq follows the last one) and the per-topic positions behind them.
 */

import type { ResetInfo } from './protocol.js';

/** Reads a cursor into topic → seq. Malformed parts are skipped. */
export function parseCursor(cursor: string): Map<string, number> {
  const positions = new Map<string, number>();
  for (const part of cursor.split(',')) {
    const colon = part.lastIndexOf(':');
    if (colon <= 0) continue;
    const seqText = part.slice(colon + 1);
    if (!/^[0-9]+$/.test(seqText)) continue;
    positions.set(part.slice(0, colon), Number(seqText));
  }
  return positions;
}

/** Writes topic → seq as a cursor, topics sorted. */
export function formatCursor(positions: ReadonlyMap<string, number>): string {
  return [...positions.keys()]
    .sort()
    .map((topic) => `${topic}:${String(positions.get(topic))}`)
    .join(',');
}

/**
 * What a subscriber has seen, per topic: the cursor to resume from, and the guard that
 * never lets the same (topic, seq) through twice, whatever the connections did.
 */
export class CursorTracker {
  readonly #topics: ReadonlySet<string>;
  readonly #positions = new Map<string, number>();

  /** Tracks `topics`, starting from `cursor` when given (other topics in it are dropped). */
  constructor(topics: readonly string[], cursor?: string) {
    this.#topics = new Set(topics);
    if (cursor !== undefined) {
      for (const [topic, seq] of parseCursor(cursor)) {
        if (this.#topics.has(topic)) this.#positions.set(topic, seq);
      }
    }
  }

  /** The cursor covering every topic with a known position, or undefined if none has. */
  get cursor(): string | undefined {
    return this.#positions.size === 0 ? undefined : formatCursor(this.#positions);
  }

  /** The last seq seen on `topic`, if known. */
  position(topic: string): number | undefined {
    return this.#positions.get(topic);
  }

  /** Records an event; false when it is one already seen (a duplicate to drop). */
  accept(topic: string, seq: number): boolean {
    if (!this.#topics.has(topic)) return false;
    const last = this.#positions.get(topic);
    if (last !== undefined && seq <= last) return false;
    this.#positions.set(topic, seq);
    return true;
  }

  /** Takes a stream's starting cursor for topics that have no position yet. */
  adoptStart(cursor: string): void {
    for (const [topic, seq] of parseCursor(cursor)) {
      if (this.#topics.has(topic) && !this.#positions.has(topic)) this.#positions.set(topic, seq);
    }
  }

  /**
   * Applies a `reset`: positions move to where the server continues, even backwards
   * (a cursor past the head of a recreated topic), so later events are not mistaken
   * for duplicates. A lost range ends at `toSeq`, so the next event, `toSeq + 1`, counts.
   */
  applyReset(reset: ResetInfo): void {
    for (const [topic, seq] of parseCursor(reset.cursor)) {
      if (this.#topics.has(topic)) this.#positions.set(topic, seq);
    }
    for (const lost of reset.lost) {
      if (this.#topics.has(lost.topic)) this.#positions.set(lost.topic, lost.toSeq);
    }
  }
}
