// Package jemalloc links jemalloc as the C allocator of a program built
// with the jemalloc build tag (make and the container images do so), and
// names the allocator the program runs with.
//
// librdkafka allocates and frees C memory for every message, its headers
// and its delivery report, and it frees on other threads than the one that
// allocated: glibc's malloc takes its slow, locked path for nearly every one
// of those. Measured on the streamer catching up one million events, glibc's
// malloc and free were a quarter of the process's CPU, and jemalloc cut the
// whole process's CPU by about a quarter (docs/benchmarks.md).
//
// It runs with two arenas and returns freed pages after a second (see
// malloc_conf in jemalloc.go): jemalloc's defaults, four arenas per CPU and
// ten seconds, put the streamer's peak resident size at 130-150 MiB on a
// one-million-event catch-up, against about 100 MiB so.
//
// Linking is enough: the program's own dependency on libjemalloc comes
// before libc's, so the dynamic linker binds malloc and free, those of the
// statically linked librdkafka included, to jemalloc.
package jemalloc
