/* Module entry, argument parsing, the async job runner and Node-style errno errors. */
#include "sys.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef SYS_SOURCE_DIGEST
#define SYS_SOURCE_DIGEST "unknown"
#endif

void sys_fail(sys_error *err, int errnum, const char *syscall, const char *path) {
  if (err->errnum != 0) return;
  err->errnum = errnum;
  err->syscall = syscall;
  err->path = path ? strdup(path) : NULL;
}

const char *sys_errno_name(int e) {
  switch (e) {
#define N(x) case x: return #x;
    N(EPERM) N(ENOENT) N(ESRCH) N(EINTR) N(EIO) N(ENXIO) N(E2BIG) N(EBADF) N(EAGAIN) N(ENOMEM)
    N(EACCES) N(EFAULT) N(ENOTBLK) N(EBUSY) N(EEXIST) N(EXDEV) N(ENODEV) N(ENOTDIR) N(EISDIR)
    N(EINVAL) N(ENFILE) N(EMFILE) N(ENOTTY) N(ETXTBSY) N(EFBIG) N(ENOSPC) N(ESPIPE) N(EROFS)
    N(EMLINK) N(ERANGE) N(ENAMETOOLONG) N(ENOSYS) N(ENOTEMPTY) N(ELOOP) N(ENODATA) N(EOVERFLOW)
    N(EOPNOTSUPP) N(EDQUOT) N(ESTALE) N(ECANCELED) N(ETIMEDOUT) N(EILSEQ) N(ENOTCONN) N(EBADMSG)
#undef N
    default: return NULL;
  }
}

napi_value sys_errno_error(napi_env env, const sys_error *err) {
  char codebuf[24];
  const char *code = sys_errno_name(err->errnum);
  if (!code) {
    snprintf(codebuf, sizeof codebuf, "E%d", err->errnum);
    code = codebuf;
  }
  const char *syscall = err->syscall ? err->syscall : "unknown";
  size_t n = strlen(code) + strlen(syscall) + (err->path ? strlen(err->path) : 0) + 128;
  char *msg = malloc(n), desc[96];
  snprintf(desc, sizeof desc, "%s", strerror(err->errnum));
  if (desc[0] >= 'A' && desc[0] <= 'Z') desc[0] += 'a' - 'A'; /* as Node words it */
  if (err->path) snprintf(msg, n, "%s: %s, %s '%s'", code, desc, syscall, err->path);
  else snprintf(msg, n, "%s: %s, %s", code, desc, syscall);
  napi_value jmsg, jcode, error, v;
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &jmsg);
  napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &jcode);
  napi_create_error(env, jcode, jmsg, &error);
  free(msg);
  napi_set_named_property(env, error, "code", jcode);
  napi_create_int32(env, -err->errnum, &v);
  napi_set_named_property(env, error, "errno", v);
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, error, "syscall", v);
  if (err->path) {
    /* a path that is not UTF-8 is reported with replacement characters; the bytes are lost only here */
    napi_create_string_utf8(env, err->path, NAPI_AUTO_LENGTH, &v);
    napi_set_named_property(env, error, "path", v);
  }
  return error;
}

static void job_execute(napi_env env, void *data) {
  (void)env;
  sys_job *job = data;
  job->run(job);
}

static void job_complete(napi_env env, napi_status status, void *data) {
  sys_job *job = data;
  if (status != napi_ok && job->err.errnum == 0) sys_fail(&job->err, ECANCELED, "async", NULL);
  if (job->err.errnum != 0) {
    napi_value error = sys_errno_error(env, &job->err);
    if (job->decorate) job->decorate(env, job, error);
    napi_reject_deferred(env, job->deferred, error);
  } else {
    napi_value value;
    if (job->done) value = job->done(env, job);
    else napi_get_undefined(env, &value);
    napi_resolve_deferred(env, job->deferred, value);
  }
  napi_delete_async_work(env, job->work);
  if (job->cleanup) job->cleanup(job);
  free(job->err.path);
  free(job);
}

napi_value sys_queue(napi_env env, sys_job *job, const char *name) {
  napi_value promise, resource_name;
  napi_create_promise(env, &job->deferred, &promise);
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &resource_name);
  napi_create_async_work(env, NULL, resource_name, job_execute, job_complete, job, &job->work);
  napi_queue_async_work(env, job->work);
  return promise;
}

char *sys_arg_bytes(napi_env env, napi_value v, size_t *len) {
  napi_valuetype t;
  bool is_buffer = false;
  napi_typeof(env, v, &t);
  if (t == napi_string) {
    size_t n;
    napi_get_value_string_utf8(env, v, NULL, 0, &n);
    char *s = malloc(n + 1);
    napi_get_value_string_utf8(env, v, s, n + 1, &n);
    if (len) *len = n;
    return s;
  }
  napi_is_buffer(env, v, &is_buffer);
  if (!is_buffer) return NULL;
  void *data;
  size_t n;
  napi_get_buffer_info(env, v, &data, &n);
  char *s = malloc(n + 1);
  if (n) memcpy(s, data, n);
  s[n] = '\0';
  if (len) *len = n;
  return s;
}

int sys_arg_int(napi_env env, napi_value v, int64_t *out) {
  napi_valuetype t;
  napi_typeof(env, v, &t);
  if (t != napi_number) return 0;
  return napi_get_value_int64(env, v, out) == napi_ok;
}

int sys_arg_bigint(napi_env env, napi_value v, int64_t *out) {
  bool lossless;
  napi_valuetype t;
  napi_typeof(env, v, &t);
  if (t == napi_number) return sys_arg_int(env, v, out);
  if (t != napi_bigint) return 0;
  return napi_get_value_bigint_int64(env, v, out, &lossless) == napi_ok && lossless;
}

napi_value sys_type_error(napi_env env, const char *which) {
  char msg[160];
  snprintf(msg, sizeof msg, "invalid argument: %s", which);
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
  return NULL;
}

int sys_args(napi_env env, napi_callback_info info, size_t min, size_t max, napi_value *argv) {
  size_t argc = max;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  for (size_t i = argc; i < max; i++) napi_get_undefined(env, &argv[i]);
  if (argc < min) {
    napi_throw_type_error(env, "ERR_MISSING_ARGS", "missing arguments");
    return 0;
  }
  return 1;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_value digest;
  napi_create_string_utf8(env, SYS_SOURCE_DIGEST, NAPI_AUTO_LENGTH, &digest);
  napi_set_named_property(env, exports, "sourceDigest", digest);
  sys_register_calls(env, exports);
  sys_register_tree(env, exports);
  sys_register_entries(env, exports);
  sys_register_hash(env, exports);
  sys_register_remove(env, exports);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
