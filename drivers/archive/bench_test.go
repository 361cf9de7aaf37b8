package archive_test

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-fs/strata/drivers/archive"
)

// benchTar is a layer of 10,000 small files in 100 directories and one
// 64 MiB file.
func benchTar(b *testing.B) []byte {
	b.Helper()
	var entries []ent
	for d := range 100 {
		entries = append(entries, dir(fmt.Sprintf("d%02d/", d)))
		for f := range 100 {
			entries = append(entries, file(fmt.Sprintf("d%02d/f%02d", d, f), strings.Repeat("x", 512)))
		}
	}
	entries = append(entries, file("big", strings.Repeat("y", 64<<20)))
	return mkTar(b, entries...)
}

// BenchmarkApply: into an empty layer dir (the graphdriver's ApplyDiff),
// and over a layer dir holding the same content (the staging copy is
// built of hard links).
func BenchmarkApply(b *testing.B) {
	tb := benchTar(b)
	for _, full := range []bool{false, true} {
		b.Run(map[bool]string{false: "empty", true: "nonempty"}[full], func(b *testing.B) {
			b.SetBytes(int64(len(tb)))
			for range b.N {
				b.StopTimer()
				d := filepath.Join(b.TempDir(), "layer")
				mkdirB(b, d)
				if full {
					if _, err := archive.Apply(d, bytes.NewReader(tb), archive.ApplyOptions{}); err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
				if _, err := archive.Apply(d, bytes.NewReader(tb), archive.ApplyOptions{Flatten: true}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDiff(b *testing.B) {
	tb := benchTar(b)
	d := filepath.Join(b.TempDir(), "layer")
	mkdirB(b, d)
	if _, err := archive.Apply(d, bytes.NewReader(tb), archive.ApplyOptions{}); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(tb)))
	b.ResetTimer()
	for range b.N {
		if err := archive.Diff(io.Discard, d, archive.DiffOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

func mkdirB(b *testing.B, d string) {
	b.Helper()
	if err := os.Mkdir(d, 0o755); err != nil {
		b.Fatal(err)
	}
}
