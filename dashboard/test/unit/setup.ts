/** jsdom lacks <dialog> modality and canvas; give the tests what the browser has. */
import { configure } from '@testing-library/svelte';
import { afterEach, vi } from 'vitest';

// findBy…/waitFor give up after 1 s by default; beside the Rust build at a low priority
// (scripts/test.sh) a render can wait longer than that for a core. They still fail on
// what never appears, only later.
configure({ asyncUtilTimeout: 10_000 });

if (!HTMLDialogElement.prototype.showModal) {
  HTMLDialogElement.prototype.showModal = function showModal(this: HTMLDialogElement) {
    this.open = true;
  };
  HTMLDialogElement.prototype.close = function close(this: HTMLDialogElement) {
    this.open = false;
  };
}
// uPlot reads the pixel ratio through matchMedia when it loads.
window.matchMedia ??= ((query: string) => ({
  matches: false,
  media: query,
  onchange: null,
  addListener: () => {},
  removeListener: () => {},
  addEventListener: () => {},
  removeEventListener: () => {},
  dispatchEvent: () => false,
})) as typeof window.matchMedia;
// No canvas in jsdom: charts fall back to their text summaries.
HTMLCanvasElement.prototype.getContext = (() => null) as typeof HTMLCanvasElement.prototype.getContext;

afterEach(() => {
  vi.restoreAllMocks();
  vi.unstubAllGlobals();
});
// bind:clientWidth measures with ResizeObserver.
globalThis.ResizeObserver ??= class {
  observe(): void {}
  unobserve(): void {}
  disconnect(): void {}
} as unknown as typeof ResizeObserver;
