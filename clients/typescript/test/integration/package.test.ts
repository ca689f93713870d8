/**
 * The built package as users get it: every subpath of the `exports` map loads through
 * both `require` and `import`, the core bundle imports nothing, and the declarations
 * type-check for ESM and CommonJS consumers, and the packed tarball installs into a
 * project as the README says.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

import { describe, expect, it } from 'vitest';

const root = resolve(import.meta.dirname, '../..');
const node = (code: string, type: 'commonjs' | 'module'): string =>
  execFileSync(process.execPath, [`--input-type=${type}`, '-e', code], { cwd: root, encoding: 'utf8' }).trim();

describe('the built package', () => {
  it('loads every subpath with require', () => {
    const out = node(
      `const c = require('@picloud/client'), r = require('@picloud/client/react'), s = require('@picloud/client/svelte');
       console.log([typeof c.createClient, typeof c.endpoint, typeof r.useTopic, typeof r.useEndpoint, typeof s.topicStore].join())`,
      'commonjs',
    );
    expect(out).toBe('function,function,function,function,function');
  });

  it('loads every subpath with import', () => {
    const out = node(
      `const c = await import('@picloud/client'), r = await import('@picloud/client/react'), s = await import('@picloud/client/svelte');
       console.log([typeof c.createClient, typeof c.PicloudError, typeof r.useTopic, typeof s.topicStore].join())`,
      'module',
    );
    expect(out).toBe('function,function,function,function');
  });

  it('has no runtime dependency in the core bundle', () => {
    const pkg = JSON.parse(readFileSync(resolve(root, 'package.json'), 'utf8')) as Record<string, unknown>;
    expect(pkg.dependencies).toBeUndefined();
    const core = readFileSync(resolve(root, 'dist/index.js'), 'utf8');
    const imports = [...core.matchAll(/from\s+["']([^"']+)["']/g)].map((m) => m[1]);
    expect(imports.filter((spec) => !spec!.startsWith('./'))).toEqual([]);
  });

  it('type-checks ESM and CommonJS consumers against the declarations', () => {
    execFileSync(process.execPath, [resolve(root, 'node_modules/typescript/bin/tsc'), '-p', 'test/package'], {
      cwd: root,
      encoding: 'utf8',
    });
  });

  it('installs into another project from the packed tarball, as the README says', () => {
    const pkg = JSON.parse(readFileSync(resolve(root, 'package.json'), 'utf8')) as {
      version: string;
      scripts: Record<string, string>;
    };
    // `npm pack` builds first; here dist/ is already built, so the scripts are skipped.
    expect(pkg.scripts.prepack).toBe('tsup');
    const dir = mkdtempSync(join(tmpdir(), 'picloud-client-'));
    try {
      execFileSync('npm', ['pack', '--ignore-scripts', '--pack-destination', dir], { cwd: root, stdio: 'pipe' });
      const tarball = readdirSync(dir).find((name) => name.endsWith('.tgz'));
      expect(tarball).toBe(`picloud-client-${pkg.version}.tgz`);
      writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'your-app', private: true }));
      execFileSync('npm', ['install', '--offline', '--no-audit', '--no-fund', `./${tarball!}`], { cwd: dir, stdio: 'pipe' });
      const out = execFileSync(
        process.execPath,
        ['-e', "console.log(typeof require('@picloud/client').createClient)"],
        { cwd: dir, encoding: 'utf8' },
      ).trim();
      expect(out).toBe('function');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
