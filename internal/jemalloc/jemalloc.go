//go:build jemalloc

package jemalloc

// #cgo LDFLAGS: -ljemalloc
import "C"

// Name is the C allocator the program runs with.
const Name = "jemalloc"
