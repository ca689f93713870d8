/** An in-process stand-in for the Web Locks API (exclusive locks, FIFO, abortable waits). */
import type { TabEnvironment } from '../../src/tabs.js';

interface Waiter {
  callback: () => Promise<void>;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

type Locks = TabEnvironment['locks'];

export class FakeLocks implements Locks {
  readonly #queues = new Map<string, Waiter[]>();
  readonly #held = new Set<string>();

  request(name: string, options: { signal?: AbortSignal }, callback: () => Promise<void>): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const waiter: Waiter = { callback, resolve, reject };
      const queue = this.#queues.get(name) ?? [];
      this.#queues.set(name, queue);
      const { signal } = options;
      if (signal?.aborted) {
        reject(new DOMException('aborted', 'AbortError'));
        return;
      }
      signal?.addEventListener('abort', () => {
        const index = queue.indexOf(waiter);
        if (index >= 0) {
          queue.splice(index, 1);
          reject(new DOMException('aborted', 'AbortError'));
        }
      });
      queue.push(waiter);
      this.#grant(name);
    });
  }

  #grant(name: string): void {
    if (this.#held.has(name)) return;
    const waiter = this.#queues.get(name)?.shift();
    if (!waiter) return;
    this.#held.add(name);
    const release = (): void => {
      this.#held.delete(name);
      this.#grant(name);
    };
    waiter.callback().then(
      (value) => {
        release();
        waiter.resolve(value);
      },
      (error: unknown) => {
        release();
        waiter.reject(error);
      },
    );
  }
}
