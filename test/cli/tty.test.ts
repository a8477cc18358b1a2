/**
 * On a terminal (a real pty through util-linux `script`; issue 11, items 3, 5 and 7): prune asks
 * before deleting unless --force, and its progress line stays visible, says "1 record" and ends
 * with a newline when interrupted.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { run, runInPty, syntheticRoot } from './helpers.js';

/** The terminal output without the erase-line sequences the progress line uses. */
const plain = (out: string): string => out.split('\u001b[2K').join('');

async function count(root: string): Promise<number> {
  return (JSON.parse((await run(['--root', root, 'du', '--format', 'json'])).stdout) as unknown[]).length;
}

describe('prune on a terminal', { timeout: 180_000 }, () => {
  test('asks for confirmation; "n" deletes nothing, "y" prunes', async () => {
    const root = await syntheticRoot(3);
    const no = runInPty(['--root', root, 'prune']);
    await no.waitFor(/Are you sure you want to continue\? \[y\/N\] /);
    no.type('n\r');
    assert.equal(await no.exit, 0);
    assert.match(no.output(), /prune cancelled; nothing was removed/);
    assert.equal(await count(root), 3);

    const yes = runInPty(['--root', root, 'prune']);
    await yes.waitFor(/\[y\/N\] /);
    yes.type('y\r');
    assert.equal(await yes.exit, 0);
    assert.match(yes.output(), /Total:\s+12\.29kB/);
    assert.equal(await count(root), 0);
  });

  test('--force, --dry-run and --format json never ask', async () => {
    for (const flags of [['--dry-run'], ['--format', 'json'], ['--force']]) {
      const root = await syntheticRoot(2);
      const p = runInPty(['--root', root, 'prune', ...flags]);
      assert.equal(await p.exit, 0, flags.join(' '));
      assert.doesNotMatch(p.output(), /\[y\/N\]/, flags.join(' '));
      assert.equal(await count(root), flags[0] === '--dry-run' ? 2 : 0, flags.join(' '));
    }
  });

  for (const mode of [[], ['-v']]) {
    test(`the progress line is redrawn after each row and stays visible (${mode.length ? '-v' : 'table'})`, async () => {
      const root = await syntheticRoot(2);
      const p = runInPty(['--root', root, 'prune', '--force', ...mode]);
      assert.equal(await p.exit, 0);
      const out = plain(p.output());
      assert.match(out, /deleted 1 record, 4\.\d\dkB/);
      // After the last record: the status of both records, ended by a newline (kept), then the total.
      const last = out.lastIndexOf('synthetic00000000');
      assert.ok(last > 0, out);
      assert.match(out.slice(last), /deleted 2 records, 8\.\d\dkB\r?\n\r*Total:/);
    });
  }

  test('Ctrl-C mid-prune: the rows and Total of what was deleted, the status line ended by a newline, exit 130', async () => {
    const root = await syntheticRoot(5000);
    const p = runInPty(['--root', root, 'prune', '--force']);
    await p.waitFor(/deleted \d+ records?/);
    p.type('\x03');
    assert.equal(await p.exit, 130);
    const out = plain(p.output());
    const rows = out.match(/synthetic\d{8}\s+true/g) ?? [];
    assert.ok(rows.length > 0);
    assert.match(out, new RegExp(`deleted ${rows.length} records?, [\\d.]+[kM]B\\r?\\n\\r*Total:\\s+[\\d.]+[kM]B \\(interrupted\\)`));
    assert.equal(await count(root), 5000 - rows.length);
  });
});
