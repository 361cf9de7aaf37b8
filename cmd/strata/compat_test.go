package main

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/strata-fs/strata/branches"
)

func TestParseMountProgramArgs(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		options    []string
		mountpoint string
		foreground bool
		debug      bool
	}{
		{"fuse-overlayfs form, as containers/storage runs it",
			[]string{"-o", "lowerdir=/s/l/A,upperdir=/s/1/diff,workdir=/s/1/work,", "/s/1/merged"},
			[]string{"lowerdir=/s/l/A,upperdir=/s/1/diff,workdir=/s/1/work,"}, "/s/1/merged", false, false},
		{"attached -o, foreground and debug", []string{"-f", "-d", "-olowerdir=/a", "/m"}, []string{"lowerdir=/a"}, "/m", true, true},
		{"--debug", []string{"--debug", "-o", "lowerdir=/a", "/m"}, []string{"lowerdir=/a"}, "/m", false, true},
		{"mount.fuse3 form: SOURCE TARGET -o OPTS", []string{"src", "/m", "-o", "rw,lowerdir=/a,dev,suid"}, []string{"rw,lowerdir=/a,dev,suid"}, "/m", false, false},
		{"mount(8) helper flags", []string{"src", "/m", "-n", "-s", "-v", "-t", "fuse.strata", "-o", "lowerdir=/a"}, []string{"lowerdir=/a"}, "/m", false, false},
		{"several -o", []string{"-o", "lowerdir=/a", "-o", "ro", "/m"}, []string{"lowerdir=/a", "ro"}, "/m", false, false},
		{"-- ends the flags", []string{"-o", "lowerdir=/a", "--", "-m"}, []string{"lowerdir=/a"}, "-m", false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if !isMountProgramCall(tc.args) {
				t.Fatalf("isMountProgramCall(%q) = false", tc.args)
			}
			f, mnt, err := parseMountProgramArgs(tc.args)
			if err != nil {
				t.Fatalf("parseMountProgramArgs(%q): %v", tc.args, err)
			}
			if !reflect.DeepEqual(f.options, tc.options) || mnt != tc.mountpoint || f.foreground != tc.foreground || f.debug != tc.debug {
				t.Errorf("got options %q mountpoint %q foreground %v debug %v", f.options, mnt, f.foreground, f.debug)
			}
		})
	}
}

func TestParseMountProgramArgsRefusals(t *testing.T) {
	for _, args := range [][]string{
		{"-o", "lowerdir=/a"},                   // no mountpoint
		{"-o", "lowerdir=/a", "/m", "/n", "/o"}, // too many
		{"-o"},                                  // -o without a value
		{"-x", "-o", "lowerdir=/a", "/m"},       // unknown flag
	} {
		if _, _, err := parseMountProgramArgs(args); !errors.Is(err, errUsage) {
			t.Errorf("parseMountProgramArgs(%q) = %v, want a usage error", args, err)
		}
	}
	for _, args := range [][]string{{"mount", "/m"}, {"demo"}, {"unknown"}} {
		if isMountProgramCall(args) {
			t.Errorf("isMountProgramCall(%q) = true, want false (no -o)", args)
		}
	}
}

// TestPodmanContract parses every argv podman was seen to give its mount
// program (captured by integration/podman_test.go): each must parse, with
// no option ignored, into the stack it describes.
func TestPodmanContract(t *testing.T) {
	data, err := os.ReadFile("../../integration/testdata/podman-mount-argv.txt")
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	for _, line := range strings.Split(string(data), "\n") {
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "[") {
			continue
		}
		calls++
		line = strings.NewReplacer("<store>", "/store", "<id>", "0123", "<link>", "LINK").Replace(line)
		args := strings.Split(line, " | ")
		f, mnt, err := parseMountProgramArgs(args)
		if err != nil {
			t.Fatalf("%q: %v", args, err)
		}
		opts, err := branches.ParseOptions(f.options)
		if err != nil {
			t.Fatalf("%q: %v", args, err)
		}
		if len(opts.Compat.Ignored) > 0 {
			t.Errorf("%q: options ignored: %q", args, opts.Compat.Ignored)
		}
		_, hasUpper := opts.Upper()
		if hasUpper != strings.Contains(line, "upperdir=") || !strings.HasSuffix(mnt, "/merged") {
			t.Errorf("%q: parsed as %+v, mountpoint %q", args, opts, mnt)
		}
		if opts.Volatile != strings.Contains(line, "volatile") {
			t.Errorf("%q: volatile %v", args, opts.Volatile)
		}
	}
	if calls == 0 {
		t.Fatal("the contract lists no calls")
	}
}
