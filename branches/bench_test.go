package branches

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// BenchmarkResolveBottom resolves a file that only the bottom branch has,
// through stacks of growing depth: the cost of a lookup that has to look at
// every branch.
func BenchmarkResolveBottom(b *testing.B) {
	for _, depth := range []int{1, 10, 100, 1000} {
		b.Run(fmt.Sprintf("branches=%d", depth), func(b *testing.B) {
			stack := benchStack(b, depth)
			b.ResetTimer()
			for b.Loop() {
				if _, err := stack.Resolve("d/bottom.txt"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkResolveTop resolves a file the top branch has: it must not cost
// more with depth.
func BenchmarkResolveTop(b *testing.B) {
	for _, depth := range []int{1, 1000} {
		b.Run(fmt.Sprintf("branches=%d", depth), func(b *testing.B) {
			stack := benchStack(b, depth)
			b.ResetTimer()
			for b.Loop() {
				if _, err := stack.Resolve("top.txt"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func benchStack(b *testing.B, depth int) *Stack {
	root := b.TempDir()
	var lowers []string
	for i := range depth {
		dir := filepath.Join(root, fmt.Sprint(i))
		if err := os.MkdirAll(filepath.Join(dir, "d"), 0o755); err != nil {
			b.Fatal(err)
		}
		lowers = append(lowers, dir)
	}
	must := func(err error) {
		if err != nil {
			b.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(lowers[depth-1], "d", "bottom.txt"), []byte("x"), 0o644))
	must(os.WriteFile(filepath.Join(lowers[0], "top.txt"), []byte("x"), 0o644))
	opts, err := ParseOptions([]string{"lowerdir=" + strings.Join(lowers, ":")})
	must(err)
	stack, err := Open(opts, "")
	must(err)
	b.Cleanup(func() { stack.Close() })
	return stack
}
