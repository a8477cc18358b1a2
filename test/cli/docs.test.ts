/** What the help and the READMEs tell a CLI user (issue 11, items 14 and 15). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FILTER_FIELDS } from '@buildcache/cache';
import { run } from './helpers.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

test('--help lists the filter fields and the exit codes', async () => {
  const help = await run(['--help']);
  assert.equal(help.code, 0);
  const fields = /Fields: (.*)\./.exec(help.stdout)?.[1]?.split(', ');
  assert.deepEqual(fields, [...FILTER_FIELDS]);
  const section = help.stdout.slice(help.stdout.indexOf('Exit codes:'));
  for (const code of ['0', '1', '2', '3', '4', '130']) assert.match(section, new RegExp(`^  ${code}\\s+\\S`, 'm'), `exit code ${code}`);
});

test('the READMEs say what the CLI does, and the API example opens the layout the CLI opens', async () => {
  const readme = await readFile(resolve(repo, 'README.md'), 'utf8');
  const cli = readme.slice(readme.indexOf('## The CLI'), readme.indexOf('## The API'));
  assert.match(cli, /packages\/cli\/README\.md/);
  assert.match(cli, /--help/);
  assert.match(cli, /\*\*Privileges\.\*\*.*root/s, 'which commands need root');
  assert.match(cli, /namespace may hold several caches/);
  assert.match(cli, /Only one process opens a given cache root at a time/);
  const api = readme.slice(readme.indexOf('## The API'));
  assert.match(api, /await openCache\(\{ root: /);
  assert.doesNotMatch(api.slice(0, api.indexOf('```', api.indexOf('```ts') + 5)), /openEmbeddedBackend|CacheManager\.open/);

  const pkg = await readFile(resolve(repo, 'packages/cli/README.md'), 'utf8');
  for (const heading of ['## Global flags', '## `prune` flags', '## Exit codes']) assert.ok(pkg.includes(heading), heading);
});
