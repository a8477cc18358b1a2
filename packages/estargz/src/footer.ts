/**
 * The eStargz footer (51 bytes) and the legacy stargz footer (47 bytes): an empty gzip member whose
 * FEXTRA field carries the TOC's offset as `%016xSTARGZ`.
 */

/** Size of an eStargz footer. */
export const FOOTER_SIZE = 51;
/** Size of a legacy (google/crfs) stargz footer. */
export const LEGACY_FOOTER_SIZE = 47;

/** Where a blob's footer said its TOC starts, and which footer it had. */
export interface Footer {
  readonly tocOffset: number;
  readonly footerSize: number;
  readonly legacy: boolean;
}

const GZIP_HEAD = [0x1f, 0x8b, 0x08];
const FLG_FEXTRA = 0x04;
/** An empty final stored deflate block, then CRC32 = 0 and ISIZE = 0. */
const EMPTY_TAIL = Buffer.from([0x01, 0x00, 0x00, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0]);

/** The 51-byte eStargz footer pointing at `tocOffset`. */
export function encodeFooter(tocOffset: number): Buffer {
  const out = Buffer.alloc(FOOTER_SIZE);
  Buffer.from([0x1f, 0x8b, 0x08, FLG_FEXTRA, 0, 0, 0, 0, 0, 0xff]).copy(out, 0);
  out.writeUInt16LE(26, 10);
  out.write('SG', 12, 'latin1');
  out.writeUInt16LE(22, 14);
  out.write(`${tocOffset.toString(16).padStart(16, '0')}STARGZ`, 16, 'latin1');
  EMPTY_TAIL.copy(out, 38);
  return out;
}

function gzipHeaderOk(b: Buffer): boolean {
  return b[0] === GZIP_HEAD[0] && b[1] === GZIP_HEAD[1] && b[2] === GZIP_HEAD[2] && ((b[3] ?? 0) & FLG_FEXTRA) !== 0;
}

/** `%016xSTARGZ` → the offset, or undefined. */
function offsetOf(field: string): number | undefined {
  if (!/^[0-9a-fA-F]{16}STARGZ$/.test(field)) return undefined;
  const n = Number.parseInt(field.slice(0, 16), 16);
  return Number.isSafeInteger(n) ? n : undefined;
}

/**
 * Parses the footer at the end of `tail` (the last bytes of a blob, at least 47): eStargz first,
 * then legacy stargz. Undefined when neither matches. Only the fields that identify the footer are
 * checked (MTIME, XFL and OS may differ between writers).
 */
export function parseFooter(tail: Buffer): Footer | undefined {
  if (tail.length >= FOOTER_SIZE) {
    const f = tail.subarray(tail.length - FOOTER_SIZE);
    if (gzipHeaderOk(f) && f.readUInt16LE(10) === 26 && f.toString('latin1', 12, 14) === 'SG' && f.readUInt16LE(14) === 22) {
      const tocOffset = offsetOf(f.toString('latin1', 16, 38));
      if (tocOffset !== undefined) return { tocOffset, footerSize: FOOTER_SIZE, legacy: false };
    }
  }
  if (tail.length >= LEGACY_FOOTER_SIZE) {
    const f = tail.subarray(tail.length - LEGACY_FOOTER_SIZE);
    if (gzipHeaderOk(f) && f.readUInt16LE(10) === 22) {
      const tocOffset = offsetOf(f.toString('latin1', 12, 34));
      if (tocOffset !== undefined) return { tocOffset, footerSize: LEGACY_FOOTER_SIZE, legacy: true };
    }
  }
  return undefined;
}
