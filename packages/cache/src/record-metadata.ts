/**
 * The persisted fields of a cache record, by name, over one metadata `StorageItem`. Every
 * setter only queues; `commit()` writes the queued changes as one atomic batch.
 */
import type { StorageItem } from '@buildcache/metadata';
import { msToNs, nsToMs } from '@buildcache/snapshot';

/** Kinds of record, as `buildctl du` reports them. */
export type RecordType = 'regular' | 'internal' | 'frontend' | 'source.local' | 'source.git.checkout' | 'exec.cachemount';

/** All record types, for validation and filters. */
export const RECORD_TYPES: readonly RecordType[] = [
  'regular', 'internal', 'frontend', 'source.local', 'source.git.checkout', 'exec.cachemount',
];

/** Size value meaning "not computed yet". */
export const SIZE_UNKNOWN = -1;

const K = {
  size: 'snapshot.size',
  committed: 'snapshot.committed',
  equalMutable: 'cache.equalMutable',
  equalImmutable: 'cache.equalImmutable',
  retain: 'cache.retain',
  description: 'cache.description',
  createdAt: 'cache.createdAt',
  lastUsedAt: 'cache.lastUsedAt',
  lastUsedNs: 'cache.lastUsedNs',
  usageCount: 'cache.usageCount',
  recordType: 'cache.recordType',
  parent: 'cache.parent',
  diffID: 'cache.diffID',
  blob: 'cache.blob',
  mediaType: 'cache.mediaType',
  blobSize: 'cache.blobSize',
  chainID: 'cache.chainID',
  blobChainID: 'cache.blobChainID',
  snapshot: 'cache.snapshot',
  blobOnly: 'cache.blobOnly',
  imageRefs: 'cache.imageRefs',
  deleted: 'cache.deleted',
  hasVariants: 'cache.variants',
  annotations: 'cache.annotations',
  urls: 'cache.urls',
  holders: 'cache.holders',
} as const;

/** Index prefixes under which records are found by content. */
export const INDEX_CHAIN_ID = 'chainid:';
export const INDEX_BLOB_CHAIN_ID = 'blobchainid:';
/** Index of committed records by the mutable record they still share data with, so loading either finds the other. */
export const INDEX_EQUAL_MUTABLE = 'equalmutable:';
/** Index of tombstoned records, so that open finishes their deletion without loading every record. */
export const INDEX_TOMBSTONE = 'tombstone';

/** Typed access to one record's metadata. */
export class RecordMetadata {
  constructor(readonly item: StorageItem) {}

  get id(): string {
    return this.item.id;
  }

  private str(key: string): string | undefined {
    const v = this.item.get(key);
    return typeof v === 'string' && v !== '' ? v : undefined;
  }
  private num(key: string): number | undefined {
    const v = this.item.get(key);
    return typeof v === 'number' ? v : undefined;
  }
  private bool(key: string): boolean {
    return this.item.get(key) === true;
  }
  private put(key: string, value: string | number | boolean | string[] | Record<string, string> | undefined, index?: string): void {
    if (value === undefined) this.item.delete(key);
    else this.item.set(key, value, index === undefined ? undefined : { index });
  }

  /** True once any field was ever written (a record that exists). */
  get exists(): boolean {
    return this.num(K.createdAt) !== undefined;
  }

  get size(): number {
    return this.num(K.size) ?? SIZE_UNKNOWN;
  }
  set size(v: number) {
    this.put(K.size, v);
  }
  get committed(): boolean {
    return this.bool(K.committed);
  }
  set committed(v: boolean) {
    this.put(K.committed, v);
  }
  get equalMutable(): string | undefined {
    return this.str(K.equalMutable);
  }
  set equalMutable(v: string | undefined) {
    this.put(K.equalMutable, v, v === undefined ? undefined : INDEX_EQUAL_MUTABLE + v);
  }
  /**
   * Mutable side: the ID the committed record that shares this record's data has, or will have once
   * committed (reserved when the record is made, so that a commit writes nothing to the mutable
   * record, and loading it finds its twin with one point read). Absent on records made before.
   */
  get equalImmutable(): string | undefined {
    return this.str(K.equalImmutable);
  }
  set equalImmutable(v: string | undefined) {
    this.put(K.equalImmutable, v);
  }
  get retain(): boolean {
    return this.bool(K.retain);
  }
  set retain(v: boolean) {
    this.put(K.retain, v);
  }
  get description(): string | undefined {
    return this.str(K.description);
  }
  set description(v: string | undefined) {
    this.put(K.description, v);
  }
  get createdAt(): number {
    return this.num(K.createdAt) ?? 0;
  }
  set createdAt(v: number) {
    this.put(K.createdAt, v);
  }
  /** Last use in whole milliseconds since the epoch. */
  get lastUsedAt(): number | undefined {
    return this.num(K.lastUsedAt);
  }
  /** Last use in nanoseconds since the epoch (strictly ordered); records from before have ms only. */
  get lastUsedNs(): bigint | undefined {
    const ns = this.str(K.lastUsedNs);
    if (ns !== undefined) return BigInt(ns);
    const ms = this.lastUsedAt;
    return ms === undefined ? undefined : msToNs(ms);
  }
  /** Sets the last use (both forms). */
  set lastUsedNs(v: bigint) {
    this.put(K.lastUsedNs, String(v));
    this.put(K.lastUsedAt, nsToMs(v));
  }
  get usageCount(): number {
    return this.num(K.usageCount) ?? 0;
  }
  set usageCount(v: number) {
    this.put(K.usageCount, v);
  }
  get recordType(): RecordType {
    return (this.str(K.recordType) as RecordType | undefined) ?? 'regular';
  }
  set recordType(v: RecordType) {
    this.put(K.recordType, v);
  }
  get parent(): string | undefined {
    return this.str(K.parent);
  }
  set parent(v: string | undefined) {
    this.put(K.parent, v);
  }
  get diffID(): string | undefined {
    return this.str(K.diffID);
  }
  set diffID(v: string | undefined) {
    this.put(K.diffID, v);
  }
  get blob(): string | undefined {
    return this.str(K.blob);
  }
  set blob(v: string | undefined) {
    this.put(K.blob, v);
  }
  get mediaType(): string | undefined {
    return this.str(K.mediaType);
  }
  set mediaType(v: string | undefined) {
    this.put(K.mediaType, v);
  }
  get blobSize(): number | undefined {
    return this.num(K.blobSize);
  }
  set blobSize(v: number | undefined) {
    this.put(K.blobSize, v);
  }
  get annotations(): Record<string, string> {
    const v = this.item.get(K.annotations);
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, string>) : {};
  }
  set annotations(v: Record<string, string>) {
    this.put(K.annotations, Object.keys(v).length ? v : undefined);
  }
  /** Where a non-distributable blob can be fetched from (its descriptor's `urls`). */
  get urls(): string[] {
    const v = this.item.get(K.urls);
    return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
  }
  set urls(v: readonly string[]) {
    this.put(K.urls, v.length ? [...v] : undefined);
  }
  get chainID(): string | undefined {
    return this.str(K.chainID);
  }
  set chainID(v: string | undefined) {
    this.put(K.chainID, v, v === undefined ? undefined : INDEX_CHAIN_ID + v);
  }
  get blobChainID(): string | undefined {
    return this.str(K.blobChainID);
  }
  set blobChainID(v: string | undefined) {
    this.put(K.blobChainID, v, v === undefined ? undefined : INDEX_BLOB_CHAIN_ID + v);
  }
  /** The snapshot key; old records without one use the record ID. */
  get snapshotID(): string {
    return this.str(K.snapshot) ?? this.id;
  }
  set snapshotID(v: string) {
    this.put(K.snapshot, v);
  }
  get blobOnly(): boolean {
    return this.bool(K.blobOnly);
  }
  set blobOnly(v: boolean) {
    this.put(K.blobOnly, v || undefined);
  }
  get imageRefs(): string[] {
    const v = this.item.get(K.imageRefs);
    return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
  }
  /** Adds an image reference (kept as a set). */
  addImageRef(ref: string): void {
    const refs = this.imageRefs;
    if (!refs.includes(ref)) this.put(K.imageRefs, [...refs, ref]);
  }
  /** Who outside the cache holds this record (e.g. the layer store): prune keeps it while any does. */
  get holders(): string[] {
    const v = this.item.get(K.holders);
    return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
  }
  set holders(v: readonly string[]) {
    this.put(K.holders, v.length ? [...v] : undefined);
  }
  /** Whether compression variants of the blob were made (and a variants lease exists). */
  get hasVariants(): boolean {
    return this.bool(K.hasVariants);
  }
  set hasVariants(v: boolean) {
    this.put(K.hasVariants, v || undefined);
  }
  get deleted(): boolean {
    return this.bool(K.deleted);
  }
  set deleted(v: boolean) {
    this.put(K.deleted, v || undefined, v ? INDEX_TOMBSTONE : undefined);
  }

  /** Writes the queued changes atomically and durably. */
  commit(): Promise<void> {
    return this.item.commit();
  }
}
