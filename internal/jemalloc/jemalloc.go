//go:build jemalloc

package jemalloc

// #cgo LDFLAGS: -ljemalloc
//
// // jemalloc reads its defaults from this symbol (MALLOC_CONF in the
// // environment still overrides them). Two arenas instead of four per CPU,
// // and freed pages returned after a second instead of ten: the streamer's
// // C allocations come from a few threads, and a backlog's buffers should
// // not stay resident once it drained.
// const char *malloc_conf = "narenas:2,dirty_decay_ms:1000,muzzy_decay_ms:0";
import "C"

// Name is the C allocator the program runs with.
const Name = "jemalloc"
