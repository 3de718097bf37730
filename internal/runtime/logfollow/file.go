package logfollow

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"math"
	"os"
	"time"

	"github.com/persys-dev/compute/internal/runtime"
)

// recentSize is how much of what was sent a file follow remembers, to find
// its place again after the file was cut in place.
const recentSize = 256

// maxRescan bounds how much of a cut file is searched for that place.
const maxRescan = 16 << 20

// File streams a file another process appends to: its last tailBytes
// bytes, then what is appended, checked every poll, until ctx ends or the
// file is removed. When the file is replaced (a new inode) the new file is
// sent from its start; when it is cut in place (it shrank, as the qemu
// runtime keeps its serial log under a cap), the follow resumes after the
// last bytes it sent if the cut file still holds them, else from its start.
func File(ctx context.Context, path string, tailBytes int64, poll time.Duration, emit func([]byte) error) error {
	fl := &fileFollow{path: path, emit: emit}
	if err := fl.open(tailBytes); err != nil {
		return err
	}
	defer fl.close()
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		if err := fl.drain(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		gone, err := fl.check()
		if gone || err != nil {
			return err
		}
	}
}

type fileFollow struct {
	path   string
	emit   func([]byte) error
	f      *os.File
	info   os.FileInfo
	off    int64
	recent []byte
	// cutPolls counts the polls since a cut was seen whose kept part did
	// not (yet) hold the last bytes sent; 0 when no cut is pending.
	cutPolls int
	// absentPolls counts the polls a followed file has been missing: a
	// rotation renames it away before the writer creates the next one.
	absentPolls int
}

// cutSettlePolls is how many polls a removed file may stay absent before
// the follow ends (a rotation's next file appears in between), and how
// many polls a cut file may take to hold the last
// bytes sent before the follow gives up and starts over from its start. A
// cut is a truncate followed by a write (the qemu runtime's cap), so a
// poll between the two sees an empty or half-written file.
const cutSettlePolls = 3

// open opens the file (an absent file counts as empty until it appears)
// and places the follow tailBytes before its end.
func (fl *fileFollow) open(tailBytes int64) error {
	f, err := os.Open(fl.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	info, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return err
	}
	fl.f, fl.info, fl.off, fl.recent = f, info, max(0, info.Size()-tailBytes), nil
	return nil
}

func (fl *fileFollow) close() {
	if fl.f != nil {
		_ = fl.f.Close()
	}
}

// drain sends what the open file holds past the follow's offset.
func (fl *fileFollow) drain() error {
	if fl.f == nil || fl.cutPolls > 0 {
		return nil
	}
	buf := make([]byte, runtime.MaxLogChunk)
	for {
		n, err := fl.f.ReadAt(buf, fl.off)
		if n > 0 {
			fl.off += int64(n)
			fl.remember(buf[:n])
			if eerr := fl.emit(bytes.Clone(buf[:n])); eerr != nil {
				return eerr
			}
		}
		if errors.Is(err, io.EOF) || n == 0 {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func (fl *fileFollow) remember(p []byte) {
	fl.recent = append(fl.recent, p...)
	if len(fl.recent) > recentSize {
		fl.recent = bytes.Clone(fl.recent[len(fl.recent)-recentSize:])
	}
}

// check notices a file that appeared, was replaced, cut or removed. gone
// is true once a file that was followed no longer exists.
func (fl *fileFollow) check() (gone bool, err error) {
	info, err := os.Stat(fl.path)
	if errors.Is(err, fs.ErrNotExist) {
		if fl.f == nil {
			return false, nil
		}
		fl.absentPolls++
		return fl.absentPolls > cutSettlePolls, nil
	}
	fl.absentPolls = 0
	if err != nil {
		return false, err
	}
	switch {
	case fl.f == nil || !os.SameFile(info, fl.info):
		fl.close()
		fl.f = nil
		// A new file: all of it is new output.
		return false, fl.open(math.MaxInt64)
	case info.Size() < fl.off || fl.cutPolls > 0:
		fl.settleCut(info.Size())
	}
	return false, nil
}

// settleCut places the follow in a file cut to size: after the last bytes
// sent once the file holds them; from its start when it still does not
// after cutSettlePolls polls (or nothing was sent yet).
func (fl *fileFollow) settleCut(size int64) {
	if off, ok := fl.resume(size); ok {
		fl.off, fl.cutPolls = off, 0
		return
	}
	fl.cutPolls++
	if fl.cutPolls > cutSettlePolls {
		fl.off, fl.cutPolls = 0, 0
	}
}

// resume finds where to continue in a file cut to size: after the last
// bytes sent when the file holds them (ok), else at its start (ok only
// when nothing was sent, so there is nothing to find).
func (fl *fileFollow) resume(size int64) (off int64, ok bool) {
	if len(fl.recent) == 0 {
		return 0, true
	}
	start := max(0, size-maxRescan)
	buf := make([]byte, size-start)
	n, _ := fl.f.ReadAt(buf, start)
	// The cut may have kept less than was remembered: try shorter ends of
	// it, longest first, down to a length still unlikely to repeat.
	for k := len(fl.recent); k >= minResumeMatch || k == len(fl.recent); k /= 2 {
		end := fl.recent[len(fl.recent)-k:]
		if i := bytes.LastIndex(buf[:n], end); i >= 0 {
			return start + int64(i+k), true
		}
		if k == 0 {
			break
		}
	}
	return 0, false
}

// minResumeMatch is the shortest end of what was sent that resume trusts.
const minResumeMatch = 16
