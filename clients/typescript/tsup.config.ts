import { defineConfig } from 'tsup';

export default defineConfig({
  entry: { index: 'src/index.ts', react: 'src/react.ts', svelte: 'src/svelte.ts' },
  format: ['esm', 'cjs'],
  dts: true,
  clean: true,
  sourcemap: true,
  // One copy of shared code (PicloudError, …) for every entry, in CJS too, so that
  // `instanceof` holds across subpaths.
  splitting: true,
  target: 'es2022',
  platform: 'neutral',
  external: ['react', 'svelte', 'svelte/store'],
});
