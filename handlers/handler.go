package handlers

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/basefs/basefs/log"
)

// handler is one --handler: its batch of changes not yet run, its worker and
// its cursor.
type handler struct {
	idx          int
	spec         Spec // glob normalized, script absolute
	m            *matcher
	cur          *cursor // owned by the worker after Start
	forceInitial bool

	mu          sync.Mutex
	batch       []pending
	first, last time.Time // arrival of the batch's first and latest change
	flush       bool      // the batch overflowed: run it as soon as possible
	compactAt   int
	notify      chan struct{}
	curKick     chan struct{} // the cursor has ops to flush
	pid         int           // the running script's process (group) id; 0: none
	interrupted bool          // Stop killed the running script
}

// pending is a change in a batch; merged counts the earlier changes of its
// path folded into it when the batch overflowed.
type pending struct {
	c      change
	merged int
}

// add appends changes to the batch (called by the dispatcher; never blocks
// on a script).
func (h *handler) add(cs []change, rn *Runner) {
	h.mu.Lock()
	now := time.Now()
	if len(h.batch) == 0 {
		h.first = now
	}
	h.last = now
	for _, c := range cs {
		h.batch = append(h.batch, pending{c: c})
	}
	if len(h.batch) > h.compactAt {
		n := h.compact()
		rn.merged.Add(uint64(n))
		h.compactAt = max(rn.cfg.MaxPending, 2*len(h.batch))
		h.flush = true
	}
	h.mu.Unlock()
	select {
	case h.notify <- struct{}{}:
	default:
	}
}

// compact folds every change that a newer change of the same path
// supersedes into that newer one, keeping the newest change of each path.
// Renames (which also tell that their old path went away) and grants and
// revokes are never folded, so no path is dropped silently. It returns how
// many changes were folded.
func (h *handler) compact() int {
	newest := map[string]int{} // path → index in rev of its newest change
	rev := make([]pending, 0, len(h.batch))
	folded := 0
	for i := len(h.batch) - 1; i >= 0; i-- {
		p := h.batch[i]
		if p.c.annotation() {
			rev = append(rev, p)
			continue
		}
		if j, ok := newest[p.c.path]; ok && p.c.oldPath == "" {
			rev[j].merged += 1 + p.merged
			folded++ // its own merged ones were counted when folded into it
			continue
		}
		if _, ok := newest[p.c.path]; !ok {
			newest[p.c.path] = len(rev)
		}
		rev = append(rev, p)
	}
	out := make([]pending, len(rev))
	for i, p := range rev {
		out[len(rev)-1-i] = p
	}
	h.batch = out
	return folded
}

// work is the handler's worker: it runs one batch at a time, when the batch
// has been quiet for the quiet period or has waited the maximum delay, and
// a concurrency slot is free.
func (rn *Runner) work(h *handler) {
	defer rn.workers.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		h.mu.Lock()
		n := len(h.batch)
		due := h.last.Add(rn.cfg.Quiet)
		if latest := h.first.Add(rn.cfg.MaxDelay); latest.Before(due) {
			due = latest
		}
		if h.flush {
			due = time.Time{}
		}
		h.mu.Unlock()
		if n == 0 {
			select {
			case <-h.notify:
				continue
			case <-rn.stop:
				return
			}
		}
		if d := time.Until(due); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-h.notify:
				timer.Stop()
			case <-rn.stop:
				timer.Stop()
				return
			}
			continue
		}
		select {
		case rn.sem <- struct{}{}:
		case <-rn.stop:
			return
		}
		select {
		case <-rn.stop:
			<-rn.sem
			return
		default:
		}
		h.mu.Lock()
		batch := h.batch
		h.batch = nil
		h.flush = false
		h.compactAt = rn.cfg.MaxPending
		h.mu.Unlock()
		done := rn.runBatch(h, batch)
		<-rn.sem
		if !done {
			return // interrupted by Stop: the batch fires again on the next start
		}
		h.cur.record(cursorOps(h, batch))
		select {
		case h.curKick <- struct{}{}:
		default:
		}
	}
}

// syncCursor makes the handler's recorded batches durable, off the path of
// its scripts.
func (rn *Runner) syncCursor(h *handler) {
	defer rn.syncers.Done()
	for {
		select {
		case <-h.curKick:
			if err := h.cur.flush(); err != nil {
				rn.log.Error("cannot record handler cursor; recent changes may fire again after a restart",
					"handler", h.spec.String(), "err", err)
			}
		case <-rn.syncStop:
			return
		}
	}
}

// cursorOps is what a batch changes in the handler's cursor.
func cursorOps(h *handler, batch []pending) []cursorOp {
	var ops []cursorOp
	for _, p := range batch {
		c := &p.c
		if c.annotation() {
			if h.m.match(c.path) && !c.entry.IsZero() {
				ops = append(ops, cursorOp{annot: c.entry})
			}
			continue
		}
		if c.oldPath != "" && c.oldGone && h.m.match(c.oldPath) {
			ops = append(ops, cursorOp{path: c.oldPath, del: true})
		}
		if !h.m.match(c.path) {
			continue
		}
		if c.node == nil {
			ops = append(ops, cursorOp{path: c.path, del: true})
		} else {
			ops = append(ops, cursorOp{path: c.path, cp: cursorPath{d: nodeDigest(c.node), kind: kindChar(c.node.Kind)}})
		}
	}
	return ops
}

// jsonChange is one line of a script's stdin.
type jsonChange struct {
	Event   string `json:"event"`
	Path    string `json:"path"`
	OldPath string `json:"old_path"`
	Author  string `json:"author"`
	Entry   string `json:"entry"`
	Merged  int    `json:"merged,omitempty"`
	Initial bool   `json:"initial,omitempty"`
}

func describe(c *change) (author, entry string) {
	if c.entry.IsZero() {
		return "", ""
	}
	return log.Fingerprint(c.author[:]), c.entry.String()
}

// reservedEnv are the variables a script gets from basefs; inherited values
// of these are dropped.
var reservedEnv = []string{"BASEFS_EVENT", "BASEFS_PATH", "BASEFS_OLD_PATH", "BASEFS_NAME", "BASEFS_MOUNT",
	"BASEFS_AUTHOR", "BASEFS_ENTRY", "BASEFS_COUNT", "BASEFS_MERGED", "BASEFS_INITIAL"}

func (rn *Runner) env(batch []pending) []string {
	var env []string
outer:
	for _, kv := range os.Environ() {
		for _, r := range reservedEnv {
			if strings.HasPrefix(kv, r+"=") {
				continue outer
			}
		}
		env = append(env, kv)
	}
	last := &batch[len(batch)-1].c
	count, merged, initial := 0, 0, false
	for _, p := range batch {
		count += 1 + p.merged
		merged += p.merged
		initial = initial || p.c.initial
	}
	author, entry := describe(last)
	env = append(env,
		"BASEFS_EVENT="+last.event,
		"BASEFS_PATH="+last.path,
		"BASEFS_NAME="+rn.cfg.Name,
		"BASEFS_AUTHOR="+author,
		"BASEFS_ENTRY="+entry,
		"BASEFS_COUNT="+strconv.Itoa(count),
	)
	if last.event == "rename" {
		env = append(env, "BASEFS_OLD_PATH="+last.oldPath)
	}
	if rn.cfg.Mount != "" {
		env = append(env, "BASEFS_MOUNT="+rn.cfg.Mount)
	}
	if merged > 0 {
		env = append(env, "BASEFS_MERGED="+strconv.Itoa(merged))
	}
	if initial {
		env = append(env, "BASEFS_INITIAL=1")
	}
	return env
}

// tempFile makes an anonymous file (already unlinked).
func tempFile() (*os.File, error) {
	f, err := os.CreateTemp("", "basefs-handler-*")
	if err != nil {
		return nil, err
	}
	os.Remove(f.Name())
	return f, nil
}

// stdinFile writes the batch as JSON lines to an anonymous file, ready to
// read. A file (not a pipe) means no copying goroutine, and a script that
// does not read it never blocks.
func stdinFile(batch []pending) (*os.File, error) {
	f, err := tempFile()
	if err != nil {
		return nil, err
	}
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	for _, p := range batch {
		c := &p.c
		author, entry := describe(c)
		enc.Encode(jsonChange{Event: c.event, Path: c.path, OldPath: c.oldPath, Author: author, Entry: entry,
			Merged: p.merged, Initial: c.initial})
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return nil, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// tail returns the last n bytes of f, trimmed.
func tail(f *os.File, n int64) string {
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil || size == 0 {
		return ""
	}
	off := max(0, size-n)
	buf := make([]byte, size-off)
	if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
		return ""
	}
	s := strings.TrimSpace(string(buf))
	if off > 0 {
		s = "…" + s
	}
	return s
}

// runBatch runs the script once for the batch. It returns false when Stop
// killed the script (the batch is then not recorded as handled).
func (rn *Runner) runBatch(h *handler, batch []pending) bool {
	last := &batch[len(batch)-1].c
	count := 0
	for _, p := range batch {
		count += 1 + p.merged
	}
	attrs := []any{"handler", h.spec.String(), "event", last.event, "path", last.path, "count", count}
	fail := func(msg string, err error) bool {
		rn.log.Warn(msg, append(attrs, "err", err)...)
		rn.failures.Add(1)
		return true
	}
	stdin, err := stdinFile(batch)
	if err != nil {
		return fail("handler not run: cannot write its input", err)
	}
	defer stdin.Close()
	stdout, err := tempFile()
	if err != nil {
		return fail("handler not run: cannot make its output file", err)
	}
	defer stdout.Close()
	stderr, err := tempFile()
	if err != nil {
		return fail("handler not run: cannot make its output file", err)
	}
	defer stderr.Close()

	cmd := exec.Command(h.spec.Script)
	cmd.Dir = rn.workdir
	cmd.Env = rn.env(batch)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	newGroup(cmd)
	start := time.Now()
	h.mu.Lock()
	select {
	case <-rn.stop:
		h.interrupted = true // Stop came first: no new script starts
	default:
	}
	if h.interrupted {
		h.mu.Unlock()
		return false
	}
	err = cmd.Start()
	if err == nil {
		h.pid = cmd.Process.Pid
	}
	h.mu.Unlock()
	if err != nil {
		return fail("handler could not start", err)
	}
	rn.runs.Add(1)
	rn.running.Add(1)
	if rn.cfg.onStart != nil {
		rn.cfg.onStart(h.idx, batch)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	timer := time.NewTimer(rn.cfg.Timeout)
	timedOut := false
	select {
	case err = <-done:
	case <-timer.C:
		timedOut = true
		signalGroup(cmd.Process.Pid, false)
		grace := time.NewTimer(rn.cfg.KillGrace)
		select {
		case err = <-done:
			signalGroup(cmd.Process.Pid, true) // what it left behind
		case <-grace.C:
			signalGroup(cmd.Process.Pid, true)
			err = <-done
		}
		grace.Stop()
	}
	timer.Stop()
	h.mu.Lock()
	h.pid = 0
	interrupted := h.interrupted
	h.mu.Unlock()
	rn.running.Add(-1)

	attrs = append(attrs, "duration", time.Since(start).Round(time.Millisecond))
	switch {
	case interrupted:
		rn.log.Warn("handler killed at shutdown; its changes fire again on the next start", attrs...)
		return false
	case timedOut:
		rn.timeouts.Add(1)
		rn.log.Warn(fmt.Sprintf("handler timed out after %v and was killed with its process group", rn.cfg.Timeout),
			append(attrs, "stderr", tail(stderr, 4096))...)
	case err != nil:
		code := -1
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		}
		rn.log.Warn("handler failed", append(attrs, "exit", code, "err", err, "stderr", tail(stderr, 4096))...)
		// Counted after the line is logged, so a reader who sees the
		// count also finds the line.
		rn.failures.Add(1)
	default:
		rn.log.Debug("handler ran", append(attrs, "stdout", tail(stdout, 1024), "stderr", tail(stderr, 1024))...)
	}
	return true
}
