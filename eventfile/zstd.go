package eventfile

import (
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/parquet-go/parquet-go/format"
)

// pageZstd is Parquet's zstd codec with a window the size of a page: each
// page is compressed on its own, so parquet-go's default (the level's 8 MiB
// window, whose history buffers every encoder keeps) bought nothing but
// memory. The frames are ordinary zstd; every reader decodes them.
type pageZstd struct {
	enc sync.Pool
	dec sync.Pool
}

// pageWindow covers a page (parquet-go fills pages up to 256 KiB).
const pageWindow = 256 << 10

var pageCodec = &pageZstd{}

func (*pageZstd) String() string                            { return "ZSTD" }
func (*pageZstd) CompressionCodec() format.CompressionCodec { return format.Zstd }

func (c *pageZstd) Encode(dst, src []byte) ([]byte, error) {
	e, _ := c.enc.Get().(*zstd.Encoder)
	if e == nil {
		var err error
		if e, err = zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(pageWindow),
			zstd.WithZeroFrames(true), zstd.WithEncoderCRC(false)); err != nil {
			return nil, err
		}
	}
	defer c.enc.Put(e)
	return e.EncodeAll(src, dst[:0]), nil
}

func (c *pageZstd) Decode(dst, src []byte) ([]byte, error) {
	d, _ := c.dec.Get().(*zstd.Decoder)
	if d == nil {
		var err error
		if d, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1)); err != nil {
			return nil, err
		}
	}
	defer c.dec.Put(d)
	return d.DecodeAll(src, dst[:0])
}
