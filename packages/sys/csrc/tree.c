/* copyTree: an exact copy of a directory tree as `cp -a --reflink=auto` makes it, on worker threads
 * of its own, cancellable; usage: allocated bytes and inodes of a tree, hard links counted once. */
#include "sys.h"
#include "inode-map.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Shared by a copy job and its JS cancel function; freed by whichever lets go last. */
typedef struct {
  atomic_int cancelled;
  atomic_int refs;
} cancel_token;

static void token_release(cancel_token *t) {
  if (atomic_fetch_sub(&t->refs, 1) == 1) free(t);
}

/* One entry of the source tree; rel is "" for the top. link_to >= 0: a hard link to that entry. */
typedef struct {
  char *rel;
  struct stat st;
  long link_to;
} entry;

typedef struct {
  char *src, *dst;
  entry *e;
  size_t n, cap;
  size_t *work, nwork;
  atomic_size_t next;
  atomic_int stop;
  atomic_int try_clone;
  pthread_mutex_t lock;
  sys_error *err;
  int threads, root;
  cancel_token *token;
  inode_map links;
} tree_ctx;

static void tree_fail(tree_ctx *c, int errnum, const char *call, const char *path) {
  pthread_mutex_lock(&c->lock);
  sys_fail(c->err, errnum, call, path);
  pthread_mutex_unlock(&c->lock);
  atomic_store(&c->stop, 1);
}

static int stopped(tree_ctx *c) {
  if (atomic_load(&c->token->cancelled)) tree_fail(c, ECANCELED, "copyTree", c->src);
  return atomic_load(&c->stop);
}

/* base + "/" + rel into out (PATH_MAX); 0 or ENAMETOOLONG. */
static int join(const char *base, const char *rel, char *out) {
  int n = rel[0] ? snprintf(out, PATH_MAX, "%s/%s", base, rel) : snprintf(out, PATH_MAX, "%s", base);
  return n < 0 || n >= PATH_MAX ? ENAMETOOLONG : 0;
}

/* Lists the tree under rel (pre-order), making each directory under dst as it goes (mode 0700 until
 * its metadata is set last). */
static void walk(tree_ctx *c, const char *rel) {
  char path[PATH_MAX];
  if (join(c->src, rel, path)) { tree_fail(c, ENAMETOOLONG, "opendir", rel); return; }
  int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
  if (!d) { tree_fail(c, errno, "opendir", path); if (fd >= 0) close(fd); return; }
  struct dirent *de;
  while (!stopped(c) && (errno = 0, de = readdir(d)) != NULL) {
    if (de->d_name[0] == '.' && (de->d_name[1] == 0 || (de->d_name[1] == '.' && de->d_name[2] == 0))) continue;
    if (c->n == c->cap) {
      c->cap = c->cap ? c->cap * 2 : 256;
      c->e = realloc(c->e, c->cap * sizeof *c->e);
    }
    entry *e = &c->e[c->n];
    size_t rl = strlen(rel), nl = strlen(de->d_name);
    e->rel = malloc(rl + nl + 2);
    if (rl) { memcpy(e->rel, rel, rl); e->rel[rl] = '/'; memcpy(e->rel + rl + 1, de->d_name, nl + 1); }
    else memcpy(e->rel, de->d_name, nl + 1);
    e->link_to = -1;
    if (fstatat(dirfd(d), de->d_name, &e->st, AT_SYMLINK_NOFOLLOW) != 0) {
      tree_fail(c, errno, "lstat", e->rel);
      free(e->rel);
      break;
    }
    c->n++;
    if (S_ISDIR(e->st.st_mode)) {
      char to[PATH_MAX];
      if (join(c->dst, e->rel, to) || mkdir(to, 0700) != 0) { tree_fail(c, errno ? errno : ENAMETOOLONG, "mkdir", to); break; }
      walk(c, c->e[c->n - 1].rel);
    } else if (e->st.st_nlink > 1) {
      long first = inode_map_put(&c->links, e->st.st_dev, e->st.st_ino, (long)(c->n - 1));
      if (first == -2) { tree_fail(c, ENOMEM, "copyTree", path); break; }
      c->e[c->n - 1].link_to = first;
    }
  }
  if (errno != 0 && !atomic_load(&c->stop)) tree_fail(c, errno, "readdir", path);
  closedir(d);
}

/* Owner (failures ignored when not root, as cp -a does), xattrs, mode, times of a path. */
static int set_meta(tree_ctx *c, const struct stat *st, const char *from, const char *to, const char **call) {
  if (lchown(to, st->st_uid, st->st_gid) != 0 && (c->root || (errno != EPERM && errno != EINVAL))) { *call = "lchown"; return errno; }
  int e = sys_copy_xattrs(-1, from, -1, to, call);
  if (e) return e;
  if (!S_ISLNK(st->st_mode) && chmod(to, st->st_mode & 07777) != 0) { *call = "chmod"; return errno; }
  struct timespec ts[2] = { st->st_atim, st->st_mtim };
  if (utimensat(AT_FDCWD, to, ts, AT_SYMLINK_NOFOLLOW) != 0) { *call = "utimensat"; return errno; }
  return 0;
}

static int copy_regular(tree_ctx *c, const struct stat *st, const char *from, const char *to, const char **call, const char **where) {
  int in = open(from, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (in < 0) { *call = "open"; *where = from; return errno; }
  int out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (out < 0) { *call = "open"; close(in); return errno; }
  int try_clone = atomic_load(&c->try_clone);
  int e = sys_copy_data(in, out, st->st_size, (off_t)st->st_blocks * 512 < st->st_size, &try_clone, call);
  if (!try_clone) atomic_store(&c->try_clone, 0);
  if (!e && fchown(out, st->st_uid, st->st_gid) != 0 && (c->root || (errno != EPERM && errno != EINVAL))) { e = errno; *call = "fchown"; }
  if (!e) e = sys_copy_xattrs(in, from, out, to, call);
  if (!e && fchmod(out, st->st_mode & 07777) != 0) { e = errno; *call = "fchmod"; }
  struct timespec ts[2] = { st->st_atim, st->st_mtim };
  if (!e && futimens(out, ts) != 0) { e = errno; *call = "futimens"; }
  if (close(out) != 0 && !e) { e = errno; *call = "close"; }
  close(in);
  return e;
}

/* Creates one non-directory entry with its metadata. */
static int copy_entry(tree_ctx *c, const entry *e, const char *from, const char *to, const char **call, const char **where) {
  const struct stat *st = &e->st;
  if (S_ISREG(st->st_mode)) return copy_regular(c, st, from, to, call, where);
  if (S_ISLNK(st->st_mode)) {
    char target[PATH_MAX + 1];
    ssize_t n = readlink(from, target, PATH_MAX);
    if (n < 0) { *call = "readlink"; *where = from; return errno; }
    target[n] = '\0';
    if (symlink(target, to) != 0) { *call = "symlink"; return errno; }
  } else if (mknod(to, st->st_mode, st->st_rdev) != 0) {
    *call = "mknod";
    return errno;
  }
  return set_meta(c, st, from, to, call);
}

static void *worker(void *p) {
  tree_ctx *c = p;
  char from[PATH_MAX], to[PATH_MAX];
  while (!stopped(c)) {
    size_t k = atomic_fetch_add(&c->next, 1);
    if (k >= c->nwork) break;
    const entry *e = &c->e[c->work[k]];
    const char *call = "copyTree", *where = to;
    int r = join(c->src, e->rel, from) || join(c->dst, e->rel, to) ? ENAMETOOLONG : 0;
    if (!r) r = copy_entry(c, e, from, to, &call, &where);
    if (r) tree_fail(c, r, call, where);
  }
  return NULL;
}

static void copy_tree(tree_ctx *c) {
  c->e = malloc(sizeof *c->e);
  c->cap = 1;
  c->e[0].rel = strdup("");
  c->e[0].link_to = -1;
  if (lstat(c->src, &c->e[0].st) != 0) { tree_fail(c, errno, "lstat", c->src); return; }
  c->n = 1;
  if (!S_ISDIR(c->e[0].st.st_mode)) { tree_fail(c, ENOTDIR, "copyTree", c->src); return; }
  if (mkdir(c->dst, 0700) != 0 && errno != EEXIST) { tree_fail(c, errno, "mkdir", c->dst); return; }
  walk(c, "");
  if (stopped(c)) return;
  c->work = malloc(c->n * sizeof *c->work);
  for (size_t i = 0; i < c->n; i++)
    if (!S_ISDIR(c->e[i].st.st_mode) && c->e[i].link_to < 0) c->work[c->nwork++] = i;
  int threads = c->nwork < 64 ? 1 : c->threads;
  pthread_t tids[32];
  int started = 0;
  for (; started < threads - 1; started++)
    if (pthread_create(&tids[started], NULL, worker, c) != 0) break;
  worker(c);
  for (int i = 0; i < started; i++) pthread_join(tids[i], NULL);
  char from[PATH_MAX], to[PATH_MAX];
  for (size_t i = 0; i < c->n && !stopped(c); i++) {
    const entry *e = &c->e[i];
    if (e->link_to < 0) continue;
    if (join(c->dst, c->e[e->link_to].rel, from) || join(c->dst, e->rel, to)) tree_fail(c, ENAMETOOLONG, "link", e->rel);
    else if (link(from, to) != 0) tree_fail(c, errno, "link", to);
  }
  /* directories last, deepest first (reverse pre-order), so their times stay as copied */
  for (size_t i = c->n; i-- > 0 && !stopped(c);) {
    const entry *e = &c->e[i];
    if (!S_ISDIR(e->st.st_mode)) continue;
    const char *call = "copyTree";
    int r = join(c->src, e->rel, from) || join(c->dst, e->rel, to) ? ENAMETOOLONG : 0;
    if (!r) r = set_meta(c, &e->st, from, to, &call);
    if (r) tree_fail(c, r, call, to);
  }
}

static void run_copy_tree(sys_job *job) {
  tree_ctx *c = job->data;
  c->err = &job->err;
  copy_tree(c);
}

static void cleanup_copy_tree(sys_job *job) {
  tree_ctx *c = job->data;
  for (size_t i = 0; i < c->n; i++) free(c->e[i].rel);
  free(c->e);
  free(c->work);
  free(c->src);
  free(c->dst);
  inode_map_free(&c->links);
  pthread_mutex_destroy(&c->lock);
  token_release(c->token);
  free(c);
}

static napi_value js_cancel(napi_env env, napi_callback_info info) {
  void *data;
  napi_get_cb_info(env, info, NULL, NULL, NULL, &data);
  atomic_store(&((cancel_token *)data)->cancelled, 1);
  return NULL;
}

static void finalize_token(napi_env env, void *data, void *hint) {
  (void)env; (void)hint;
  token_release(data);
}

/* copyTree(src, dst, threads, cancelled) → [promise, cancel]; `cancelled` starts it cancelled. */
static napi_value js_copy_tree(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  bool cancelled = false;
  if (!sys_args(env, info, 2, 4, argv)) return NULL;
  napi_get_value_bool(env, argv[3], &cancelled);
  int64_t threads = 4;
  napi_valuetype t;
  napi_typeof(env, argv[2], &t);
  if (t != napi_undefined && (!sys_arg_int(env, argv[2], &threads) || threads < 1 || threads > 32)) return sys_type_error(env, "threads (1..32)");
  char *src = sys_arg_bytes(env, argv[0], NULL), *dst = sys_arg_bytes(env, argv[1], NULL);
  if (!src || !dst) { free(src); free(dst); return sys_type_error(env, "src and dst must be strings or Buffers"); }
  tree_ctx *c = calloc(1, sizeof *c);
  c->src = src;
  c->dst = dst;
  c->threads = (int)threads;
  c->root = geteuid() == 0;
  atomic_init(&c->try_clone, 1);
  pthread_mutex_init(&c->lock, NULL);
  c->token = calloc(1, sizeof *c->token);
  atomic_init(&c->token->refs, 2);
  atomic_init(&c->token->cancelled, cancelled ? 1 : 0);
  sys_job *job = calloc(1, sizeof *job);
  job->data = c;
  job->run = run_copy_tree;
  job->cleanup = cleanup_copy_tree;
  napi_value cancel, out, promise = sys_queue(env, job, "copyTree");
  napi_create_function(env, "cancel", NAPI_AUTO_LENGTH, js_cancel, c->token, &cancel);
  napi_add_finalizer(env, cancel, c->token, finalize_token, NULL, NULL);
  napi_create_array_with_length(env, 2, &out);
  napi_set_element(env, out, 0, promise);
  napi_set_element(env, out, 1, cancel);
  return out;
}

typedef struct {
  char *path;
  double size, inodes;
  inode_map seen;
} usage_ctx;

/* Adds the entries under open directory fd (closed here). */
static void usage_dir(sys_job *job, usage_ctx *u, int fd) {
  DIR *d = fdopendir(fd);
  if (!d) { sys_fail(&job->err, errno, "opendir", u->path); close(fd); return; }
  struct dirent *de;
  struct stat st;
  while (job->err.errnum == 0 && (errno = 0, de = readdir(d)) != NULL) {
    if (de->d_name[0] == '.' && (de->d_name[1] == 0 || (de->d_name[1] == '.' && de->d_name[2] == 0))) continue;
    if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) continue; /* removed meanwhile */
      sys_fail(&job->err, errno, "lstat", u->path);
      break;
    }
    if (!S_ISDIR(st.st_mode) && st.st_nlink > 1) {
      long seen = inode_map_put(&u->seen, st.st_dev, st.st_ino, 0);
      if (seen == -2) { sys_fail(&job->err, ENOMEM, "usage", u->path); break; }
      if (seen >= 0) continue;
    }
    u->size += (double)st.st_blocks * 512;
    u->inodes += 1;
    if (S_ISDIR(st.st_mode)) {
      int sub = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (sub >= 0) usage_dir(job, u, sub);
      else if (errno != ENOENT) sys_fail(&job->err, errno, "opendir", u->path);
    }
  }
  if (errno != 0 && job->err.errnum == 0) sys_fail(&job->err, errno, "readdir", u->path);
  closedir(d);
}

static void run_usage(sys_job *job) {
  usage_ctx *u = job->data;
  struct stat st;
  if (lstat(u->path, &st) != 0) { sys_fail(&job->err, errno, "lstat", u->path); return; }
  u->size = (double)st.st_blocks * 512;
  u->inodes = 1;
  if (!S_ISDIR(st.st_mode)) return;
  int fd = open(u->path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) { sys_fail(&job->err, errno, "opendir", u->path); return; }
  usage_dir(job, u, fd);
}

static napi_value done_usage(napi_env env, sys_job *job) {
  usage_ctx *u = job->data;
  napi_value out, v;
  napi_create_object(env, &out);
  napi_create_double(env, u->size, &v);
  napi_set_named_property(env, out, "size", v);
  napi_create_double(env, u->inodes, &v);
  napi_set_named_property(env, out, "inodes", v);
  return out;
}

static void cleanup_usage(sys_job *job) {
  usage_ctx *u = job->data;
  free(u->path);
  inode_map_free(&u->seen);
  free(u);
}

/* usage(path) → { size, inodes }. */
static napi_value js_usage(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!sys_args(env, info, 1, 1, argv)) return NULL;
  char *path = sys_arg_bytes(env, argv[0], NULL);
  if (!path) return sys_type_error(env, "path must be a string or Buffer");
  usage_ctx *u = calloc(1, sizeof *u);
  u->path = path;
  sys_job *job = calloc(1, sizeof *job);
  job->data = u;
  job->run = run_usage;
  job->done = done_usage;
  job->cleanup = cleanup_usage;
  return sys_queue(env, job, "usage");
}

void sys_register_tree(napi_env env, napi_value exports) {
  SYS_FN(env, exports, "copyTree", js_copy_tree);
  SYS_FN(env, exports, "usage", js_usage);
}
