/** `buildcache --help`: commands, flags, the size rule, filter fields and exit codes. */
import { FILTER_FIELDS } from '@buildcache/cache';
import { SIZE_RULE } from './units.js';

/** Exit codes, by kind of outcome. */
export const EXIT = {
  ok: 0,
  failure: 1,
  usage: 2,
  unavailable: 3,
  permission: 4,
  interrupted: 128,
} as const;

/** The help text. */
export const USAGE = `Usage: buildcache [global options] <command> [options]

Commands:
  du                   Show disk usage of the build cache
  prune                Remove unused cache records
  demo                 Build a small chain of cache records, export it, and show du
  build CONTEXT        Build a Dockerfile over the cache: unchanged steps are not run again
  pull REF             Record an image's layers in the cache (eStargz layers lazily); fetch, verify,
                       store and extract them unless --lazy
  cat REF PATH         Print one file of a remote image, fetching only its chunks from eStargz layers
  push NAME|RECORD REF Push an image (buildcache images; its config kept) or a record's chain (minimal
                       config) to a registry as an OCI image
  import FILE|-        Import the images of an OCI image layout or docker save archive (tar, .gz, .zst)
  export NAME -o FILE  Write an image as an OCI image layout (or a docker save archive); -o - is stdout
  images               List images: names, IDs, layer count, size
  serve                Run the daemon: own the cache, serve it to buildcache and buildctl on a unix socket

Global options:
  --addr ADDR            run the command through the daemon at ADDR (unix:///path.sock; default $BUILDCACHE_HOST
                         unless --root/--containerd name a cache); serve: where to listen
                         (default unix:///run/buildcache/buildcache.sock)
  --root DIR             cache root (default: $XDG_DATA_HOME/buildcache, else ~/.local/share/buildcache)
  --containerd SOCKET    use a containerd daemon instead of the embedded backend
  --namespace NS         containerd namespace (default: buildcache; only with --containerd)
  --timeout D            how long containerd may take to answer when connecting (default: 10s)
  --snapshotter NAME     overlayfs or native (default: overlayfs when possible)
  --log-level LEVEL      fatal, error, warn, info, debug, trace, silent (default: warn)
  -h, --help             show this help
  --version              print the version

du options:
  -f, --filter F         filter records (repeatable; several filters are OR-ed, a comma is AND)
  -v, --verbose          one block per record
  --format table|json    output format (default: table; json is buildctl's array)

prune options (buildx's spellings in brackets):
  -a, --all              include internal and frontend records
  -f, --filter F         only records matching (repeatable); until=D [buildx] is --keep-duration D
  --keep-duration D      keep records used within D (e.g. 48h)
  --keep-storage S       [--max-used-space] prune until the cache uses at most S
  --keep-storage-min S   [--reserved-space] never prune the cache below S
  --free-storage S       [--min-free-space] prune until the disk has S free
  --dry-run              show what would be removed, remove nothing
  --force                do not ask for confirmation (asked only on a terminal, never with --format json)
  -v, --verbose          one block per record
  --format table|json    output format (default: table; json is one object per deleted record, one per
                         line, then a totals object)

build options: buildcache build [options] CONTEXT
  -f, --file FILE        the Dockerfile (default: CONTEXT/Dockerfile)
  -t, --tag NAME         record the image in the image store as NAME (images, export, FROM NAME)
  --no-cache             run every step (results are still cached)
  --progress MODE        plain, tty or auto (default: auto = tty when stderr is a terminal)
  --build-arg K=V        set a build argument (repeatable; a bare K takes $K)
  -o, --output FILE      also write the image as an OCI layout tar (ctr images import, docker load)
  --cache-to SPEC        export the build's cache (repeatable): type=registry,ref=HOST/REPO:TAG[,mode=max]
                         or type=local,dest=DIR (an OCI layout); mode=min (default) exports the final
                         result's layers, max every step's; ignore-error=true makes a failure a warning
  --cache-from SPEC      use a cache exported by --cache-to (repeatable): type=registry,ref=R or
                         type=local,src=DIR; layers are fetched only for results that are mounted
  Prints the image's manifest digest. RUN steps run with runc ($BUILDCACHE_RUNC, else runc on PATH),
  without network, in containers named buildcache-* under <root>/frontend/runc.

pull options:
  --lazy                 only record the layers (reads footers and TOCs); fetch nothing else

push options:
  --compression C        gzip (default), zstd, uncompressed, or estargz (lazily pullable layers)

export options:
  -o, --output FILE      where to write the archive (- for stdout)
  --format oci|docker    OCI image layout (default), or a docker save archive (also an OCI layout)

images options:
  --format table|json    output format (default: table)

serve options (the cache is the one --root / --containerd name):
  --group G              group (name or gid) that owns the socket (mode 0660); its members may connect
  --gc                   run automatic GC with BuildKit's default policies
  --metrics HOST:PORT    serve Prometheus metrics at http://HOST:PORT/metrics (loopback only)

Sizes: ${SIZE_RULE.replaceAll('\n', '\n  ')}
  An empty value (e.g. an unset shell variable) is an error, never "no limit".
Durations: 90s, 30m, 48h, 7d, 2w, 1h30m.

Filters: containerd's syntax, FIELD==VALUE, FIELD!=VALUE, FIELD~=REGEXP, or a bare FIELD for true.
  Fields: ${FILTER_FIELDS.join(', ')}.
  Example: -f type==exec.cachemount -f 'type!=regular,description~=^go'

Exit codes:
  ${EXIT.ok}    success (also when stdout is closed early, e.g. by | head)
  ${EXIT.failure}    the command failed
  ${EXIT.usage}    bad usage: unknown command or flag, bad or empty value
  ${EXIT.unavailable}    the cache cannot be opened: daemon unreachable or not containerd, store locked or corrupt
  ${EXIT.permission}    permission denied (socket or cache directory)
  130  interrupted by SIGINT (143: SIGTERM); prune finishes its current batch and prints what it deleted
`;
