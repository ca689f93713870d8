import { svelte } from '@sveltejs/vite-plugin-svelte';
import { svelteTesting } from '@testing-library/svelte/vite';
import { defineConfig } from 'vitest/config';

// The dashboard is served by the picloud binary at /_/ from the committed dist/ folder.
// The build is deterministic (content-hashed names, no timestamps), so scripts/test.sh can
// rebuild it and fail when the committed copy differs.
export default defineConfig({
  base: '/_/',
  plugins: [svelte()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    assetsDir: 'assets',
    sourcemap: false,
    target: 'es2022',
    chunkSizeWarningLimit: 400,
  },
  server: {
    // `npm run dev` against a local `picloud serve`.
    proxy: { '/v1': 'http://127.0.0.1:8080' },
  },
  test: {
    projects: [
      {
        extends: true,
        plugins: [svelteTesting()],
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          environment: 'jsdom',
          setupFiles: ['test/unit/setup.ts'],
          // A hang guard, not a speed limit: scripts/test.sh runs these beside the Rust
          // build and tests at a low priority, where a test can wait seconds for a core.
          testTimeout: 60_000,
        },
      },
      {
        test: {
          name: 'e2e',
          include: ['test/e2e/**/*.test.ts'],
          environment: 'node',
          testTimeout: 180_000,
          hookTimeout: 120_000,
        },
      },
    ],
  },
});
