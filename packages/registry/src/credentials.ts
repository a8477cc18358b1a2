/**
 * Registry credentials from Docker's `config.json` (directory `$DOCKER_CONFIG`, else `~/.docker`):
 * a credential helper for the host (`credHelpers`, then `credsStore`) wins over `auths.<host>`
 * (`auth` = base64 `user:password`, or `username`/`password`; `registrytoken` is sent as a Bearer token).
 */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { ErrInvalidArgument } from '@buildcache/errdefs';
import { DOCKER_HUB } from './reference.js';

/** What the client may present to a registry. */
export interface Credentials {
  readonly username?: string;
  readonly password?: string;
  /** A registry token sent as is (`Authorization: Bearer`). */
  readonly registryToken?: string;
}

/** Looks up credentials for a registry host (as in the reference, e.g. `127.0.0.1:5000`, `docker.io`). */
export type CredentialsProvider = (registry: string) => Promise<Credentials | undefined>;

interface AuthEntry {
  auth?: string;
  username?: string;
  password?: string;
  registrytoken?: string;
}

interface DockerConfig {
  auths?: Record<string, AuthEntry>;
  credsStore?: string;
  credHelpers?: Record<string, string>;
}

/** `https://index.docker.io/v1/` → `docker.io`, `http://host:5000/v2/` → `host:5000`. */
function normalizeKey(key: string): string {
  const host = key.replace(/^[a-z]+:\/\//i, '').split('/')[0] ?? '';
  return host === 'index.docker.io' || host === 'registry-1.docker.io' ? DOCKER_HUB : host;
}

function fromEntry(entry: AuthEntry, path: string, registry: string): Credentials | undefined {
  if (entry.registrytoken) return { registryToken: entry.registrytoken };
  if (entry.auth) {
    const text = Buffer.from(entry.auth, 'base64').toString('utf8').replace(/\0+$/, '');
    const colon = text.indexOf(':');
    if (colon < 0) throw new ErrInvalidArgument(`${path}: auths["${registry}"].auth is not base64 of user:password`, { details: { path, reference: registry } });
    return { username: text.slice(0, colon), password: text.slice(colon + 1) };
  }
  if (entry.username !== undefined) return { username: entry.username, password: entry.password ?? '' };
  return undefined;
}

function runHelper(helper: string, registry: string): Promise<Credentials | undefined> {
  return new Promise((resolve, reject) => {
    const child = execFile(`docker-credential-${helper}`, ['get'], { timeout: 30_000 }, (err, stdout) => {
      if (err) {
        // helpers answer "credentials not found" with a non-zero exit: treat as anonymous
        if (/not found/i.test(String(stdout)) || /not found/i.test(err.message)) resolve(undefined);
        else reject(new ErrInvalidArgument(`credential helper docker-credential-${helper} failed for ${registry}: ${err.message}`, { cause: err, details: { reference: registry } }));
        return;
      }
      try {
        const out = JSON.parse(stdout) as { Username?: string; Secret?: string };
        resolve(out.Username === '<token>' ? { registryToken: out.Secret ?? '' } : { username: out.Username ?? '', password: out.Secret ?? '' });
      } catch (e) {
        reject(new ErrInvalidArgument(`credential helper docker-credential-${helper} printed no JSON for ${registry}`, { cause: e, details: { reference: registry } }));
      }
    });
    child.stdin?.end(registry === DOCKER_HUB ? 'https://index.docker.io/v1/' : registry);
  });
}

/** A provider reading `config.json` in `dir` (default `$DOCKER_CONFIG` or `~/.docker`) at each call; a missing file means anonymous. */
export function dockerConfigCredentials(dir?: string): CredentialsProvider {
  return async (registry) => {
    const path = join(dir ?? process.env.DOCKER_CONFIG ?? join(homedir(), '.docker'), 'config.json');
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch {
      return undefined;
    }
    let config: DockerConfig;
    try {
      config = JSON.parse(text) as DockerConfig;
    } catch (err) {
      throw new ErrInvalidArgument(`${path} is not valid JSON`, { cause: err, details: { path } });
    }
    const helper = Object.entries(config.credHelpers ?? {}).find(([k]) => normalizeKey(k) === registry)?.[1] ?? config.credsStore;
    if (helper) {
      const found = await runHelper(helper, registry);
      if (found) return found;
    }
    for (const [key, entry] of Object.entries(config.auths ?? {})) {
      if (normalizeKey(key) === registry) return fromEntry(entry, path, registry);
    }
    return undefined;
  };
}
