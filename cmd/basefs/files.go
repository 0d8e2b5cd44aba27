package main

import (
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	gopath "path"
	"strconv"
	"strings"
	"time"

	"github.com/basefs/basefs/log"
	"github.com/basefs/basefs/ops"
	"github.com/basefs/basefs/replica"
	"github.com/basefs/basefs/view"
)

// onTarget checks that cmd got n arguments, the first NAME[:/path], and
// runs fn with that filesystem's backend and the path. With sign, the
// signing key is loaded first, so a missing key is reported before anything
// is opened.
func (env *cliEnv) onTarget(p *parsed, cmd string, n int, sign bool, fn func(b backend, path string, key ops.Signer) error) error {
	if err := nArgs(p, cmd, n, n); err != nil {
		return err
	}
	name, path, err := target(p.args[0])
	if err != nil {
		return err
	}
	var key ops.Signer
	if sign {
		if key, err = env.signer(p); err != nil {
			return err
		}
	}
	return env.withBackend(name, func(b backend) error { return fn(b, path, key) })
}

// optMode parses --mode when given.
func optMode(p *parsed) (uint32, error) {
	if !p.has("mode") {
		return 0, nil
	}
	return parseMode(p.get("mode"))
}

// nArgs checks the number of positional arguments.
func nArgs(p *parsed, cmd string, min, max int) error {
	if len(p.args) < min || len(p.args) > max {
		c := findCommand(cmd)
		return usagef("usage: basefs %s %s", c.name, c.args)
	}
	return nil
}

// target parses a NAME:/path argument.
func target(arg string) (string, string, error) {
	name, path, err := splitTarget(arg)
	if err != nil {
		return "", "", err
	}
	if err := log.ValidateFSName(name); err != nil {
		return "", "", usagef("%v", err)
	}
	if err := log.ValidatePath(path); err != nil {
		return "", "", usagef("%v", err)
	}
	return name, path, nil
}

func parseMode(s string) (uint32, error) {
	m, err := strconv.ParseUint(s, 8, 32)
	if err != nil || m > 0o7777 {
		return 0, usagef("mode %q: give octal permission bits, like 644 or 0755", s)
	}
	return uint32(m), nil
}

func modeString(n view.Node) string {
	m := fs.FileMode(n.Mode & 0o777)
	if n.Mode&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if n.Mode&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if n.Mode&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	switch n.Kind {
	case view.KindDir:
		m |= fs.ModeDir
	case view.KindSymlink:
		m |= fs.ModeSymlink
	}
	str := m.String()
	if n.Kind == view.KindSymlink {
		str = "l" + str[1:] // as ls(1) shows it
	}
	return str
}

func cmdLs(env *cliEnv, p *parsed) error {
	return env.onTarget(p, "ls", 1, false, func(b backend, path string, _ ops.Signer) error {
		n, err := b.Stat(path)
		if err != nil {
			return err
		}
		nodes := []view.Node{n}
		if n.Kind == view.KindDir {
			if nodes, err = b.List(path); err != nil {
				return err
			}
		}
		if p.has("json") {
			type item struct {
				Name   string `json:"name"`
				Path   string `json:"path"`
				Type   string `json:"type"`
				Mode   string `json:"mode"`
				Size   uint64 `json:"size"`
				MTime  int64  `json:"mtime"`
				Target string `json:"target,omitempty"`
				Owner  string `json:"owner,omitempty"`
				Entry  string `json:"entry"`
			}
			items := []item{}
			for _, n := range nodes {
				items = append(items, item{Name: log.Base(n.Path), Path: n.Path, Type: n.Kind.String(), Mode: fmt.Sprintf("%04o", n.Mode),
					Size: n.Size, MTime: n.MTime, Target: n.Target, Owner: n.Owner, Entry: n.Head.String()})
			}
			return writeJSON(env.stdout, items)
		}
		for _, n := range nodes {
			nm := log.Base(n.Path)
			if n.Path == "/" {
				nm = "/"
			}
			if !p.has("long") {
				fmt.Fprintln(env.stdout, nm)
				continue
			}
			user, group := "-", "-"
			if u, g, ok := strings.Cut(n.Owner, ":"); ok {
				user, group = u, g
			}
			line := fmt.Sprintf("%s %3d %-8s %-8s %9d %s %s", modeString(n), n.Nlink, user, group, n.Size, time.Unix(0, n.MTime).Local().Format("Jan _2 15:04"), nm)
			if n.Kind == view.KindSymlink {
				line += " -> " + n.Target
			}
			fmt.Fprintln(env.stdout, line)
		}
		return nil
	})
}

func cmdCat(env *cliEnv, p *parsed) error {
	return env.onTarget(p, "cat", 1, false, func(b backend, path string, _ ops.Signer) error {
		if file, version, ok := splitVersion(path); ok {
			if _, err := b.Stat(path); err != nil {
				data, err := b.ReadFileAt(file, version)
				if err != nil {
					return err
				}
				_, err = env.stdout.Write(data)
				return err
			}
		}
		path, err := followLinks(b, path)
		if err != nil {
			return err
		}
		data, err := b.ReadFile(path)
		if err != nil {
			return err
		}
		_, err = env.stdout.Write(data)
		return err
	})
}

// splitVersion splits /path@ENTRY, where ENTRY is a hash prefix of at
// least 4 hex digits. (A file whose name has such a suffix is read as
// itself: cat tries the whole path first.)
func splitVersion(path string) (file, version string, ok bool) {
	i := strings.LastIndexByte(path, '@')
	if i <= 0 || len(path)-i-1 < 4 {
		return "", "", false
	}
	for _, c := range path[i+1:] {
		if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
			return "", "", false
		}
	}
	return path[:i], path[i+1:], true
}

// followLinks resolves path through relative symbolic links inside the
// filesystem, as cat(1) follows links in the mount. An absolute target
// names a path of the machine the tree is mounted on, so it stays an error.
func followLinks(b backend, path string) (string, error) {
	for hops := 0; hops < 40; hops++ {
		n, err := b.Stat(path)
		if err != nil || n.Kind != view.KindSymlink || strings.HasPrefix(n.Target, "/") {
			return path, nil
		}
		path = gopath.Join(log.Dir(path), n.Target)
	}
	return "", fmt.Errorf("%s: too many levels of symbolic links", path)
}

func cmdWrite(env *cliEnv, p *parsed) error {
	mode, err := optMode(p)
	if err != nil {
		return err
	}
	return env.onTarget(p, "write", 1, true, func(b backend, path string, key ops.Signer) error {
		data, err := io.ReadAll(io.LimitReader(env.stdin, log.MaxFileSize+1))
		if err != nil {
			return fmt.Errorf("reading standard input: %v", err)
		}
		if len(data) > log.MaxFileSize {
			return fmt.Errorf("input is larger than the %d-byte file size limit", log.MaxFileSize)
		}
		_, err = b.WriteFile(key, path, data, replica.WriteOptions{Mode: mode, Parents: true, Sync: true})
		return err
	})
}

func cmdMkdir(env *cliEnv, p *parsed) error {
	mode, err := optMode(p)
	if err != nil {
		return err
	}
	return env.onTarget(p, "mkdir", 1, true, func(b backend, path string, key ops.Signer) error {
		return b.Mkdir(key, path, ops.MkdirOptions{Mode: mode, Parents: p.has("parents")})
	})
}

func cmdRm(env *cliEnv, p *parsed) error {
	return env.onTarget(p, "rm", 1, true, func(b backend, path string, key ops.Signer) error {
		if path == "/" {
			return usagef("refusing to remove / (remove what is inside it instead)")
		}
		err := b.Remove(key, path, ops.RemoveOptions{Recursive: p.has("recursive") || p.has("R")})
		if p.has("force") && replica.IsKind(err, replica.NotExist) {
			return nil
		}
		return err
	})
}

func cmdMv(env *cliEnv, p *parsed) error {
	if err := nArgs(p, "mv", 2, 2); err != nil {
		return err
	}
	name, from, err := target(p.args[0])
	if err != nil {
		return err
	}
	name2, to, err := target(p.args[1])
	if err != nil {
		return err
	}
	if name != name2 {
		return usagef("mv works within one filesystem (%s and %s differ)", name, name2)
	}
	key, err := env.signer(p)
	if err != nil {
		return err
	}
	return env.withBackend(name, func(b backend) error {
		// Like mv(1): moving onto an existing directory moves into it.
		if n, err := b.Stat(to); err == nil && n.Kind == view.KindDir && from != "/" {
			if src, err := b.Stat(from); err == nil && !(src.Kind == view.KindDir && to == log.Dir(from)) {
				to = log.Join(to, log.Base(from))
			}
		}
		return b.Rename(key, from, to)
	})
}

func cmdLn(env *cliEnv, p *parsed) error {
	if err := nArgs(p, "ln", 2, 2); err != nil {
		return err
	}
	name, path, err := target(p.args[1])
	if err != nil {
		return err
	}
	key, err := env.signer(p)
	if err != nil {
		return err
	}
	if p.has("symbolic") {
		tgt := p.args[0]
		return env.withBackend(name, func(b backend) error { return b.Symlink(key, tgt, path) })
	}
	name2, existing, err := target(p.args[0])
	if err != nil {
		return err
	}
	if name != name2 {
		return usagef("hard links stay within one filesystem (%s and %s differ)", name2, name)
	}
	return env.withBackend(name, func(b backend) error { return b.Link(key, existing, path) })
}

func cmdChown(env *cliEnv, p *parsed) error {
	if err := nArgs(p, "chown", 2, 2); err != nil {
		return err
	}
	owner := p.args[0]
	if u, _, _ := strings.Cut(owner, ":"); u == "" {
		return usagef("chown %q: give USER or USER:GROUP", owner)
	}
	name, path, err := target(p.args[1])
	if err != nil {
		return err
	}
	key, err := env.signer(p)
	if err != nil {
		return err
	}
	return env.withBackend(name, func(b backend) error { return b.Chown(key, path, owner) })
}

func cmdChmod(env *cliEnv, p *parsed) error {
	if err := nArgs(p, "chmod", 2, 2); err != nil {
		return err
	}
	mode, err := parseMode(p.args[0])
	if err != nil {
		return err
	}
	name, path, err := target(p.args[1])
	if err != nil {
		return err
	}
	key, err := env.signer(p)
	if err != nil {
		return err
	}
	return env.withBackend(name, func(b backend) error { return b.SetAttr(key, path, ops.SetAttrOptions{Mode: &mode}) })
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func shortHash(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

func shortFP(s string) string {
	if len(s) > 8 {
		return s[:8]
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func padRight(s string, n int) string {
	if len(s) >= n {
		return s
	}
	return s + strings.Repeat(" ", n-len(s))
}
