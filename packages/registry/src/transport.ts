/**
 * HTTP for the registry client on undici: authorization (with one retry after a 401 challenge),
 * redirects for GET/HEAD (no `Authorization` to another origin), retries with backoff for
 * idempotent requests on 5xx/429/connection errors, and registry errors turned into typed errors.
 */
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import pLimit, { type LimitFunction } from 'p-limit';
import type { Logger } from 'pino';
import { Agent, request, type Dispatcher } from 'undici';
import {
  ErrDigestMismatch, ErrInvalidArgument, ErrNotFound, ErrOutOfRange, ErrPermissionDenied,
  ErrRegistryResponse, ErrUnauthorized, ErrUnavailable, type BuildcacheError,
} from '@buildcache/errdefs';
import { Authorizer, type TokenResponse } from './auth.js';
import type { Credentials, CredentialsProvider } from './credentials.js';
import { apiHost, isLoopback } from './reference.js';
import { registryRetries } from './metrics.js';

type Method = 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/** One request as the client describes it. */
export interface SendOptions {
  readonly method: Method;
  readonly url: URL;
  /** The registry (as in the reference) whose credentials and tokens apply. */
  readonly registry: string;
  readonly scopes: readonly string[];
  readonly headers?: Readonly<Record<string, string>>;
  /** A Buffer may be sent again (after a 401 or for a retry); a stream only once. */
  readonly body?: Uint8Array | Readable;
  /** Safe to repeat: retried on 5xx, 429 and connection errors. */
  readonly idempotent: boolean;
  /** Statuses the caller handles; any other becomes a typed error. */
  readonly expect: readonly number[];
  /** For messages: what was asked for (`blob`, `manifest`, `upload`) and the reference text. */
  readonly kind: string;
  readonly what: string;
  readonly digest?: string;
  readonly signal?: AbortSignal;
}

/** Tunables of the transport (see `RegistryClientOptions`). */
export interface TransportOptions {
  readonly insecure: readonly string[];
  readonly retries: number;
  readonly retryDelayMs: number;
  readonly concurrency: number;
  readonly timeoutMs: number;
  readonly userAgent: string;
  readonly credentials: CredentialsProvider;
  readonly logger: Logger;
}

const RETRYABLE_CODES = new Set([
  'ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'EAI_AGAIN', 'ENETUNREACH', 'EHOSTUNREACH',
  'UND_ERR_SOCKET', 'UND_ERR_CLOSED', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT',
]);

/** True for connection-level failures worth another try (reset, refused, timeout, socket closed). */
export function isRetryableNetworkError(err: unknown): boolean {
  for (let e: unknown = err; e instanceof Error; e = e.cause) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && RETRYABLE_CODES.has(code)) return true;
  }
  return false;
}

/** First value of a response header. */
export function responseHeader(res: Dispatcher.ResponseData, name: string): string | undefined {
  const v = res.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

const isReplayable = (body: SendOptions['body']): boolean => body === undefined || body instanceof Uint8Array;

/** The HTTP layer of one `RegistryClient`. */
export class Transport {
  readonly auth: Authorizer;
  private readonly agent: Agent;
  private readonly limit: LimitFunction;

  constructor(private readonly opts: TransportOptions) {
    this.agent = new Agent({ connections: opts.concurrency, headersTimeout: opts.timeoutMs, bodyTimeout: opts.timeoutMs });
    this.limit = pLimit(opts.concurrency);
    this.auth = new Authorizer(opts.credentials, (url, creds, what) => this.token(url, creds, what), opts.logger);
  }

  /** `https://host/v2/<path>`, or `http://` for loopback and `insecure` registries. */
  url(registry: string, path: string): URL {
    const scheme = isLoopback(registry) || this.opts.insecure.includes(registry) ? 'http' : 'https';
    return new URL(`${scheme}://${apiHost(registry)}/v2/${path}`);
  }

  /** Delay before retry `attempt` (0-based): exponential with jitter, capped at 10 s or the server's `Retry-After`. */
  backoff(attempt: number, retryAfter?: string): Promise<void> {
    const server = retryAfter !== undefined && /^\d+$/.test(retryAfter) ? Number(retryAfter) * 1000 : undefined;
    const ms = server ?? this.opts.retryDelayMs * 2 ** attempt * (0.5 + Math.random() / 2);
    return sleep(Math.min(ms, 10_000));
  }

  get retries(): number {
    return this.opts.retries;
  }

  /** Sends with retries (idempotent requests only); resolves when headers of an expected status arrive. */
  async send(o: SendOptions): Promise<Dispatcher.ResponseData> {
    for (let attempt = 0; ; attempt++) {
      let res: Dispatcher.ResponseData;
      try {
        res = await this.limit(() => this.once(o));
      } catch (err) {
        if (o.idempotent && attempt < this.opts.retries && isRetryableNetworkError(err)) {
          this.opts.logger.warn({ err, url: o.url.href, attempt }, 'registry request failed; retrying');
          registryRetries.inc();
          await this.backoff(attempt);
          continue;
        }
        throw this.wrap(err, o);
      }
      if (o.expect.includes(res.statusCode)) return res;
      const status = res.statusCode;
      if ((status >= 500 || status === 429) && o.idempotent && attempt < this.opts.retries) {
        await res.body.dump();
        this.opts.logger.warn({ status, url: o.url.href, attempt }, 'registry answered an error; retrying');
        registryRetries.inc();
        await this.backoff(attempt, responseHeader(res, 'retry-after'));
        continue;
      }
      throw await this.toError(res, o);
    }
  }

  /** Wraps a thrown value: typed errors pass, network failures become `ErrUnavailable`. */
  wrap(err: unknown, o: Pick<SendOptions, 'kind' | 'what' | 'digest'>): BuildcacheError | unknown {
    if (err instanceof Error && 'code' in err && typeof err.code === 'string' && err.code.startsWith('ERR_')) return err;
    if (err instanceof Error && err.name === 'AbortError') return err;
    return new ErrUnavailable(`${o.kind} ${o.what}: registry unreachable (${err instanceof Error ? err.message : String(err)})`, {
      cause: err,
      details: { reference: o.what, ...(o.digest ? { digest: o.digest } : {}) },
    });
  }

  private async once(o: SendOptions): Promise<Dispatcher.ResponseData> {
    let url = o.url;
    let authRetried = false;
    for (let hops = 0; ; ) {
      const sameOrigin = url.origin === o.url.origin;
      const authorization = sameOrigin ? await this.auth.header(o.registry, o.scopes, o.what) : undefined;
      const res = await request(url, {
        method: o.method,
        dispatcher: this.agent,
        headers: { 'user-agent': this.opts.userAgent, ...o.headers, ...(authorization ? { authorization } : {}) },
        body: o.body ?? null,
        ...(o.signal ? { signal: o.signal } : {}),
      });
      const status = res.statusCode;
      if (status === 401 && sameOrigin && !authRetried) {
        await res.body.dump();
        authRetried = true;
        if (await this.auth.challenged(o.registry, o.scopes, responseHeader(res, 'www-authenticate'))) {
          if (isReplayable(o.body)) continue;
          throw new ErrUnavailable(`${o.kind} ${o.what}: authorization renewed during a streamed request; send it again`, { details: { reference: o.what } });
        }
        throw this.unauthorized(o, status);
      }
      if ([301, 302, 303, 307, 308].includes(status) && (o.method === 'GET' || o.method === 'HEAD') && hops < 5) {
        const location = responseHeader(res, 'location');
        await res.body.dump();
        if (location === undefined) throw new ErrRegistryResponse(`${o.kind} ${o.what}: redirect without Location`, { details: { reference: o.what, status } });
        url = new URL(location, url);
        hops++;
        continue;
      }
      return res;
    }
  }

  private unauthorized(o: SendOptions, status: number): ErrUnauthorized {
    return new ErrUnauthorized(
      `${o.kind} ${o.what}: the registry refused access (${status}); log in (credentials in $DOCKER_CONFIG/config.json or ~/.docker/config.json) or check the repository's permissions`,
      { details: { reference: o.what, status, ...(o.digest ? { digest: o.digest } : {}) } },
    );
  }

  /** Reads an error response and maps it to a typed error naming the reference (and digest). */
  private async toError(res: Dispatcher.ResponseData, o: SendOptions): Promise<Error> {
    const status = res.statusCode;
    let text = '';
    if (o.method !== 'HEAD') text = (await res.body.text().catch(() => '')).slice(0, 4096);
    else await res.body.dump();
    let code: string | undefined;
    let message: string | undefined;
    try {
      const first = (JSON.parse(text) as { errors?: { code?: string; message?: string }[] }).errors?.[0];
      code = first?.code;
      message = first?.message;
    } catch {
      // not JSON: the status decides
    }
    const why = code ? ` (${code}${message ? `: ${message}` : ''})` : '';
    const details = { reference: o.what, status, ...(o.digest ? { digest: o.digest } : {}), ...(code ? { registryCode: code } : {}) };
    if (status === 401) return this.unauthorized(o, status);
    if (status === 403) return new ErrPermissionDenied(`${o.kind} ${o.what}: access denied${why}`, { details });
    if (status === 404) return new ErrNotFound(`${o.kind} ${o.what}: not found${why}`, { details });
    if (status === 416) return new ErrOutOfRange(`${o.kind} ${o.what}: range not satisfiable${why}`, { details });
    if (status === 429 || status >= 500) return new ErrUnavailable(`${o.kind} ${o.what}: registry unavailable (HTTP ${status})${why}`, { details });
    if (code === 'DIGEST_INVALID' || code === 'SIZE_INVALID') return new ErrDigestMismatch(`${o.kind} ${o.what}: the registry rejected the content's digest or size${why}`, { details });
    if (status >= 400 && status < 500) return new ErrInvalidArgument(`${o.kind} ${o.what}: the registry rejected the request (HTTP ${status})${why}`, { details });
    return new ErrRegistryResponse(`${o.kind} ${o.what}: unexpected HTTP ${status}${why}`, { details });
  }

  private async token(url: URL, creds: Credentials | undefined, what: string): Promise<TokenResponse> {
    const headers: Record<string, string> = {};
    if (creds) headers.authorization = `Basic ${Buffer.from(`${creds.username ?? ''}:${creds.password ?? ''}`).toString('base64')}`;
    const o = { kind: 'token for', what, idempotent: true } as const;
    for (let attempt = 0; ; attempt++) {
      let res: Dispatcher.ResponseData;
      try {
        res = await request(url, { method: 'GET', dispatcher: this.agent, headers: { 'user-agent': this.opts.userAgent, ...headers } });
      } catch (err) {
        if (attempt < this.opts.retries && isRetryableNetworkError(err)) {
          await this.backoff(attempt);
          continue;
        }
        throw this.wrap(err, o);
      }
      if (res.statusCode === 200) {
        try {
          return (await res.body.json()) as TokenResponse;
        } catch (err) {
          throw new ErrRegistryResponse(`token for ${what}: ${url.origin}${url.pathname} answered no JSON`, { cause: err, details: { reference: what } });
        }
      }
      await res.body.dump();
      if ((res.statusCode >= 500 || res.statusCode === 429) && attempt < this.opts.retries) {
        await this.backoff(attempt, responseHeader(res, 'retry-after'));
        continue;
      }
      if (res.statusCode === 401 || res.statusCode === 403) {
        throw new ErrUnauthorized(
          `${what}: the token service ${url.origin}${url.pathname} refused ${creds ? `the credentials of ${creds.username ?? ''}` : 'anonymous access'} (HTTP ${res.statusCode}); log in with credentials in $DOCKER_CONFIG/config.json or ~/.docker/config.json`,
          { details: { reference: what, status: res.statusCode } },
        );
      }
      throw new ErrUnavailable(`token for ${what}: ${url.origin}${url.pathname} answered HTTP ${res.statusCode}`, { details: { reference: what, status: res.statusCode } });
    }
  }

  /** Closes pooled connections. */
  close(): Promise<void> {
    return this.agent.close();
  }
}
