/**
 * Test registries: Debian's `docker-registry` (distribution 2.8) on 127.0.0.1 with its own config
 * and filesystem storage in a temp dir, stopped by PID; optionally behind token auth (a small
 * JWT token server signing with a throwaway RS256 key/cert) or htpasswd basic auth (bcrypt); and a
 * fault-injecting HTTP proxy to put in front of one.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { createSign, randomUUID } from 'node:crypto';
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createNetServer, type Socket } from 'node:net';
import { access, constants, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);
const REGISTRY_BIN = '/usr/bin/docker-registry';

/** A running test registry. */
export interface TestRegistry {
  /** `127.0.0.1:PORT`, the registry part of references. */
  readonly host: string;
  readonly port: number;
  /** `http://127.0.0.1:PORT`. */
  readonly url: string;
  readonly pid: number;
  /** Temp dir with config.yml, data/, registry.log (and auth files). */
  readonly dir: string;
  /** The token server, for `auth: 'token'`. */
  readonly tokens?: TokenServer;
  /** Stops the registry (and token server) by PID and removes the temp dir. */
  stop(): Promise<void>;
}

/** Options of `startRegistry`. */
export interface RegistryOptions {
  /** `token`: Bearer tokens from a local token server; `basic`: htpasswd (bcrypt). Default: none. */
  readonly auth?: 'token' | 'basic';
  /** Users and passwords accepted (default `{ alice: 'wonderland' }`). */
  readonly users?: Readonly<Record<string, string>>;
  /** Token auth only: anonymous callers get pull tokens (default false: anonymous is refused). */
  readonly anonymousPull?: boolean;
}

/** Thrown when /usr/bin/docker-registry is missing: tests that need it fail, they do not skip. */
export class RegistryMissingError extends Error {
  constructor() {
    super(`${REGISTRY_BIN} is not installed; the registry tests need it.\nInstall it (Debian, as root): apt-get install -y docker-registry`);
    this.name = 'RegistryMissingError';
  }
}

/** A free TCP port on 127.0.0.1 (closed again before it is returned). */
export async function freePort(): Promise<number> {
  const srv = createNetServer();
  await new Promise<void>((resolve, reject) => srv.once('error', reject).listen(0, '127.0.0.1', resolve));
  const addr = srv.address();
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  if (addr === null || typeof addr === 'string') throw new Error('no port');
  return addr.port;
}

function listen(server: Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const a = server.address();
      resolve(typeof a === 'object' && a !== null ? a.port : 0);
    });
  });
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

// --- token server ---------------------------------------------------------------------------

/** A token server for distribution's `auth.token`: Basic-authenticated GET /token → RS256 JWT. */
export interface TokenServer {
  readonly realm: string;
  readonly service: string;
  readonly issuer: string;
  /** Path of the PEM certificate the registry trusts (`rootcertbundle`). */
  readonly certPath: string;
  /** Every token request seen (scopes asked, user or undefined). */
  readonly requests: { scopes: string[]; user?: string }[];
  /** Repositories whose push access is refused (tests of 401/403 paths). */
  readonly readOnly: Set<string>;
  close(): Promise<void>;
}

const b64url = (data: Buffer | string): string => Buffer.from(data).toString('base64url');

async function startTokenServer(dir: string, users: Readonly<Record<string, string>>, anonymousPull: boolean): Promise<TokenServer> {
  const keyPath = join(dir, 'token.key');
  const certPath = join(dir, 'token.crt');
  await execFileP('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyPath, '-out', certPath, '-days', '2', '-subj', '/CN=buildcache-test-token']);
  const key = await readFile(keyPath, 'utf8');
  const certDer = Buffer.from((await readFile(certPath, 'utf8')).replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
  const service = 'buildcache-test-registry';
  const issuer = 'buildcache-test-issuer';
  const requests: { scopes: string[]; user?: string }[] = [];
  const readOnly = new Set<string>();

  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    let user: string | undefined;
    const auth = req.headers.authorization;
    if (auth?.startsWith('Basic ')) {
      const text = Buffer.from(auth.slice(6), 'base64').toString();
      const colon = text.indexOf(':');
      const name = text.slice(0, colon);
      if (colon < 0 || users[name] !== text.slice(colon + 1)) {
        res.writeHead(401, { 'content-type': 'application/json' }).end('{"details":"bad credentials"}');
        return;
      }
      user = name;
    }
    const scopes = url.searchParams.getAll('scope').flatMap((s) => s.split(' ')).filter(Boolean);
    requests.push({ scopes, ...(user ? { user } : {}) });
    if (url.pathname !== '/token' || url.searchParams.get('service') !== service) {
      res.writeHead(400).end();
      return;
    }
    if (user === undefined && !anonymousPull) {
      res.writeHead(401, { 'content-type': 'application/json' }).end('{"details":"authentication required"}');
      return;
    }
    const access = scopes.flatMap((s) => {
      const [type, name, actions] = s.split(':');
      if (type !== 'repository' || !name || !actions) return [];
      const granted = actions.split(',').filter((a) => (a === 'pull' || (user !== undefined && !readOnly.has(name))));
      return granted.length ? [{ type, name, actions: granted }] : [];
    });
    const now = Math.floor(Date.now() / 1000);
    const header = b64url(JSON.stringify({ typ: 'JWT', alg: 'RS256', x5c: [certDer.toString('base64')] }));
    const claims = b64url(JSON.stringify({ iss: issuer, sub: user ?? '', aud: service, exp: now + 300, nbf: now - 10, iat: now, jti: randomUUID(), access }));
    const signature = createSign('RSA-SHA256').update(`${header}.${claims}`).sign(key);
    const token = `${header}.${claims}.${b64url(signature)}`;
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token, access_token: token, expires_in: 300, issued_at: new Date().toISOString() }));
  });
  const port = await listen(server);
  return { realm: `http://127.0.0.1:${port}/token`, service, issuer, certPath, requests, readOnly, close: () => closeServer(server) };
}

/** A bcrypt htpasswd line (`user:$2b$…`), via libcrypt (perl's crypt); distribution ignores other hash kinds. */
async function bcryptLine(user: string, password: string): Promise<string> {
  const salt = Buffer.from(randomUUID().replace(/-/g, ''), 'hex').toString('base64').replace(/[^A-Za-z0-9]/g, '.').slice(0, 22);
  const { stdout } = await execFileP('perl', ['-e', 'print crypt($ARGV[0], $ARGV[1])', password, `$2b$05$${salt}`]);
  if (!stdout.startsWith('$2b$')) throw new Error(`this libcrypt cannot make bcrypt hashes (got ${JSON.stringify(stdout)})`);
  return `${user}:${stdout}`;
}

// --- registry -------------------------------------------------------------------------------

function configYaml(dir: string, port: number, auth: string[]): string {
  return [
    'version: 0.1',
    'log:',
    '  level: info',
    '  accesslog: {disabled: true}',
    'storage:',
    `  filesystem: {rootdirectory: ${dir}/data}`,
    '  delete: {enabled: true}',
    '  maintenance: {uploadpurging: {enabled: false}}',
    'http:',
    `  addr: 127.0.0.1:${port}`,
    `  secret: ${randomUUID()}`,
    ...auth,
    '',
  ].join('\n');
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

async function answers(url: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = httpRequest(url, { method: 'GET', timeout: 1000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200 || res.statusCode === 401);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => req.destroy());
    req.end();
  });
}

/** Starts a registry (and its token server) on a free loopback port; waits until `/v2/` answers. */
export async function startRegistry(options: RegistryOptions = {}): Promise<TestRegistry> {
  try {
    await access(REGISTRY_BIN, constants.X_OK);
  } catch {
    throw new RegistryMissingError();
  }
  const dir = await mkdtemp(join(tmpdir(), 'bc-registry-'));
  const users = options.users ?? { alice: 'wonderland' };
  let tokens: TokenServer | undefined;
  const auth: string[] = [];
  if (options.auth === 'token') {
    tokens = await startTokenServer(dir, users, options.anonymousPull ?? false);
    auth.push('auth:', '  token:', `    realm: ${tokens.realm}`, `    service: ${tokens.service}`, `    issuer: ${tokens.issuer}`, `    rootcertbundle: ${tokens.certPath}`);
  } else if (options.auth === 'basic') {
    const lines = await Promise.all(Object.entries(users).map(([u, p]) => bcryptLine(u, p)));
    await writeFile(join(dir, 'htpasswd'), lines.join('\n') + '\n', { mode: 0o600 });
    auth.push('auth:', '  htpasswd:', '    realm: buildcache-test', `    path: ${join(dir, 'htpasswd')}`);
  }
  const usePdeathsig = await access('/usr/bin/setpriv', constants.X_OK).then(() => true, () => false);
  for (let tries = 0; ; tries++) {
    const port = await freePort();
    const config = join(dir, 'config.yml');
    await writeFile(config, configYaml(dir, port, auth));
    const log = await open(join(dir, 'registry.log'), 'a');
    // --pdeathsig: the registry gets SIGTERM if this test process dies without stopping it
    const [cmd, args] = usePdeathsig
      ? ['/usr/bin/setpriv', ['--pdeathsig', 'TERM', REGISTRY_BIN, 'serve', config]]
      : [REGISTRY_BIN, ['serve', config]];
    const child = spawn(cmd, args as string[], { stdio: ['ignore', log.fd, log.fd] });
    await log.close();
    const pid = child.pid;
    if (pid === undefined) throw new Error(`could not start ${REGISTRY_BIN}`);
    const url = `http://127.0.0.1:${port}`;
    let up = false;
    for (let i = 0; i < 100 && child.exitCode === null; i++) {
      if ((up = await answers(`${url}/v2/`))) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    if (!up) {
      child.kill('SIGKILL');
      await exited(child);
      if (tries < 3) continue; // the port was taken in between: try another
      const text = await readFile(join(dir, 'registry.log'), 'utf8').catch(() => '');
      await tokens?.close();
      await rm(dir, { recursive: true, force: true });
      throw new Error(`docker-registry did not start:\n${text.slice(-2000)}`);
    }
    return {
      host: `127.0.0.1:${port}`,
      port,
      url,
      pid,
      dir,
      ...(tokens ? { tokens } : {}),
      stop: async () => {
        if (child.exitCode === null && child.signalCode === null) {
          process.kill(pid, 'SIGTERM');
          const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
          await exited(child);
          clearTimeout(timer);
        }
        await tokens?.close();
        await rm(dir, { recursive: true, force: true });
      },
    };
  }
}

// --- fault proxy ----------------------------------------------------------------------------

/** What the proxy does to a request that matches a rule. */
export type Fault =
  /** Answer this status (with an empty body) without asking the registry. */
  | { readonly kind: 'status'; readonly status: number }
  /** Forward, send headers and the first `afterBytes` body bytes, then cut the connection. */
  | { readonly kind: 'drop'; readonly afterBytes: number }
  /** Forward, but flip one byte of the body (same length: a wrong digest). */
  | { readonly kind: 'corrupt' }
  /** Cut the connection before any answer. */
  | { readonly kind: 'reset' };

/** A fault for requests with `method` (any when absent) whose path matches `path`, the next `times` times (default 1). */
export interface FaultRule {
  readonly method?: string;
  readonly path?: RegExp;
  readonly times?: number;
  readonly fault: Fault;
}

/** A loopback HTTP proxy in front of a registry, injecting faults on demand. */
export interface FaultProxy {
  /** `127.0.0.1:PORT`: use as the registry part of references. */
  readonly host: string;
  readonly url: string;
  /** Every request seen: method, path, the status answered (0 for a cut connection) and the Range header. */
  readonly log: { method: string; path: string; status: number; range?: string }[];
  /** Adds a rule; rules are tried in order. */
  inject(rule: FaultRule): void;
  /** Removes all rules that are left. */
  clear(): void;
  /** Stops listening and cuts open connections (the registry then looks down). */
  stop(): Promise<void>;
}

/** Starts a fault proxy to `target` (`http://127.0.0.1:PORT`); Host is passed through so Locations point at the proxy. */
export async function startFaultProxy(target: string): Promise<FaultProxy> {
  const upstream = new URL(target);
  const rules: { method?: string; path?: RegExp; left: number; fault: Fault }[] = [];
  const log: FaultProxy['log'] = [];
  const sockets = new Set<Socket>();

  const take = (req: IncomingMessage): Fault | undefined => {
    const i = rules.findIndex((r) => (r.method === undefined || r.method === req.method) && (r.path === undefined || r.path.test(req.url ?? '')));
    const rule = rules[i];
    if (rule === undefined) return undefined;
    if (--rule.left <= 0) rules.splice(i, 1);
    return rule.fault;
  };

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const entry: FaultProxy['log'][number] = { method: req.method ?? '', path: req.url ?? '', status: 0, ...(req.headers.range ? { range: req.headers.range } : {}) };
    log.push(entry);
    const fault = take(req);
    if (fault?.kind === 'reset') {
      req.socket.destroy();
      return;
    }
    if (fault?.kind === 'status') {
      req.resume();
      entry.status = fault.status;
      res.writeHead(fault.status, { 'content-length': '0' }).end();
      return;
    }
    const up = httpRequest({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers, agent: false }, (ures) => {
      entry.status = ures.statusCode ?? 0;
      res.writeHead(ures.statusCode ?? 502, ures.headers);
      let sent = 0;
      let flipped = false;
      ures.on('data', (chunk: Buffer) => {
        if (fault?.kind === 'drop' && sent + chunk.length > fault.afterBytes) {
          const n = fault.afterBytes - sent;
          if (n > 0) res.write(chunk.subarray(0, n));
          entry.status = 0;
          ures.destroy();
          // let the partial bytes leave, then cut the connection
          setImmediate(() => res.socket?.destroy());
          return;
        }
        if (fault?.kind === 'corrupt' && !flipped && chunk.length > 0) {
          chunk = Buffer.from(chunk);
          chunk[chunk.length >> 1] = (chunk[chunk.length >> 1] ?? 0) ^ 0xff;
          flipped = true;
        }
        sent += chunk.length;
        res.write(chunk);
      });
      ures.on('end', () => res.end());
      ures.on('error', () => res.socket?.destroy());
    });
    up.on('error', () => {
      entry.status = 502;
      if (!res.headersSent) res.writeHead(502).end();
      else res.socket?.destroy();
    });
    req.pipe(up);
  };

  const server = createServer(handle);
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  const port = await listen(server);
  return {
    host: `127.0.0.1:${port}`,
    url: `http://127.0.0.1:${port}`,
    log,
    inject: (rule) => {
      rules.push({ ...(rule.method ? { method: rule.method } : {}), ...(rule.path ? { path: rule.path } : {}), left: rule.times ?? 1, fault: rule.fault });
    },
    clear: () => {
      rules.length = 0;
    },
    stop: async () => {
      for (const s of sockets) s.destroy();
      await closeServer(server);
    },
  };
}
