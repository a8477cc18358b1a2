/** The Version and Introspection services. */
import { toNumber } from './errors.js';
import type { CallContext } from './errors.js';
import { labelsOf, toOptionalDate } from './convert.js';
import type { WireTimestamp } from './convert.js';
import type { Scope } from './transport.js';
import type { CallOptions, PluginInfo, ServerInfo, VersionInfo } from './types.js';

interface WirePlatform {
  os: string;
  architecture: string;
  variant: string;
  os_version: string;
  os_features: string[];
}

interface WirePlugin {
  type: string;
  id: string;
  requires: string[];
  platforms: WirePlatform[];
  exports: Record<string, string>;
  capabilities: string[];
  init_err: { code: number; message: string } | null;
}

interface WireServer {
  uuid: string;
  pid: string;
  pidns: string;
  deprecations: { id: string; message: string; last_occurrence: WireTimestamp | null }[];
}

function toPlugin(p: WirePlugin): PluginInfo {
  return {
    type: p.type,
    id: p.id,
    requires: [...p.requires],
    platforms: p.platforms.map((x) => ({
      os: x.os,
      architecture: x.architecture,
      ...(x.variant ? { variant: x.variant } : {}),
      ...(x.os_version ? { osVersion: x.os_version } : {}),
      ...(x.os_features.length ? { osFeatures: [...x.os_features] } : {}),
    })),
    exports: labelsOf(p.exports),
    capabilities: [...p.capabilities],
    ...(p.init_err ? { initError: { code: p.init_err.code, message: p.init_err.message } } : {}),
  };
}

/** Typed wrapper of containerd.services.version.v1.Version. */
export class VersionService {
  constructor(private readonly scope: Scope) {}

  /** The daemon's version and revision. */
  async version(options?: CallOptions): Promise<VersionInfo> {
    const res = await this.scope.unary<{ version: string; revision: string }>(
      'version', 'Version', {}, { method: 'Version/Version' }, options,
    );
    return { version: res.version, revision: res.revision };
  }
}

/** Typed wrapper of containerd.services.introspection.v1.Introspection. */
export class IntrospectionService {
  constructor(private readonly scope: Scope) {}

  /** The daemon's plugins, or those matching any of `filters` (e.g. `type==io.containerd.snapshotter.v1`). */
  async plugins(filters: readonly string[] = [], options?: CallOptions): Promise<PluginInfo[]> {
    const res = await this.scope.unary<{ plugins: WirePlugin[] }>(
      'introspection', 'Plugins', { filters: [...filters] }, { method: 'Introspection/Plugins' }, options,
    );
    return res.plugins.map(toPlugin);
  }

  /** The daemon's UUID (and, from 1.6.25/1.7, its pid and pid namespace). */
  async server(options?: CallOptions): Promise<ServerInfo> {
    const ctx: CallContext = { method: 'Introspection/Server' };
    const res = await this.scope.unary<WireServer>('introspection', 'Server', {}, ctx, options);
    const pid = toNumber(res.pid, 'pid', ctx);
    const pidns = toNumber(res.pidns, 'pidns', ctx);
    return {
      uuid: res.uuid,
      ...(pid ? { pid } : {}),
      ...(pidns ? { pidns } : {}),
      deprecations: res.deprecations.map((d) => {
        const last = toOptionalDate(d.last_occurrence);
        return { id: d.id, message: d.message, ...(last ? { lastOccurrence: last } : {}) };
      }),
    };
  }
}
