/* Shared declarations of the @buildcache/sys addon: argument parsing, async jobs, errno errors. */
#ifndef BUILDCACHE_SYS_H
#define BUILDCACHE_SYS_H

#define _GNU_SOURCE
#include <node_api.h>
#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>

/* A failed system call: errno, the call's name and the path it was about (owned). */
typedef struct {
  int errnum;
  const char *syscall;
  char *path;
} sys_error;

/* Records a failure (keeps the first one; path is copied). */
void sys_fail(sys_error *err, int errnum, const char *syscall, const char *path);

/* One asynchronous call: `run` on a libuv pool thread, `done` (may be NULL) builds the resolved value
 * on the JS thread; `cleanup` (may be NULL) frees what the job owns. */
typedef struct sys_job sys_job;
struct sys_job {
  void (*run)(sys_job *job);
  napi_value (*done)(napi_env env, sys_job *job);
  void (*cleanup)(sys_job *job);
  /* (may be NULL) adds properties to the rejection error on the JS thread */
  void (*decorate)(napi_env env, sys_job *job, napi_value error);
  sys_error err;
  napi_deferred deferred;
  napi_async_work work;
  void *data;
};

/* Queues `job` (heap-allocated, freed after completion) and returns its promise. */
napi_value sys_queue(napi_env env, sys_job *job, const char *name);

/* A path or other byte string argument: a string (UTF-8) or a Buffer (bytes as they are), owned. */
char *sys_arg_bytes(napi_env env, napi_value v, size_t *len);
int sys_arg_int(napi_env env, napi_value v, int64_t *out);
int sys_arg_bigint(napi_env env, napi_value v, int64_t *out);
/* Throws a TypeError naming argument `which` and returns NULL. */
napi_value sys_type_error(napi_env env, const char *which);
/* Reads `argc` arguments into argv; throws unless at least `min` were given. */
int sys_args(napi_env env, napi_callback_info info, size_t min, size_t max, napi_value *argv);
/* The Node-style Error of a failure (code, errno (negative, as Node's), syscall, path). */
napi_value sys_errno_error(napi_env env, const sys_error *err);
const char *sys_errno_name(int errnum);

/* Registrations of each file. */
void sys_register_calls(napi_env env, napi_value exports);
void sys_register_tree(napi_env env, napi_value exports);
void sys_register_entries(napi_env env, napi_value exports);
void sys_register_hash(napi_env env, napi_value exports);
void sys_register_remove(napi_env env, napi_value exports);

/* Copies one regular file's content (reflink, else copy_file_range keeping holes, else read/write)
 * from open `in` (size `size`, `sparse` when it has holes) to open, empty `out`. `try_clone` is
 * cleared when the filesystem cannot clone, so later files skip the attempt. 0 or an errno; `*call`
 * names the failing system call. */
int sys_copy_data(int in, int out, off_t size, int sparse, int *try_clone, const char **call);

/* Copies every xattr of `src` to `dst` (paths, or fds when >= 0), not following symlinks. */
int sys_copy_xattrs(int in, const char *src, int out, const char *dst, const char **call);

#define SYS_FN(env, exports, name, fn)                                              \
  do {                                                                              \
    napi_value f_;                                                                  \
    napi_create_function(env, name, NAPI_AUTO_LENGTH, fn, NULL, &f_);               \
    napi_set_named_property(env, exports, name, f_);                                \
  } while (0)

#endif
