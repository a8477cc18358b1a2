/* One-shot system calls, each run on the libuv thread pool: mount, umount2, mknodat, the l*xattr
 * calls, lchown, utimensat, renameat2, syncfs and a single-file copy. */
#include "sys.h"
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

/* Arguments and result of one call; strings are owned byte copies. */
typedef struct {
  char *s[6];
  size_t n[6];
  int64_t i[4];
  char *out;     /* getxattr value, listxattr names */
  ssize_t outlen;
} call_args;

static void call_cleanup(sys_job *job) {
  call_args *a = job->data;
  for (int k = 0; k < 6; k++) free(a->s[k]);
  free(a->out);
  free(a);
}

/* Parses `spec` ('s' byte string, 'i' integer, 'b' bigint nanoseconds, '-' skip; upper case optional) into a new job. */
static sys_job *new_call(napi_env env, napi_callback_info info, const char *spec, void (*run)(sys_job *)) {
  napi_value argv[8];
  size_t max = strlen(spec), min = 0, si = 0, ii = 0;
  for (size_t k = 0; k < max; k++)
    if (spec[k] >= 'a') min = k + 1;
  if (!sys_args(env, info, min, max, argv)) return NULL;
  call_args *a = calloc(1, sizeof *a);
  sys_job *job = calloc(1, sizeof *job);
  job->data = a;
  job->run = run;
  job->cleanup = call_cleanup;
  for (size_t k = 0; k < max; k++) {
    char c = spec[k] | 0x20;
    napi_valuetype t;
    napi_typeof(env, argv[k], &t);
    int optional = spec[k] < 'a' && (t == napi_undefined || t == napi_null);
    int ok = 1;
    if (c == 's') {
      if (optional) si++;
      else ok = (a->s[si] = sys_arg_bytes(env, argv[k], &a->n[si])) != NULL, si++;
    } else if (c == 'i') {
      if (!optional) ok = sys_arg_int(env, argv[k], &a->i[ii]);
      ii++;
    } else if (c == 'b') {
      if (!optional) ok = sys_arg_bigint(env, argv[k], &a->i[ii]);
      ii++;
    }
    if (!ok) {
      char which[32];
      snprintf(which, sizeof which, "argument %zu", k + 1);
      call_cleanup(job);
      free(job);
      sys_type_error(env, which);
      return NULL;
    }
  }
  return job;
}

#define CALL_FN(name, spec, runfn)                                        \
  static napi_value js_##name(napi_env env, napi_callback_info info) {    \
    sys_job *job = new_call(env, info, spec, runfn);                      \
    return job ? sys_queue(env, job, #name) : NULL;                       \
  }

#define A(job) ((call_args *)(job)->data)

/* mount(source, target, fstype, flags, data, cwd): cwd (for shortened overlay paths) applies to a
 * thread of its own that unshares its filesystem attributes, so no other thread's cwd changes. */
struct mount_req {
  const char *source, *target, *fstype, *data, *cwd;
  unsigned long flags;
  int rc;
};
static void *mount_in_cwd(void *p) {
  struct mount_req *r = p;
  if (unshare(CLONE_FS) != 0 || chdir(r->cwd) != 0) r->rc = errno;
  else r->rc = mount(r->source, r->target, r->fstype, r->flags, r->data) == 0 ? 0 : errno;
  return NULL;
}
static void run_mount(sys_job *job) {
  call_args *a = A(job);
  struct mount_req r = {
    a->s[0] && a->s[0][0] ? a->s[0] : "none", a->s[1], a->s[2] && a->s[2][0] ? a->s[2] : NULL,
    a->s[3] && a->s[3][0] ? a->s[3] : NULL, a->s[4] && a->s[4][0] ? a->s[4] : NULL, (unsigned long)a->i[0], 0,
  };
  if (r.cwd) {
    pthread_t t;
    int e = pthread_create(&t, NULL, mount_in_cwd, &r);
    if (e == 0) pthread_join(t, NULL);
    else r.rc = e;
  } else if (mount(r.source, r.target, r.fstype, r.flags, r.data) != 0) {
    r.rc = errno;
  }
  if (r.rc) sys_fail(&job->err, r.rc, "mount", a->s[1]);
}
CALL_FN(mount, "sssiSS", run_mount)

static void run_umount(sys_job *job) {
  if (umount2(A(job)->s[0], (int)A(job)->i[0]) != 0) sys_fail(&job->err, errno, "umount2", A(job)->s[0]);
}
CALL_FN(umount, "sI", run_umount)

static void run_mknodat(sys_job *job) {
  call_args *a = A(job);
  if (mknodat(AT_FDCWD, a->s[0], (mode_t)a->i[0], (dev_t)a->i[1]) != 0) sys_fail(&job->err, errno, "mknodat", a->s[0]);
}
CALL_FN(mknodat, "sii", run_mknodat)

static void run_lsetxattr(sys_job *job) {
  call_args *a = A(job);
  if (lsetxattr(a->s[0], a->s[1], a->s[2], a->n[2], (int)a->i[0]) != 0) sys_fail(&job->err, errno, "lsetxattr", a->s[0]);
}
CALL_FN(lsetxattr, "sssI", run_lsetxattr)

static void run_lremovexattr(sys_job *job) {
  call_args *a = A(job);
  if (lremovexattr(a->s[0], a->s[1]) != 0) sys_fail(&job->err, errno, "lremovexattr", a->s[0]);
}
CALL_FN(lremovexattr, "ss", run_lremovexattr)

/* Reads a value or name list whose size can change between the probe and the read. */
static void read_sized(sys_job *job, const char *call, ssize_t (*get)(call_args *, char *, size_t)) {
  call_args *a = A(job);
  for (int tries = 0; tries < 8; tries++) {
    ssize_t n = get(a, NULL, 0);
    if (n < 0) break;
    free(a->out);
    a->out = malloc(n > 0 ? (size_t)n : 1);
    ssize_t m = get(a, a->out, (size_t)n);
    if (m >= 0) { a->outlen = m; return; }
    if (errno != ERANGE) break;
  }
  sys_fail(&job->err, errno, call, a->s[0]);
}
static ssize_t get_value(call_args *a, char *buf, size_t n) { return lgetxattr(a->s[0], a->s[1], buf, n); }
static ssize_t get_names(call_args *a, char *buf, size_t n) { return llistxattr(a->s[0], buf, n); }
static void run_lgetxattr(sys_job *job) { read_sized(job, "lgetxattr", get_value); }
static void run_llistxattr(sys_job *job) { read_sized(job, "llistxattr", get_names); }
static napi_value done_buffer(napi_env env, sys_job *job) {
  napi_value buf;
  napi_create_buffer_copy(env, (size_t)A(job)->outlen, A(job)->out, NULL, &buf);
  return buf;
}
/* The names as an array of Buffers (bytes as stored). */
static napi_value done_names(napi_env env, sys_job *job) {
  call_args *a = A(job);
  napi_value arr, buf;
  napi_create_array(env, &arr);
  uint32_t k = 0;
  for (ssize_t p = 0; p < a->outlen;) {
    size_t len = strnlen(a->out + p, (size_t)(a->outlen - p));
    if (len > 0) {
      napi_create_buffer_copy(env, len, a->out + p, NULL, &buf);
      napi_set_element(env, arr, k++, buf);
    }
    p += (ssize_t)len + 1;
  }
  return arr;
}
static napi_value js_lgetxattr(napi_env env, napi_callback_info info) {
  sys_job *job = new_call(env, info, "ss", run_lgetxattr);
  if (!job) return NULL;
  job->done = done_buffer;
  return sys_queue(env, job, "lgetxattr");
}
static napi_value js_llistxattr(napi_env env, napi_callback_info info) {
  sys_job *job = new_call(env, info, "s", run_llistxattr);
  if (!job) return NULL;
  job->done = done_names;
  return sys_queue(env, job, "llistxattr");
}

static void run_lchown(sys_job *job) {
  call_args *a = A(job);
  if (lchown(a->s[0], (uid_t)a->i[0], (gid_t)a->i[1]) != 0) sys_fail(&job->err, errno, "lchown", a->s[0]);
}
CALL_FN(lchown, "sii", run_lchown)

/* utimensat(path, atimeNs, mtimeNs, flags): times as nanoseconds since the epoch (bigint). */
static struct timespec split_ns(int64_t ns) {
  struct timespec ts = { ns / 1000000000, ns % 1000000000 };
  if (ts.tv_nsec < 0) { ts.tv_sec -= 1; ts.tv_nsec += 1000000000; }
  return ts;
}
static void run_utimensat(sys_job *job) {
  call_args *a = A(job);
  struct timespec ts[2] = { split_ns(a->i[0]), split_ns(a->i[1]) };
  if (utimensat(AT_FDCWD, a->s[0], ts, (int)a->i[2]) != 0) sys_fail(&job->err, errno, "utimensat", a->s[0]);
}
CALL_FN(utimensat, "sbbI", run_utimensat)

static void run_renameat2(sys_job *job) {
  call_args *a = A(job);
  if (syscall(SYS_renameat2, AT_FDCWD, a->s[0], AT_FDCWD, a->s[1], (unsigned)a->i[0]) != 0)
    sys_fail(&job->err, errno, "renameat2", a->s[0]);
}
CALL_FN(renameat2, "ssI", run_renameat2)

static void run_syncfs(sys_job *job) {
  call_args *a = A(job);
  int fd = open(a->s[0], O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) { sys_fail(&job->err, errno, "open", a->s[0]); return; }
  if (syncfs(fd) != 0) sys_fail(&job->err, errno, "syncfs", a->s[0]);
  close(fd);
}
CALL_FN(syncfs, "s", run_syncfs)

/* copyFile(src, dst): a new file `dst` (must not exist) with src's content and permission bits;
 * extents shared where the filesystem can, holes kept as holes. */
static void run_copy_file(sys_job *job) {
  call_args *a = A(job);
  const char *call = "open";
  int in = open(a->s[0], O_RDONLY | O_CLOEXEC);
  if (in < 0) { sys_fail(&job->err, errno, "open", a->s[0]); return; }
  struct stat st;
  if (fstat(in, &st) != 0) { sys_fail(&job->err, errno, "fstat", a->s[0]); close(in); return; }
  int out = open(a->s[1], O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, st.st_mode & 07777);
  if (out < 0) { sys_fail(&job->err, errno, "open", a->s[1]); close(in); return; }
  int try_clone = 1;
  int e = sys_copy_data(in, out, st.st_size, (off_t)st.st_blocks * 512 < st.st_size, &try_clone, &call);
  if (close(out) != 0 && e == 0) { e = errno; call = "close"; }
  close(in);
  if (e) {
    unlink(a->s[1]);
    sys_fail(&job->err, e, call, a->s[1]);
  }
}
CALL_FN(copyFile, "ss", run_copy_file)

void sys_register_calls(napi_env env, napi_value exports) {
  SYS_FN(env, exports, "mount", js_mount);
  SYS_FN(env, exports, "umount", js_umount);
  SYS_FN(env, exports, "mknodat", js_mknodat);
  SYS_FN(env, exports, "lsetxattr", js_lsetxattr);
  SYS_FN(env, exports, "lgetxattr", js_lgetxattr);
  SYS_FN(env, exports, "llistxattr", js_llistxattr);
  SYS_FN(env, exports, "lremovexattr", js_lremovexattr);
  SYS_FN(env, exports, "lchown", js_lchown);
  SYS_FN(env, exports, "utimensat", js_utimensat);
  SYS_FN(env, exports, "renameat2", js_renameat2);
  SYS_FN(env, exports, "syncfs", js_syncfs);
  SYS_FN(env, exports, "copyFile", js_copyFile);
}
