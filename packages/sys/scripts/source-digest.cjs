// Prints the sha256 of the addon's C sources and build file, compiled into the binary as
// `sourceDigest` so a test can prove a committed prebuild was built from the sources beside it.
'use strict';
const { createHash } = require('node:crypto');
const { readFileSync, readdirSync } = require('node:fs');
const { join } = require('node:path');

const root = join(__dirname, '..');
const files = readdirSync(join(root, 'csrc')).sort().map((f) => join('csrc', f));
const hash = createHash('sha256');
for (const f of [...files, 'binding.gyp']) {
  hash.update(f + '\0');
  hash.update(readFileSync(join(root, f)).toString('utf8').replace(/\r\n/g, '\n'));
  hash.update('\0');
}
process.stdout.write(hash.digest('hex'));
