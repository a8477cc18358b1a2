/**
 * A fault-injecting HTTP proxy for registry tests: put in front of a test registry, it answers
 * chosen statuses, cuts connections mid-body, corrupts bodies, ignores Range, redirects, or is
 * stopped; it logs every request (and the most seen in flight at once).
 */
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

/** Listens on a free port of 127.0.0.1; resolves the port. */
export function listenLoopback(server: Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const a = server.address();
      resolve(typeof a === 'object' && a !== null ? a.port : 0);
    });
  });
}

/** Closes a server and cuts its open connections. */
export function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

/** What the proxy does to a request that matches a rule. */
export type Fault =
  /** Answer this status (with an empty body and `headers`) without asking the registry. */
  | { readonly kind: 'status'; readonly status: number; readonly headers?: Readonly<Record<string, string>> }
  /** Forward, send headers and the first `afterBytes` body bytes, then cut the connection. */
  | { readonly kind: 'drop'; readonly afterBytes: number }
  /** Forward, but flip one byte of the body (same length: a wrong digest). */
  | { readonly kind: 'corrupt' }
  /** Cut the connection before any answer. */
  | { readonly kind: 'reset' }
  /** Forward without the Range header (a server that ignores ranges answers 200 with the whole blob). */
  | { readonly kind: 'ignore-range' }
  /** Answer 307 to the same path on `origin` (`http://127.0.0.1:PORT`), like a registry sending blobs to storage. */
  | { readonly kind: 'redirect'; readonly origin: string };

/** A fault for requests with `method` (any when absent) whose path matches `path`, the next `times` times (default 1), after letting `skip` of them through. */
export interface FaultRule {
  readonly method?: string;
  readonly path?: RegExp;
  readonly times?: number;
  readonly skip?: number;
  readonly fault: Fault;
}

/** A loopback HTTP proxy in front of a registry, injecting faults on demand. */
export interface FaultProxy {
  /** `127.0.0.1:PORT`: use as the registry part of references. */
  readonly host: string;
  readonly url: string;
  /** Every request seen: method, path, the status answered (0 for a cut connection), the Range header, whether it carried Authorization. */
  readonly log: { method: string; path: string; status: number; range?: string; authorized: boolean }[];
  /** Most requests seen in flight at once (answered or cut = done). */
  readonly maxInFlight: number;
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
  const rules: { method?: string; path?: RegExp; left: number; skip: number; fault: Fault }[] = [];
  const log: FaultProxy['log'] = [];
  const sockets = new Set<Socket>();
  let inFlight = 0;
  let maxInFlight = 0;

  const take = (req: IncomingMessage): Fault | undefined => {
    const i = rules.findIndex((r) => (r.method === undefined || r.method === req.method) && (r.path === undefined || r.path.test(req.url ?? '')));
    const rule = rules[i];
    if (rule === undefined) return undefined;
    if (rule.skip > 0) {
      rule.skip--;
      return undefined;
    }
    if (--rule.left <= 0) rules.splice(i, 1);
    return rule.fault;
  };

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const entry: FaultProxy['log'][number] = {
      method: req.method ?? '',
      path: req.url ?? '',
      status: 0,
      ...(req.headers.range ? { range: req.headers.range } : {}),
      authorized: req.headers.authorization !== undefined,
    };
    log.push(entry);
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    res.once('close', () => inFlight--);
    const fault = take(req);
    if (fault?.kind === 'ignore-range') delete req.headers.range;
    if (fault?.kind === 'reset') {
      req.socket.destroy();
      return;
    }
    if (fault?.kind === 'redirect') {
      req.resume();
      entry.status = 307;
      res.writeHead(307, { location: `${fault.origin}${req.url ?? '/'}`, 'content-length': '0' }).end();
      return;
    }
    if (fault?.kind === 'status') {
      req.resume();
      entry.status = fault.status;
      res.writeHead(fault.status, { ...fault.headers, 'content-length': '0' }).end();
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
  const port = await listenLoopback(server);
  return {
    host: `127.0.0.1:${port}`,
    url: `http://127.0.0.1:${port}`,
    log,
    get maxInFlight() {
      return maxInFlight;
    },
    inject: (rule) => {
      rules.push({ ...(rule.method ? { method: rule.method } : {}), ...(rule.path ? { path: rule.path } : {}), left: rule.times ?? 1, skip: rule.skip ?? 0, fault: rule.fault });
    },
    clear: () => {
      rules.length = 0;
      maxInFlight = inFlight;
    },
    stop: async () => {
      for (const s of sockets) s.destroy();
      await closeServer(server);
    },
  };
}
