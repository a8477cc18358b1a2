/**
 * Image names as Docker spells them: `debian` is `docker.io/library/debian:latest`. Names are kept in
 * their full form and shown in the familiar one.
 */
import { ErrInvalidArgument } from '@buildcache/errdefs';

const NAME = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;

/** The full form of an image name (registry, repository and tag); ErrInvalidArgument when it is not one. */
export function fullName(ref: string): string {
  let rest = ref;
  let suffix = '';
  const at = rest.indexOf('@');
  if (at >= 0) {
    suffix = rest.slice(at);
    rest = rest.slice(0, at);
  } else {
    const colon = rest.lastIndexOf(':');
    if (colon > rest.lastIndexOf('/')) {
      suffix = rest.slice(colon);
      rest = rest.slice(0, colon);
      if (!TAG.test(suffix.slice(1))) throw new ErrInvalidArgument(`image name ${JSON.stringify(ref)} has an invalid tag`);
    } else suffix = ':latest';
  }
  const slash = rest.indexOf('/');
  const first = slash < 0 ? '' : rest.slice(0, slash);
  let domain = 'docker.io';
  let path = rest;
  if (first && (first.includes('.') || first.includes(':') || first === 'localhost')) {
    domain = first;
    path = rest.slice(slash + 1);
  }
  if (domain === 'docker.io' && !path.includes('/')) path = `library/${path}`;
  if (!NAME.test(path)) throw new ErrInvalidArgument(`${JSON.stringify(ref)} is not a valid image name (lowercase repository, optional :tag)`);
  return `${domain}/${path}${suffix}`;
}

/** The short form Docker shows (`debian:bookworm` for `docker.io/library/debian:bookworm`). */
export function familiarName(full: string): string {
  return full.replace(/^docker\.io\/(?:library\/)?/, '');
}

/** A full name split into repository and tag (or digest) for listing. */
export function splitName(full: string): { repository: string; tag: string } {
  const f = familiarName(full);
  const at = f.indexOf('@');
  if (at >= 0) return { repository: f.slice(0, at), tag: '<none>' };
  const colon = f.lastIndexOf(':');
  return { repository: f.slice(0, colon), tag: f.slice(colon + 1) };
}
