/** Reconnection delays: exponential with jitter, capped, reset after a healthy connection. */

/** Tuning for {@link Backoff}. */
export interface BackoffOptions {
  /** The first delay in ms (default 1000). */
  readonly initialDelayMs?: number;
  /** The largest delay in ms (default 30000). */
  readonly maxDelayMs?: number;
  /** How much each failure multiplies the delay (default 2). */
  readonly factor?: number;
  /** The share of each delay taken off at random, 0..1 (default 0.2), so that clients
   * dropped together do not all come back in the same instant. */
  readonly jitter?: number;
  /** The random source, `Math.random` unless a test pins it. */
  readonly random?: () => number;
}

/** Counts consecutive failures and turns them into delays: 1 s, 2 s, 4 s, … 30 s. */
export class Backoff {
  readonly #initial: number;
  readonly #max: number;
  readonly #factor: number;
  readonly #jitter: number;
  readonly #random: () => number;
  #base: number;
  #current: number;

  constructor(options: BackoffOptions = {}) {
    this.#initial = options.initialDelayMs ?? 1000;
    this.#max = options.maxDelayMs ?? 30_000;
    this.#factor = options.factor ?? 2;
    this.#jitter = Math.min(1, Math.max(0, options.jitter ?? 0.2));
    this.#random = options.random ?? Math.random;
    this.#base = this.#initial;
    this.#current = this.#base;
  }

  /** The delay before the next attempt; each call grows the following one. */
  next(): number {
    const delay = Math.min(this.#current, this.#max);
    this.#current = Math.min(this.#current * this.#factor, this.#max);
    return Math.round(delay * (1 - this.#jitter * this.#random()));
  }

  /** Starts over from the first delay (call after a healthy connection). */
  reset(): void {
    this.#current = this.#base;
  }

  /** Uses the server's `retry:` suggestion as the first delay from now on. */
  setInitialDelay(ms: number): void {
    this.#base = Math.min(Math.max(0, ms), this.#max);
  }
}
