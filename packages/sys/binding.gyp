{
  "targets": [
    {
      "target_name": "sys",
      "sources": ["csrc/addon.c", "csrc/calls.c", "csrc/entries.c", "csrc/filecopy.c", "csrc/hash.c", "csrc/remove.c", "csrc/tree.c"],
      "cflags": ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-fvisibility=hidden"],
      "defines": ["NAPI_VERSION=8", "SYS_SOURCE_DIGEST=\"<!(node scripts/source-digest.cjs)\""],
      "libraries": ["-lpthread"]
    }
  ]
}
