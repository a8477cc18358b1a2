/**
 * Registry authentication: remembers each registry's `WWW-Authenticate` challenge, answers Basic
 * challenges with the host's credentials and Bearer challenges with a token from the realm
 * (`GET realm?service=&scope=`), cached per (registry, scope set) until it expires.
 */
import type { Logger } from 'pino';
import { ErrUnauthorized } from '@buildcache/errdefs';
import type { Credentials, CredentialsProvider } from './credentials.js';

/** A parsed `WWW-Authenticate` header. */
export interface Challenge {
  readonly scheme: 'basic' | 'bearer';
  readonly params: Readonly<Record<string, string>>;
}

/** Parses `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`; `undefined` for other schemes. */
export function parseChallenge(header: string): Challenge | undefined {
  const m = /^\s*(\w+)\s*(.*)$/s.exec(header);
  const scheme = m?.[1]?.toLowerCase();
  if (scheme !== 'basic' && scheme !== 'bearer') return undefined;
  const params: Record<string, string> = {};
  for (const p of (m?.[2] ?? '').matchAll(/([\w-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/g)) {
    if (p[1]) params[p[1].toLowerCase()] = (p[2] ?? p[3] ?? '').replace(/\\(.)/g, '$1');
  }
  return { scheme, params };
}

/** The token endpoint's answer. */
export interface TokenResponse {
  readonly token?: string;
  readonly access_token?: string;
  readonly expires_in?: number;
  readonly issued_at?: string;
}

/** Fetches a token from a realm URL (with retries), presenting `credentials` as Basic auth if any. */
export type TokenFetcher = (url: URL, credentials: Credentials | undefined, what: string) => Promise<TokenResponse>;

/** `repository:<repo>:pull` or `…:pull,push`: the scope a request on `repository` needs. */
export function repositoryScope(repository: string, push = false): string {
  return `repository:${repository}:${push ? 'pull,push' : 'pull'}`;
}

function basic(c: Credentials): string {
  return `Basic ${Buffer.from(`${c.username ?? ''}:${c.password ?? ''}`).toString('base64')}`;
}

/** Holds challenges and tokens for one client; safe for concurrent requests (one token fetch per key). */
export class Authorizer {
  private readonly challenges = new Map<string, Challenge>();
  private readonly tokens = new Map<string, { value: string; expires: number }>();
  private readonly pending = new Map<string, Promise<string>>();
  /** Number of tokens fetched from realms (tests read it to check the cache). */
  tokenFetches = 0;

  constructor(
    private readonly credentials: CredentialsProvider,
    private readonly fetchToken: TokenFetcher,
    private readonly logger: Logger,
  ) {}

  /** The `Authorization` value for a request needing `scopes`, or `undefined` while no challenge was seen. */
  async header(registry: string, scopes: readonly string[], what: string): Promise<string | undefined> {
    const ch = this.challenges.get(registry);
    if (ch === undefined) return undefined;
    const creds = await this.credentials(registry);
    if (ch.scheme === 'basic') return creds?.username !== undefined ? basic(creds) : undefined;
    if (creds?.registryToken) return `Bearer ${creds.registryToken}`;
    const key = `${registry} ${[...scopes].sort().join(' ')}`;
    const cached = this.tokens.get(key);
    if (cached && cached.expires > Date.now()) return `Bearer ${cached.value}`;
    let p = this.pending.get(key);
    if (p === undefined) {
      p = this.newToken(key, ch, scopes, creds, what).finally(() => this.pending.delete(key));
      this.pending.set(key, p);
    }
    return `Bearer ${await p}`;
  }

  /**
   * Records a 401's challenge and forgets the token that was refused. True when a retry can carry
   * new authorization (a Bearer realm, or Basic with credentials at hand).
   */
  async challenged(registry: string, scopes: readonly string[], header: string | undefined): Promise<boolean> {
    const ch = header === undefined ? undefined : parseChallenge(header);
    if (ch === undefined || (ch.scheme === 'bearer' && !ch.params.realm)) return false;
    this.challenges.set(registry, ch);
    this.tokens.delete(`${registry} ${[...scopes].sort().join(' ')}`);
    if (ch.scheme === 'basic') return (await this.credentials(registry))?.username !== undefined;
    return true;
  }

  private async newToken(key: string, ch: Challenge, scopes: readonly string[], creds: Credentials | undefined, what: string): Promise<string> {
    const url = new URL(ch.params.realm ?? '');
    if (ch.params.service) url.searchParams.set('service', ch.params.service);
    const wanted = new Set([...scopes, ...(ch.params.scope ? ch.params.scope.split(' ') : [])]);
    for (const s of wanted) url.searchParams.append('scope', s);
    const started = Date.now();
    const res = await this.fetchToken(url, creds?.username !== undefined ? creds : undefined, what);
    this.tokenFetches++;
    const value = res.token ?? res.access_token;
    if (!value) throw new ErrUnauthorized(`${what}: the token service ${url.origin}${url.pathname} returned no token`, { details: { reference: what } });
    const lifetime = Math.max(60, res.expires_in ?? 60) * 1000;
    const issued = res.issued_at ? Date.parse(res.issued_at) : NaN;
    // refresh 10 s early; a bad issued_at (clock skew) falls back to our own clock
    const base = Number.isFinite(issued) && Math.abs(issued - started) < 300_000 ? issued : started;
    this.tokens.set(key, { value, expires: base + lifetime - 10_000 });
    this.logger.debug({ realm: url.origin, scopes: [...wanted] }, 'registry token fetched');
    return value;
  }
}
