/** The few tar blocks the eStargz writer adds itself: a plain ustar header, padding, end of archive. */

/** Size of a tar block. */
export const BLOCK = 512;

/** Zero bytes padding `size` to a whole block. */
export function padding(size: number): Buffer {
  return Buffer.alloc((BLOCK - (size % BLOCK)) % BLOCK);
}

/** A ustar header of a regular file `name` (under 100 bytes) of `size` bytes, mode 0, owner 0, mtime 0. */
export function fileHeader(name: string, size: number): Buffer {
  const b = Buffer.alloc(BLOCK);
  b.write(name, 0, 100, 'utf8');
  const octal = (value: number, off: number, len: number): void => {
    b.write(`${value.toString(8).padStart(len - 1, '0')}\0`, off, len, 'latin1');
  };
  octal(0, 100, 8); // mode
  octal(0, 108, 8); // uid
  octal(0, 116, 8); // gid
  octal(size, 124, 12);
  octal(0, 136, 12); // mtime
  b.write('0', 156, 1, 'latin1');
  b.write('ustar\u000000', 257, 8, 'latin1');
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of b) sum += byte;
  b.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'latin1');
  return b;
}
