/* A growable open-addressing map from (dev, ino) to an index: finds hard links already seen. */
#ifndef BUILDCACHE_INODE_MAP_H
#define BUILDCACHE_INODE_MAP_H
#include <stdint.h>
#include <stdlib.h>
#include <sys/types.h>

typedef struct { dev_t dev; ino_t ino; long idx; } inode_slot;
typedef struct { inode_slot *slots; size_t cap, len; } inode_map;

static inline size_t inode_hash(dev_t dev, ino_t ino) {
  uint64_t h = (uint64_t)ino * 0x9E3779B97F4A7C15ull ^ (uint64_t)dev * 0xC2B2AE3D27D4EB4Full;
  return (size_t)(h ^ (h >> 29));
}

/* The index stored for (dev, ino), or -1 after storing `idx` for it. -2 when out of memory. */
static inline long inode_map_put(inode_map *m, dev_t dev, ino_t ino, long idx) {
  if ((m->len + 1) * 2 > m->cap) {
    size_t cap = m->cap ? m->cap * 2 : 64;
    inode_slot *slots = malloc(cap * sizeof *slots);
    if (!slots) return -2;
    for (size_t i = 0; i < cap; i++) slots[i].idx = -1;
    for (size_t i = 0; i < m->cap; i++) {
      if (m->slots[i].idx < 0) continue;
      size_t j = inode_hash(m->slots[i].dev, m->slots[i].ino) & (cap - 1);
      while (slots[j].idx >= 0) j = (j + 1) & (cap - 1);
      slots[j] = m->slots[i];
    }
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
  }
  size_t j = inode_hash(dev, ino) & (m->cap - 1);
  while (m->slots[j].idx >= 0) {
    if (m->slots[j].dev == dev && m->slots[j].ino == ino) return m->slots[j].idx;
    j = (j + 1) & (m->cap - 1);
  }
  m->slots[j].dev = dev;
  m->slots[j].ino = ino;
  m->slots[j].idx = idx;
  m->len++;
  return -1;
}

static inline void inode_map_free(inode_map *m) { free(m->slots); }
#endif
