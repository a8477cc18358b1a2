/**
 * Without a loadable @buildcache/sys addon both backends refuse to open, with one line saying how
 * to build it (no silent fallback). The addon is made unloadable in a child process by a
 * process.dlopen that throws, as it does for a binary of another architecture.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);
const INDEX = pathToFileURL(join(import.meta.dirname, '../src/index.js')).href;
/** Makes loading only our addon fail (other addons, e.g. classic-level's, still load). */
const BREAK_DLOPEN =
  'data:text/javascript,const o=process.dlopen;process.dlopen=(m,f,...r)=>{if(/sys[/]build[/]|buildcache[+]sys/.test(f))' +
  'throw new Error("wrong ELF class: ELFCLASS32");return o(m,f,...r)}';

test('both backends fail at open with how to build @buildcache/sys when it does not load', async () => {
  const root = await mkdtemp(join(tmpdir(), 'bc-sys-missing-'));
  try {
    const script = `
      const { openEmbeddedBackend, openContainerdBackend } = await import(${JSON.stringify(INDEX)});
      for (const open of [() => openEmbeddedBackend({ root: ${JSON.stringify(root)} }),
                          () => openContainerdBackend({ address: '/nonexistent.sock', namespace: 'x' })]) {
        try { await open(); console.log('opened'); }
        catch (err) { console.log(JSON.stringify({ code: err.code, message: err.message })); }
      }`;
    const { stdout } = await execFileP(process.execPath, ['--import', BREAK_DLOPEN, '--input-type=module', '-e', script]);
    const lines = stdout.trim().split('\n');
    assert.equal(lines.length, 2, stdout);
    for (const line of lines) {
      const { code, message } = JSON.parse(line) as { code: string; message: string };
      assert.equal(code, 'ERR_FAILED_PRECONDITION');
      assert.doesNotMatch(message, /\n/, 'one line');
      assert.match(message, /@buildcache\/sys does not load on linux-.*wrong ELF class/);
      assert.match(message, /`npm rebuild @buildcache\/sys --build-from-source` \(needs python3, make and g\+\+\)/);
    }
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
