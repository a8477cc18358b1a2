/** A set of half-open byte ranges [start, end), kept sorted and merged. */
export class RangeSet {
  private readonly list: Array<[number, number]> = [];

  /** Total bytes covered. */
  get covered(): number {
    return this.list.reduce((n, [s, e]) => n + e - s, 0);
  }

  /** Adds [start, end). */
  add(start: number, end: number): void {
    if (end <= start) return;
    const out: Array<[number, number]> = [];
    let s = start;
    let e = end;
    for (const r of this.list) {
      if (r[1] < s || r[0] > e) out.push(r);
      else {
        s = Math.min(s, r[0]);
        e = Math.max(e, r[1]);
      }
    }
    out.push([s, e]);
    out.sort((a, b) => a[0] - b[0]);
    this.list.splice(0, this.list.length, ...out);
  }

  /** The parts of [start, end) not covered, in order. */
  missing(start: number, end: number): Array<[number, number]> {
    const out: Array<[number, number]> = [];
    let at = start;
    for (const [s, e] of this.list) {
      if (e <= at) continue;
      if (s >= end) break;
      if (s > at) out.push([at, Math.min(s, end)]);
      at = Math.max(at, e);
      if (at >= end) break;
    }
    if (at < end) out.push([at, end]);
    return out;
  }

  /** Whether [start, end) is covered entirely. */
  has(start: number, end: number): boolean {
    return this.missing(start, end).length === 0;
  }
}
