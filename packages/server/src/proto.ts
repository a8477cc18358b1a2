/**
 * Loads the `.proto` files shipped with this package (BuildKit's control API subset and buildcache's
 * own API) once per process, for both the server and the client.
 */
import { fileURLToPath } from 'node:url';
import type { MethodDefinition } from '@grpc/proto-loader';
import { protoLoader } from '@containerd/leases-ts';
import type { ServiceDefinition } from '@grpc/grpc-js';

/** The proto root: `dist/src/proto.js` → `../../proto` (also right from `src/proto.ts`). */
export const PROTO_ROOT = fileURLToPath(new URL('../../proto/', import.meta.url));

/** The services on the daemon's socket, by short name → fully-qualified proto name. */
export const SERVICES = {
  control: 'moby.buildkit.v1.Control',
  cache: 'buildcache.v1.Cache',
} as const;

/** Short name of a service. */
export type ServiceName = keyof typeof SERVICES;

const FILES = ['github.com/moby/buildkit/api/services/control/control.proto', 'buildcache/v1/cache.proto'];

/** A method as grpc-js needs it. */
export type Method = MethodDefinition<object, object>;

const definitions = protoLoader(FILES, PROTO_ROOT);

/** The whole definition of a service, for `server.addService`. */
export function service(name: ServiceName): ServiceDefinition {
  return definitions()[SERVICES[name]] as ServiceDefinition;
}

/** One method of a service (e.g. `method('cache', 'Prune')`). */
export function method(name: ServiceName, rpc: string): Method {
  const m = (definitions()[SERVICES[name]] as Record<string, Method> | undefined)?.[rpc];
  if (!m) throw new Error(`no method ${SERVICES[name]}/${rpc} in the protos of @buildcache/server`);
  return m;
}
