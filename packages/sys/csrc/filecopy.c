/* Copying one file's data (reflink, else kernel-side copy keeping holes, else read/write) and its
 * extended attributes. Used by copyFile and by the tree copy. */
#include "sys.h"
#include <errno.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/xattr.h>
#include <unistd.h>

#ifndef FICLONE
#define FICLONE _IOW(0x94, 9, int)
#endif

/* read/write of [off, off+len) (len < 0: to EOF), for filesystems without copy_file_range. */
static int copy_rw(int in, int out, off_t off, off_t len, const char **call) {
  static __thread char buf[1 << 17];
  while (len != 0) {
    size_t want = sizeof buf;
    if (len > 0 && (off_t)want > len) want = (size_t)len;
    ssize_t n = pread(in, buf, want, off);
    if (n < 0) { if (errno == EINTR) continue; *call = "read"; return errno; }
    if (n == 0) return 0;
    for (ssize_t w = 0; w < n;) {
      ssize_t m = pwrite(out, buf + w, (size_t)(n - w), off + w);
      if (m < 0) { if (errno == EINTR) continue; *call = "write"; return errno; }
      w += m;
    }
    off += n;
    if (len > 0) len -= n;
  }
  return 0;
}

/* copy_file_range of [off, off+len) (len < 0: to EOF), falling back to read/write where unsupported. */
static int copy_range(int in, int out, off_t off, off_t len, const char **call) {
  loff_t in_off = off, out_off = off;
  while (len != 0) {
    size_t want = len > 0 ? (size_t)len : (size_t)1 << 30;
    ssize_t n = copy_file_range(in, &in_off, out, &out_off, want, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EXDEV || errno == ENOSYS || errno == EOPNOTSUPP || errno == EINVAL)
        return copy_rw(in, out, in_off, len, call);
      *call = "copy_file_range";
      return errno;
    }
    if (n == 0) return 0;
    if (len > 0) len -= n;
  }
  return 0;
}

int sys_copy_data(int in, int out, off_t size, int sparse, int *try_clone, const char **call) {
  if (size == 0) return 0;
  if (*try_clone) {
    if (ioctl(out, FICLONE, in) == 0) return 0;
    if (errno == EOPNOTSUPP || errno == ENOTTY || errno == EXDEV || errno == ENOSYS) *try_clone = 0;
    else if (errno != EINVAL) { *call = "ioctl(FICLONE)"; return errno; }
  }
  if (!sparse) return copy_range(in, out, 0, -1, call);
  for (off_t off = 0; off < size;) {
    off_t data = lseek(in, off, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break; /* only a hole is left */
      if (errno == EINVAL) return copy_range(in, out, off, -1, call);
      *call = "lseek";
      return errno;
    }
    off_t hole = lseek(in, data, SEEK_HOLE);
    if (hole < 0) { *call = "lseek"; return errno; }
    int e = copy_range(in, out, data, hole - data, call);
    if (e) return e;
    off = hole;
  }
  if (ftruncate(out, size) != 0) { *call = "ftruncate"; return errno; }
  return 0;
}

int sys_copy_xattrs(int in, const char *src, int out, const char *dst, const char **call) {
  static __thread char names[65536 + 1];
  static __thread char value[65536];
  ssize_t n = in >= 0 ? flistxattr(in, names, sizeof names - 1) : llistxattr(src, names, sizeof names - 1);
  if (n < 0) {
    if (errno == ENOTSUP) return 0;
    *call = "llistxattr";
    return errno;
  }
  for (ssize_t p = 0; p < n;) {
    const char *name = names + p;
    size_t len = strnlen(name, (size_t)(n - p));
    p += (ssize_t)len + 1;
    if (len == 0) continue;
    ssize_t v = in >= 0 ? fgetxattr(in, name, value, sizeof value) : lgetxattr(src, name, value, sizeof value);
    if (v < 0) {
      if (errno == ENODATA) continue; /* removed meanwhile */
      *call = "lgetxattr";
      return errno;
    }
    int r = out >= 0 ? fsetxattr(out, name, value, (size_t)v, 0) : lsetxattr(dst, name, value, (size_t)v, 0);
    if (r != 0 && errno != ENOTSUP) {
      *call = "lsetxattr";
      return errno;
    }
  }
  return 0;
}
