package eventfile

import (
	"io"
	"os"
)

// spoolPool keeps a filling row group's compressed pages in files under dir
// instead of memory: a row group's column chunks must sit whole and in order
// in the file, so until the group is complete they wait somewhere. Each file
// is unlinked as soon as it is made, so a crash leaves nothing behind.
type spoolPool struct{ dir string }

func (p spoolPool) GetBuffer() io.ReadWriteSeeker {
	f, err := os.CreateTemp(p.dir, "archiver-*.pages")
	if err != nil {
		return errBuffer{err}
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return errBuffer{err}
	}
	return f
}

func (spoolPool) PutBuffer(b io.ReadWriteSeeker) {
	if f, ok := b.(*os.File); ok {
		f.Close()
	}
}

// errBuffer fails every call: parquet-go's pool has no error return, so the
// failure surfaces at the writer's next write.
type errBuffer struct{ err error }

func (b errBuffer) Read([]byte) (int, error)       { return 0, b.err }
func (b errBuffer) Write([]byte) (int, error)      { return 0, b.err }
func (b errBuffer) Seek(int64, int) (int64, error) { return 0, b.err }
