/* removeTree: `rm -rf --one-file-system` of one path on a pool thread, through directory fds,
 * following no symlink and never entering another filesystem mounted under the path. */
#include "sys.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The filesystem of the path removed (set when its top directory is opened). */
typedef struct {
  dev_t dev;
  int dev_known;
} remove_ctx;

static int remove_entry(remove_ctx *c, int dirfd, const char *name, unsigned char type, const char **call);

static int is_dot(const char *n) {
  return n[0] == '.' && (n[1] == 0 || (n[1] == '.' && n[2] == 0));
}

/* Removes every entry of open directory `fd` (closed here). 0 or an errno. */
static int empty_dir(remove_ctx *c, int fd, const char **call) {
  DIR *d = fdopendir(fd);
  if (!d) {
    int e = errno;
    close(fd);
    *call = "opendir";
    return e;
  }
  int err = 0;
  for (;;) {
    errno = 0;
    struct dirent *de = readdir(d);
    if (!de) {
      if (errno != 0) { err = errno; *call = "readdir"; }
      break;
    }
    if (is_dot(de->d_name)) continue;
    if ((err = remove_entry(c, dirfd(d), de->d_name, de->d_type, call)) != 0) break;
  }
  closedir(d);
  return err;
}

/* Removes `name` in directory `dirfd` and, for a directory, everything under it; a symlink is removed
 * itself, never followed; a directory on another filesystem (a mount point) is EBUSY, not entered.
 * A name already gone is fine. 0 or an errno; *call names the failing call. */
static int remove_entry(remove_ctx *c, int dirfd, const char *name, unsigned char type, const char **call) {
  if (type != DT_DIR) {
    if (unlinkat(dirfd, name, 0) == 0 || errno == ENOENT) return 0;
    /* EISDIR (or EPERM on some kernels) when the entry of unknown type is a directory */
    if (!(errno == EISDIR || (errno == EPERM && type == DT_UNKNOWN))) { *call = "unlink"; return errno; }
  }
  /* Entries added while a pass ran (or skipped by readdir) make rmdir fail with ENOTEMPTY: a few passes. */
  for (int pass = 0; pass < 3; pass++) {
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
      if (errno == ENOENT) return 0;
      *call = "opendir";
      return errno;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
      int e = errno;
      close(fd);
      *call = "fstat";
      return e;
    }
    if (!c->dev_known) {
      c->dev = st.st_dev;
      c->dev_known = 1;
    } else if (st.st_dev != c->dev) {
      close(fd);
      *call = "rmdir";
      return EBUSY;
    }
    int err = empty_dir(c, fd, call);
    if (err != 0) return err;
    if (unlinkat(dirfd, name, AT_REMOVEDIR) == 0 || errno == ENOENT) return 0;
    if (errno != ENOTEMPTY) break;
  }
  *call = "rmdir";
  return errno;
}

static void run_remove(sys_job *job) {
  const char *path = job->data;
  const char *call = "rm";
  remove_ctx c = {0};
  int err = remove_entry(&c, AT_FDCWD, path, DT_UNKNOWN, &call);
  if (err != 0) sys_fail(&job->err, err, call, path);
}

static void cleanup_remove(sys_job *job) {
  free(job->data);
}

/* removeTree(path) → undefined. */
static napi_value js_remove_tree(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!sys_args(env, info, 1, 1, argv)) return NULL;
  char *path = sys_arg_bytes(env, argv[0], NULL);
  if (!path) return sys_type_error(env, "path must be a string or Buffer");
  sys_job *job = calloc(1, sizeof *job);
  job->data = path;
  job->run = run_remove;
  job->cleanup = cleanup_remove;
  return sys_queue(env, job, "removeTree");
}

void sys_register_remove(napi_env env, napi_value exports) {
  SYS_FN(env, exports, "removeTree", js_remove_tree);
}
