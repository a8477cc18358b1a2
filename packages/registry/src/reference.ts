/**
 * Image references (`host[:port]/repo[:tag][@digest]`) as Docker parses them: a first path
 * component with a `.` or `:` (or `localhost`) names the registry, otherwise Docker Hub
 * (`docker.io`, one-component names under `library/`); no tag and no digest means `latest`.
 */
import { ErrInvalidArgument } from '@buildcache/errdefs';
import { assertDigest } from './digest.js';

/** A parsed image reference. `registry` is the host as typed (`docker.io` for Docker Hub). */
export interface Reference {
  readonly registry: string;
  readonly repository: string;
  readonly tag?: string;
  readonly digest?: string;
}

/** Docker Hub's name as users type it, and the API host it is served from. */
export const DOCKER_HUB = 'docker.io';
const DOCKER_HUB_API = 'registry-1.docker.io';

const COMPONENT = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;
const HOST = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*)(?::[0-9]{1,5})?$/;

function invalid(text: string, why: string): ErrInvalidArgument {
  return new ErrInvalidArgument(`invalid image reference ${JSON.stringify(text)}: ${why}`, { details: { reference: text } });
}

/** Parses `host[:port]/repo[:tag][@digest]`; throws `ErrInvalidArgument` naming the text and the broken part. */
export function parseReference(text: string): Reference {
  let rest = text;
  let digest: string | undefined;
  const at = rest.lastIndexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    try {
      assertDigest(digest, text);
    } catch {
      throw invalid(text, `bad digest ${JSON.stringify(digest)} (want algorithm:hex, e.g. sha256:<64 hex>)`);
    }
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw invalid(text, `bad tag ${JSON.stringify(tag)}`);
  }
  const slash = rest.indexOf('/');
  const first = slash < 0 ? '' : rest.slice(0, slash);
  let registry = DOCKER_HUB;
  let repository = rest;
  if (slash >= 0 && (first.includes('.') || first.includes(':') || first === 'localhost')) {
    registry = first;
    repository = rest.slice(slash + 1);
    if (!HOST.test(registry)) throw invalid(text, `bad registry host ${JSON.stringify(registry)}`);
  }
  if (registry === 'index.docker.io') registry = DOCKER_HUB;
  if (registry === DOCKER_HUB && repository !== '' && !repository.includes('/')) repository = `library/${repository}`;
  if (repository === '' || !repository.split('/').every((c) => COMPONENT.test(c))) {
    throw invalid(text, 'the repository must be lowercase path components [a-z0-9] joined by . _ __ - and separated by /');
  }
  if (repository.length > 255) throw invalid(text, 'the repository is longer than 255 characters');
  if (tag === undefined && digest === undefined) tag = 'latest';
  return { registry, repository, ...(tag !== undefined ? { tag } : {}), ...(digest !== undefined ? { digest } : {}) };
}

/** Accepts a reference object as is, parses a string. */
export function toReference(ref: string | Reference): Reference {
  return typeof ref === 'string' ? parseReference(ref) : ref;
}

/** The canonical text of a reference: `registry/repository[:tag][@digest]`. */
export function formatReference(ref: Reference): string {
  return `${ref.registry}/${ref.repository}${ref.tag !== undefined ? `:${ref.tag}` : ''}${ref.digest !== undefined ? `@${ref.digest}` : ''}`;
}

/** The host the registry API is served from (`registry-1.docker.io` for Docker Hub). */
export function apiHost(registry: string): string {
  return registry === DOCKER_HUB ? DOCKER_HUB_API : registry;
}

/** True for `localhost`, `127.x.x.x` and `[::1]` (with or without a port): these are spoken to over plain http. */
export function isLoopback(registry: string): boolean {
  const host = registry.startsWith('[') ? registry.slice(0, registry.indexOf(']') + 1) : registry.split(':')[0] ?? '';
  return host === 'localhost' || host === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}
