/* writeEntries: many small layer entries (regular files with their bytes, directories, symlinks,
 * metadata of existing directories) created in order in one job on the libuv pool, each resolved
 * beneath a root directory's descriptor without following any symlink. */
#include "sys.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_openat2
#define SYS_openat2 437
#endif
#define RES_NO_MAGICLINKS 0x02
#define RES_NO_SYMLINKS 0x04
#define RES_BENEATH 0x08

/* struct open_how of openat2(2), declared here for older kernel headers. */
struct how { uint64_t flags, mode, resolve; };

enum { K_FILE = 0, K_DIR = 1, K_SYMLINK = 2, K_META = 3 };

typedef struct {
  int kind, chown;
  char *path;       /* relative to the root, owned */
  char *link;       /* symlink target, owned */
  const char *data; /* file bytes, kept alive by `ref` */
  size_t len;
  napi_ref ref;
  uint32_t mode;
  int64_t uid, gid;
  double mtime;
} entry;

typedef struct {
  napi_env env;
  char *root;
  entry *items;
  uint32_t count;
  int64_t failed; /* index of the failed item, -1 when none */
  int openat2;    /* try openat2 first (else only the walk) */
} batch;

static void batch_cleanup(sys_job *job) {
  batch *b = job->data;
  for (uint32_t k = 0; k < b->count; k++) {
    free(b->items[k].path);
    free(b->items[k].link);
    if (b->items[k].ref) napi_delete_reference(b->env, b->items[k].ref);
  }
  free(b->items);
  free(b->root);
  free(b);
}

/* As libuv converts fs.futimes seconds: whole microseconds (so this path matches Node's). */
static struct timespec ts_of(double t) {
  struct timespec ts;
  ts.tv_sec = (time_t)t;
  ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
  if (ts.tv_nsec < 0) { ts.tv_sec -= 1; ts.tv_nsec += 1000000000; }
  ts.tv_nsec -= ts.tv_nsec % 1000;
  return ts;
}

/* 0 when every '/'-separated component of [s, s+n) is a plain name (not empty, '.' or '..'). */
static int bad_components(const char *s, size_t n) {
  size_t start = 0;
  for (size_t k = 0; k <= n; k++) {
    if (k < n && s[k] != '/') continue;
    size_t len = k - start;
    if (len == 0 || (len == 1 && s[start] == '.') || (len == 2 && s[start] == '.' && s[start + 1] == '.')) return 1;
    start = k + 1;
  }
  return 0;
}

/* Opens directory `dir` beneath `root` never following a symlink: openat2 RESOLVE_BENEATH |
 * RESOLVE_NO_SYMLINKS where the kernel has it, else one O_NOFOLLOW openat per component. */
static int open_beneath(int root, char *dir, int *openat2_ok) {
  if (*openat2_ok) {
    struct how how = { O_PATH | O_DIRECTORY | O_CLOEXEC, 0, RES_BENEATH | RES_NO_SYMLINKS | RES_NO_MAGICLINKS };
    long fd = syscall(SYS_openat2, root, dir, &how, sizeof how);
    if (fd >= 0) return (int)fd;
    if (errno == ENOSYS || errno == EPERM || errno == E2BIG) *openat2_ok = 0; /* old kernel, seccomp: walk */
    else if (errno != EAGAIN) return -1; /* EAGAIN: a concurrent rename; the walk is safe against it */
  }
  int fd = dup(root);
  for (char *c = dir; fd >= 0 && c;) {
    char *slash = strchr(c, '/');
    if (slash) *slash = '\0';
    int next = openat(fd, c, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int e = errno;
    if (slash) *slash = '/';
    close(fd);
    fd = next;
    errno = e;
    c = slash ? slash + 1 : NULL;
  }
  return fd;
}

static int write_all(int fd, const char *data, size_t len) {
  for (size_t off = 0; off < len;) {
    ssize_t w = write(fd, data + off, len - off);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return -1;
    if (w == 0) { errno = ENOSPC; return -1; }
    off += (size_t)w;
  }
  return 0;
}

/* fchown (when asked), fchmod after it (chown clears setuid/setgid), then atime = mtime. */
static const char *set_meta(int fd, const entry *it) {
  struct timespec ts[2] = { ts_of(it->mtime), ts_of(it->mtime) };
  if (it->chown && fchown(fd, (uid_t)it->uid, (gid_t)it->gid) != 0) return "fchown";
  if (fchmod(fd, it->mode) != 0) return "fchmod";
  if (futimens(fd, ts) != 0) return "futimens";
  return NULL;
}

/* Creates or updates one entry in directory `dfd` under the name `base`; NULL or the failing call. */
static const char *apply_one(int dfd, const char *base, const entry *it) {
  const char *call = NULL;
  int fd;
  switch (it->kind) {
    case K_FILE:
      fd = openat(dfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
      if (fd < 0) return "openat";
      if (write_all(fd, it->data, it->len) != 0) call = "write";
      else call = set_meta(fd, it);
      if (close(fd) != 0 && !call) call = "close";
      return call;
    case K_DIR:
      return mkdirat(dfd, base, 0700) == 0 ? NULL : "mkdirat";
    case K_SYMLINK: {
      struct timespec ts[2] = { ts_of(it->mtime), ts_of(it->mtime) };
      if (symlinkat(it->link, dfd, base) != 0) return "symlinkat";
      if (it->chown && fchownat(dfd, base, (uid_t)it->uid, (gid_t)it->gid, AT_SYMLINK_NOFOLLOW) != 0) return "fchownat";
      return utimensat(dfd, base, ts, AT_SYMLINK_NOFOLLOW) == 0 ? NULL : "utimensat";
    }
    default:
      fd = openat(dfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (fd < 0) return "openat";
      call = set_meta(fd, it);
      if (close(fd) != 0 && !call) call = "close";
      return call;
  }
}

static void run_entries(sys_job *job) {
  batch *b = job->data;
  int root = open(b->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (root < 0) { sys_fail(&job->err, errno, "open", NULL); return; }
  int openat2_ok = b->openat2, dfd = -1;
  char *dir = NULL; /* the directory `dfd` refers to */
  for (uint32_t k = 0; k < b->count; k++) {
    entry *it = &b->items[k];
    char *slash = strrchr(it->path, '/');
    const char *base = slash ? slash + 1 : it->path;
    if (bad_components(it->path, strlen(it->path))) {
      sys_fail(&job->err, EINVAL, "writeEntries", it->path);
      b->failed = k;
      break;
    }
    int same = slash ? dir && (size_t)(slash - it->path) == strlen(dir) && memcmp(dir, it->path, strlen(dir)) == 0 : dir && !*dir;
    if (!same) {
      if (dfd >= 0 && dfd != root) close(dfd);
      free(dir);
      dir = slash ? strndup(it->path, (size_t)(slash - it->path)) : strdup("");
      dfd = slash ? open_beneath(root, dir, &openat2_ok) : root;
      if (dfd < 0) {
        sys_fail(&job->err, errno, "openat", it->path);
        b->failed = k;
        break;
      }
    }
    const char *call = apply_one(dfd, base, it);
    if (call) {
      sys_fail(&job->err, errno, call, it->path);
      b->failed = k;
      break;
    }
  }
  if (dfd >= 0 && dfd != root) close(dfd);
  free(dir);
  close(root);
}

/* The failed item's index, as `index` on the error. */
static void decorate(napi_env env, sys_job *job, napi_value error) {
  napi_value v;
  napi_create_int64(env, ((batch *)job->data)->failed, &v);
  napi_set_named_property(env, error, "index", v);
}

static int get_int(napi_env env, napi_value obj, const char *name, int64_t *out) {
  napi_value v;
  return napi_get_named_property(env, obj, name, &v) == napi_ok && sys_arg_int(env, v, out);
}

/* Reads item `obj` into `it`; 0 when a field is missing or of the wrong type. */
static int parse_item(napi_env env, napi_value obj, entry *it) {
  napi_value v;
  int64_t kind, mode, uid, gid;
  bool flag = false, is_buffer = false;
  if (!get_int(env, obj, "kind", &kind) || kind < K_FILE || kind > K_META) return 0;
  it->kind = (int)kind;
  size_t n;
  if (napi_get_named_property(env, obj, "path", &v) != napi_ok || !(it->path = sys_arg_bytes(env, v, &n))) return 0;
  if (strlen(it->path) != n) return 0; /* a NUL inside would shorten the path */
  if (it->kind == K_DIR) return 1;
  if (!get_int(env, obj, "mode", &mode) || !get_int(env, obj, "uid", &uid) || !get_int(env, obj, "gid", &gid)) return 0;
  it->mode = (uint32_t)mode & 07777;
  it->uid = uid;
  it->gid = gid;
  if (napi_get_named_property(env, obj, "mtime", &v) != napi_ok || napi_get_value_double(env, v, &it->mtime) != napi_ok) return 0;
  if (napi_get_named_property(env, obj, "chown", &v) != napi_ok || napi_get_value_bool(env, v, &flag) != napi_ok) return 0;
  it->chown = flag;
  if (it->kind == K_SYMLINK) {
    return napi_get_named_property(env, obj, "link", &v) == napi_ok && (it->link = sys_arg_bytes(env, v, NULL)) != NULL;
  }
  if (it->kind != K_FILE) return 1;
  if (napi_get_named_property(env, obj, "data", &v) != napi_ok || napi_is_buffer(env, v, &is_buffer) != napi_ok || !is_buffer) return 0;
  void *data;
  napi_get_buffer_info(env, v, &data, &it->len);
  it->data = data;
  return napi_create_reference(env, v, 1, &it->ref) == napi_ok;
}

static napi_value js_write_entries(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  bool is_array = false, walk = false;
  if (!sys_args(env, info, 2, 3, argv)) return NULL;
  char *root = sys_arg_bytes(env, argv[0], NULL);
  if (!root) return sys_type_error(env, "root");
  napi_is_array(env, argv[1], &is_array);
  if (!is_array) { free(root); return sys_type_error(env, "entries"); }
  batch *b = calloc(1, sizeof *b);
  b->env = env;
  b->root = root;
  b->failed = -1;
  b->openat2 = !(napi_get_value_bool(env, argv[2], &walk) == napi_ok && walk);
  napi_get_array_length(env, argv[1], &b->count);
  b->items = calloc(b->count ? b->count : 1, sizeof *b->items);
  sys_job *job = calloc(1, sizeof *job);
  job->data = b;
  job->run = run_entries;
  job->cleanup = batch_cleanup;
  job->decorate = decorate;
  for (uint32_t k = 0; k < b->count; k++) {
    napi_value obj;
    napi_valuetype t = napi_undefined;
    if (napi_get_element(env, argv[1], k, &obj) == napi_ok) napi_typeof(env, obj, &t);
    if (t != napi_object || !parse_item(env, obj, &b->items[k])) {
      char which[48];
      snprintf(which, sizeof which, "entries[%u]", k);
      batch_cleanup(job);
      free(job);
      return sys_type_error(env, which);
    }
  }
  return sys_queue(env, job, "writeEntries");
}

void sys_register_entries(napi_env env, napi_value exports) {
  SYS_FN(env, exports, "writeEntries", js_write_entries);
}
