//go:build !jemalloc

package jemalloc

// Name is the C allocator the program runs with.
const Name = "glibc"
