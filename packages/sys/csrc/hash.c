/* sha256 on the libuv pool: a hash state (OpenSSL's EVP, the one linked into Node) updated with
 * lists of buffers in a pool job, so hashing a layer stream takes no time on the event loop. */
#include "sys.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/evp.h>

typedef struct {
  EVP_MD_CTX *ctx;
  int busy;     /* an update job runs */
  int finished; /* digest() was taken */
} hash_state;

typedef struct {
  napi_env env;
  hash_state *state;
  napi_ref state_ref;
  uint32_t count;
  const void **data;
  size_t *len;
  napi_ref *refs;
} update_job;

static void state_free(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  hash_state *s = data;
  EVP_MD_CTX_free(s->ctx);
  free(s);
}

/* sha256New(): a new hash state (an external). */
static napi_value sha256_new(napi_env env, napi_callback_info info) {
  (void)info;
  hash_state *s = calloc(1, sizeof *s);
  s->ctx = EVP_MD_CTX_new();
  if (!s->ctx || EVP_DigestInit_ex(s->ctx, EVP_sha256(), NULL) != 1) {
    EVP_MD_CTX_free(s->ctx);
    free(s);
    napi_throw_error(env, "ENOMEM", "sha256: cannot initialise the hash state");
    return NULL;
  }
  napi_value out;
  napi_create_external(env, s, state_free, NULL, &out);
  return out;
}

static hash_state *state_arg(napi_env env, napi_value v) {
  napi_valuetype t;
  napi_typeof(env, v, &t);
  if (t != napi_external) return NULL;
  void *s;
  napi_get_value_external(env, v, &s);
  return s;
}

static void update_run(sys_job *job) {
  update_job *u = job->data;
  for (uint32_t k = 0; k < u->count; k++) {
    if (EVP_DigestUpdate(u->state->ctx, u->data[k], u->len[k]) != 1) {
      sys_fail(&job->err, EIO, "sha256", NULL);
      return;
    }
  }
}

static void update_cleanup(sys_job *job) {
  update_job *u = job->data;
  u->state->busy = 0;
  for (uint32_t k = 0; k < u->count; k++) napi_delete_reference(u->env, u->refs[k]);
  napi_delete_reference(u->env, u->state_ref);
  free(u->data);
  free(u->len);
  free(u->refs);
  free(u);
}

/* sha256Update(state, buffers): hashes the buffers, in order, in one pool job. One job per state at a time. */
static napi_value sha256_update(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!sys_args(env, info, 2, 2, argv)) return NULL;
  hash_state *s = state_arg(env, argv[0]);
  bool is_array = false;
  napi_is_array(env, argv[1], &is_array);
  if (!s || !is_array) return sys_type_error(env, "sha256Update(state, buffers)");
  if (s->busy || s->finished) {
    napi_throw_error(env, "EBUSY", s->busy ? "sha256: an update of this hash is still running" : "sha256: the digest was already taken");
    return NULL;
  }
  uint32_t n;
  napi_get_array_length(env, argv[1], &n);
  update_job *u = calloc(1, sizeof *u);
  u->env = env;
  u->state = s;
  u->data = calloc(n ? n : 1, sizeof *u->data);
  u->len = calloc(n ? n : 1, sizeof *u->len);
  u->refs = calloc(n ? n : 1, sizeof *u->refs);
  for (uint32_t k = 0; k < n; k++) {
    napi_value b;
    bool ok = false;
    napi_get_element(env, argv[1], k, &b);
    napi_is_typedarray(env, b, &ok);
    if (!ok) {
      u->count = k;
      for (uint32_t j = 0; j < k; j++) napi_delete_reference(env, u->refs[j]);
      free(u->data);
      free(u->len);
      free(u->refs);
      free(u);
      return sys_type_error(env, "sha256Update: buffers must be Uint8Arrays");
    }
    napi_typedarray_type type;
    size_t length, offset;
    void *data;
    napi_value ab;
    napi_get_typedarray_info(env, b, &type, &length, &data, &ab, &offset);
    u->data[k] = data;
    u->len[k] = length;
    napi_create_reference(env, b, 1, &u->refs[k]);
  }
  u->count = n;
  napi_create_reference(env, argv[0], 1, &u->state_ref);
  s->busy = 1;
  sys_job *job = calloc(1, sizeof *job);
  job->run = update_run;
  job->cleanup = update_cleanup;
  job->data = u;
  return sys_queue(env, job, "sha256Update");
}

/* sha256Digest(state): the lowercase hex digest; the state takes no more updates. */
static napi_value sha256_digest(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!sys_args(env, info, 1, 1, argv)) return NULL;
  hash_state *s = state_arg(env, argv[0]);
  if (!s) return sys_type_error(env, "sha256Digest(state)");
  if (s->busy || s->finished) {
    napi_throw_error(env, "EBUSY", s->busy ? "sha256: an update of this hash is still running" : "sha256: the digest was already taken");
    return NULL;
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  s->finished = 1;
  if (EVP_DigestFinal_ex(s->ctx, md, &n) != 1) {
    napi_throw_error(env, "EIO", "sha256: cannot finish the digest");
    return NULL;
  }
  char hex[2 * EVP_MAX_MD_SIZE + 1];
  static const char digits[] = "0123456789abcdef";
  for (unsigned int k = 0; k < n; k++) {
    hex[2 * k] = digits[md[k] >> 4];
    hex[2 * k + 1] = digits[md[k] & 15];
  }
  napi_value out;
  napi_create_string_latin1(env, hex, 2 * n, &out);
  return out;
}

void sys_register_hash(napi_env env, napi_value exports) {
  SYS_FN(env, exports, "sha256New", sha256_new);
  SYS_FN(env, exports, "sha256Update", sha256_update);
  SYS_FN(env, exports, "sha256Digest", sha256_digest);
}
