/**
 * Loads the vendored `.proto` files (packages/leases-ts/proto, shipped with the package) with
 * @grpc/proto-loader once per process and hands out method definitions by service and name.
 */
import { fileURLToPath } from 'node:url';
import { loadSync } from '@grpc/proto-loader';
import type { MethodDefinition, PackageDefinition } from '@grpc/proto-loader';

/** The proto root: `dist/src/proto.js` → `../../proto`, which also holds from `src/proto.ts`. */
export const PROTO_ROOT = fileURLToPath(new URL('../../proto/', import.meta.url));

const API = 'github.com/containerd/containerd/api/services';

/** The services this client talks to, by short name → fully-qualified proto name. */
export const SERVICES = {
  snapshots: 'containerd.services.snapshots.v1.Snapshots',
  leases: 'containerd.services.leases.v1.Leases',
  content: 'containerd.services.content.v1.Content',
  diff: 'containerd.services.diff.v1.Diff',
  namespaces: 'containerd.services.namespaces.v1.Namespaces',
  version: 'containerd.services.version.v1.Version',
  introspection: 'containerd.services.introspection.v1.Introspection',
} as const;

/** Short name of a service. */
export type ServiceName = keyof typeof SERVICES;

const FILES = [
  `${API}/snapshots/v1/snapshots.proto`,
  `${API}/leases/v1/leases.proto`,
  `${API}/content/v1/content.proto`,
  `${API}/diff/v1/diff.proto`,
  `${API}/namespaces/v1/namespace.proto`,
  `${API}/version/v1/version.proto`,
  `${API}/introspection/v1/introspection.proto`,
];

/** A method as the generic grpc-js client needs it. */
export type Method = MethodDefinition<object, object>;

/**
 * Loads `files` (paths under `root`) with the options every buildcache gRPC peer reads protos with
 * (field names as written, int64 as strings, enums by name), once, on the first call of the result.
 */
export function protoLoader(files: readonly string[], root: string): () => PackageDefinition {
  let cached: PackageDefinition | undefined;
  return () =>
    (cached ??= loadSync([...files], {
      keepCase: true,
      longs: String,
      enums: String,
      defaults: true,
      oneofs: true,
      includeDirs: [root],
    }));
}

const definitions = protoLoader(FILES, PROTO_ROOT);

/** The definition of `service`'s method `name` (e.g. `method('snapshots', 'Prepare')`). */
export function method(service: ServiceName, name: string): Method {
  const svc = definitions()[SERVICES[service]] as Record<string, Method> | undefined;
  const m = svc?.[name];
  if (!m) throw new Error(`no method ${SERVICES[service]}/${name} in the vendored protos`);
  return m;
}
