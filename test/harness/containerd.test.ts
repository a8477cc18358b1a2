import { test } from 'node:test';
import assert from 'node:assert/strict';
import { access } from 'node:fs/promises';
import { startContainerd, containerdVersion } from './containerd.js';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

test('a private containerd starts, answers Version, and leaves nothing behind when stopped', async () => {
  const d = await startContainerd();
  try {
    assert.ok(alive(d.pid), 'daemon process is running');
    assert.ok(d.address.startsWith(d.dir), 'socket lives in the private temp dir');
    const version = await containerdVersion(d.address);
    assert.match(version, /^\d+\.\d+/);
  } finally {
    await d.stop();
  }
  assert.equal(alive(d.pid), false, 'daemon process is gone');
  await assert.rejects(access(d.address), { code: 'ENOENT' });
  await assert.rejects(access(d.dir), { code: 'ENOENT' });
});
