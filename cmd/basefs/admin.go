package main

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/basefs/basefs/log"
	"github.com/basefs/basefs/node"
	"github.com/basefs/basefs/ops"
	"github.com/basefs/basefs/replica"
)

func cmdGenkey(env *cliEnv, p *parsed) error {
	if err := nArgs(p, "genkey", 0, 0); err != nil {
		return err
	}
	path := env.keyPath(p)
	k, err := log.GenerateKeyFile(path, p.has("force"))
	if errors.Is(err, log.ErrKeyExists) {
		return fmt.Errorf("%v (use --force to replace it)", err)
	}
	if err != nil {
		return fmt.Errorf("cannot write key %s: %v", path, err)
	}
	fmt.Fprintln(env.stdout, log.Fingerprint(k.Public().(ed25519.PublicKey)))
	return nil
}

func cmdFingerprint(env *cliEnv, p *parsed) error {
	if err := nArgs(p, "fingerprint", 0, 1); err != nil {
		return err
	}
	path := env.keyPath(p)
	if len(p.args) == 1 {
		if p.has("key") {
			return usagef("give either --key PATH or PUBFILE, not both")
		}
		path = p.args[0]
	}
	pub, err := log.ReadPublicKey(path)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("no key at %s", path)
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(env.stdout, log.Fingerprint(pub))
	return nil
}

// checkAddr validates a HOST:PORT node address.
func checkAddr(a string) error {
	if err := node.CheckAddr(a); err != nil {
		return usagef("%v", err)
	}
	return nil
}

func splitAddrs(values []string) ([]string, error) {
	var out []string
	for _, v := range values {
		for _, a := range strings.Split(v, ",") {
			a = strings.TrimSpace(a)
			if a == "" {
				continue
			}
			if err := checkAddr(a); err != nil {
				return nil, err
			}
			out = append(out, a)
		}
	}
	return out, nil
}

func cmdBootstrap(env *cliEnv, p *parsed) error {
	if err := nArgs(p, "bootstrap", 1, 1); err != nil {
		return err
	}
	name := p.args[0]
	if err := log.ValidateFSName(name); err != nil {
		return usagef("%v", err)
	}
	addrs, err := splitAddrs(p.all("addr"))
	if err != nil {
		return err
	}
	if len(addrs) == 0 {
		return usagef("bootstrap needs --addr HOST:PORT: where this filesystem's first node will listen")
	}
	key, err := env.loadKey(p)
	if err != nil {
		return err
	}
	r, err := replica.Create(env.fsDir(name), name, key, addrs, env.replicaOptions())
	if err != nil {
		return err
	}
	id := r.ID()
	if err := r.Close(); err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "created filesystem %s\n  id        %s\n  root key  %s\n  addresses %s\n",
		name, id, log.Fingerprint(key.Public().(ed25519.PublicKey)), strings.Join(addrs, ", "))
	return nil
}

func cmdGrant(env *cliEnv, p *parsed) error {
	return env.onTarget(p, "grant", 2, true, func(b backend, path string, key ops.Signer) error {
		pub, err := log.ReadPublicKey(p.args[1])
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("no public key file %s", p.args[1])
		}
		if err != nil {
			return err
		}
		if _, err := b.Grant(key, path, pub); err != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "granted key %s write authority over %s\n", log.Fingerprint(pub), path)
		return nil
	})
}

func cmdRevoke(env *cliEnv, p *parsed) error {
	return env.onTarget(p, "revoke", 2, true, func(b backend, path string, key ops.Signer) error {
		k, err := b.ResolveKey(p.args[1])
		if err != nil {
			return err
		}
		if _, err := b.Revoke(key, path, k); err != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "revoked key %s at %s; its entries seen here stay, acknowledged\n", log.Fingerprint(k[:]), path)
		return nil
	})
}

func cmdLog(env *cliEnv, p *parsed) error {
	return env.onTarget(p, "log", 1, false, func(b backend, path string, _ ops.Signer) error {
		recs, err := b.Log(path)
		if err != nil {
			return err
		}
		if p.has("json") {
			return writeJSON(env.stdout, recs)
		}
		tw := tabwriter.NewWriter(env.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "HASH\tTIME\tAUTHOR\tACTION\tPATH\tUSED")
		for _, r := range recs {
			what := r.Path
			switch {
			case r.Action == "rename":
				what = r.Target + " -> " + r.Path
			case r.Target != "":
				what = r.Path + " -> " + r.Target
			case r.Key != "":
				what = r.Path + " key " + shortFP(r.Key)
			}
			used := yesNo(r.Used)
			if r.Why != "" {
				used = "no (" + r.Why + ")"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", shortHash(r.Hash), time.Unix(0, r.Time).Local().Format("2006-01-02 15:04:05"),
				shortFP(r.Author), r.Action, what, used)
		}
		return tw.Flush()
	})
}

func cmdRevert(env *cliEnv, p *parsed) error {
	if p.has("dry-run") {
		return env.onTarget(p, "revert", 2, false, func(b backend, path string, _ ops.Signer) error {
			h, err := b.ResolveEntry(path, p.args[1])
			if err != nil {
				return err
			}
			plan, err := b.RevertPlan(path, h)
			if err != nil || p.has("json") {
				return errOr(err, func() error { return writeJSON(env.stdout, plan) })
			}
			if len(plan) == 0 {
				fmt.Fprintf(env.stdout, "%s is already as it was at %s; revert would write nothing\n", path, h.Short())
			}
			for _, c := range plan {
				switch c.Action {
				case "revert":
					fmt.Fprintf(env.stdout, "revert  %s to %s\n", c.Path, shortHash(c.Entry))
				case "create":
					fmt.Fprintf(env.stdout, "create  %s (%s)\n", c.Path, c.Kind)
				default:
					fmt.Fprintf(env.stdout, "%-7s %s\n", c.Action, c.Path)
				}
			}
			return nil
		})
	}
	return env.onTarget(p, "revert", 2, true, func(b backend, path string, key ops.Signer) error {
		h, err := b.ResolveEntry(path, p.args[1])
		if err != nil {
			return err
		}
		n, err := b.Revert(key, path, h)
		if err != nil {
			return err
		}
		if n == 0 {
			fmt.Fprintf(env.stdout, "%s is already as it was at %s\n", path, h.Short())
		} else {
			fmt.Fprintf(env.stdout, "reverted %s to %s (%d new entries)\n", path, h.Short(), n)
		}
		return nil
	})
}

// errOr returns err when it is set, else f's error.
func errOr(err error, f func() error) error {
	if err != nil {
		return err
	}
	return f()
}

func cmdGrants(env *cliEnv, p *parsed) error {
	return env.onTarget(p, "grants", 1, false, func(b backend, path string, _ ops.Signer) error {
		gs, err := b.Grants(path)
		if err != nil || p.has("json") {
			return errOr(err, func() error { return writeJSON(env.stdout, gs) })
		}
		tw := tabwriter.NewWriter(env.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "PATH\tKEY\tGRANTED BY\tENTRY")
		for _, g := range gs {
			by := shortFP(g.Author)
			if g.Root {
				by = "(root key)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", g.Path, g.Key, by, shortHash(g.Entry))
		}
		return tw.Flush()
	})
}

func cmdConflicts(env *cliEnv, p *parsed) error {
	return env.onTarget(p, "conflicts", 1, false, func(b backend, path string, _ ops.Signer) error {
		rep, err := b.Conflicts(path)
		if err != nil {
			return err
		}
		if p.has("json") {
			return writeJSON(env.stdout, rep)
		}
		if len(rep.Conflicts) == 0 && len(rep.Hidden) == 0 {
			fmt.Fprintln(env.stdout, "no conflicts")
			return nil
		}
		for _, c := range rep.Conflicts {
			authors := make([]string, len(c.Authors))
			for i, a := range c.Authors {
				authors[i] = shortFP(a)
			}
			fmt.Fprintf(env.stdout, "%s: branch %s (head %s, by %s) lost to %s (%s)\n", c.Path, shortHash(c.Loser), shortHash(c.LoserHead),
				strings.Join(authors, ", "), shortHash(c.Winner), c.Reason)
		}
		for _, h := range rep.Hidden {
			fmt.Fprintf(env.stdout, "%s: hidden (head %s): %s\n", h.Path, shortHash(h.Head), h.Reason)
		}
		return nil
	})
}

func cmdStatus(env *cliEnv, p *parsed) error {
	if err := nArgs(p, "status", 1, 1); err != nil {
		return err
	}
	name := p.args[0]
	check := 0
	err := env.withBackend(name, func(b backend) error {
		st, err := b.Status()
		if err != nil {
			return err
		}
		if st.Members == nil {
			st.Members = []node.Member{}
		}
		line, code := statusLine(st)
		if p.has("check") {
			check = code
		}
		if p.has("json") {
			return writeJSON(env.stdout, st)
		}
		fmt.Fprintln(env.stdout, line)
		w := tabwriter.NewWriter(env.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintf(w, "name\t%s\n", st.Name)
		fmt.Fprintf(w, "id\t%s\n", st.ID)
		fmt.Fprintf(w, "entries\t%d (%d count, %d wait for others, %d malformed)\n", st.Entries, st.Counting, st.Pending, st.Malformed)
		fmt.Fprintf(w, "view hash\t%s\n", st.ViewHash)
		fmt.Fprintf(w, "paths\t%d\n", st.Paths)
		fmt.Fprintf(w, "blocks\t%d held, %d missing\n", st.Blocks, st.MissingBlocks)
		if st.Running {
			fmt.Fprintf(w, "node\t%s at %s\n", st.Node, st.Addr)
			for _, m := range st.Members {
				fmt.Fprintf(w, "member\t%s %s %s\n", m.Name, m.Addr, m.Status)
			}
			for _, ps := range st.Peers {
				when := "never synced"
				if !ps.LastSync.IsZero() {
					when = "last sync " + time.Since(ps.LastSync).Round(time.Second).String() + " ago"
				}
				if ps.LastError != "" {
					when += " (last error: " + ps.LastError + ")"
				}
				who := ps.Name
				if who == "" {
					who = ps.Peer
				}
				fmt.Fprintf(w, "peer\t%s: %s, %d entries in, %d out\n", who, when, ps.EntriesReceived, ps.EntriesSent)
			}
			for reason, n := range st.Rejected {
				fmt.Fprintf(w, "rejected\t%d: %s\n", n, reason)
			}
			for _, f := range st.Fetching {
				from := f.From
				if from == "" {
					from = "the next peer synced with"
				}
				line := fmt.Sprintf("block %s from %s", shortHash(f.Hash), from)
				if len(f.NotAt) > 0 {
					line += " (not at " + strings.Join(f.NotAt, ", ") + ")"
				}
				fmt.Fprintf(w, "fetching\t%s\n", line)
			}
		}
		for _, c := range st.Corruptions {
			fmt.Fprintf(w, "corrupt\t%s\n", c)
		}
		return w.Flush()
	})
	if err == nil && check != 0 {
		return exitStatus(check)
	}
	return err
}

// The exit statuses of status --check besides 0 (running and in sync) and
// 1 (status could not be read).
const (
	exitCatchingUp = 3 // running, not (yet) in sync with every alive member
	exitNotRunning = 4 // no node of this home runs the filesystem
)

// statusLine says in one line whether this node is in sync, and the exit
// status of status --check.
func statusLine(st node.Status) (string, int) {
	alive := 0
	for _, m := range st.Members {
		if m.Status == "alive" && m.Name != st.Node {
			alive++
		}
	}
	var missing []string
	if st.Pending > 0 {
		missing = append(missing, fmt.Sprintf("%d entries wait for entries they depend on", st.Pending))
	}
	if st.MissingBlocks > 0 {
		missing = append(missing, fmt.Sprintf("%d blocks missing", st.MissingBlocks))
	}
	if len(st.Behind) > 0 {
		missing = append(missing, "last sync not clean with "+strings.Join(st.Behind, ", "))
	}
	switch {
	case !st.Running:
		return fmt.Sprintf("%s: no node running; local store has %d entries", st.Name, st.Entries), exitNotRunning
	case st.InSync && alive == 0:
		return fmt.Sprintf("%s: running, no other member alive", st.Name), 0
	case st.InSync:
		return fmt.Sprintf("%s: in sync with the %d alive members", st.Name, alive), 0
	default:
		return fmt.Sprintf("%s: catching up (%s)", st.Name, strings.Join(missing, "; ")), exitCatchingUp
	}
}

func cmdVerify(env *cliEnv, p *parsed) error {
	if err := nArgs(p, "verify", 1, 1); err != nil {
		return err
	}
	name := p.args[0]
	return env.withBackend(name, func(b backend) error {
		rep, err := b.Verify()
		if err != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "%d entries: hashes and signatures checked\n", rep.Entries)
		fmt.Fprintf(env.stdout, "%d files: contents checked\n", rep.Files)
		if rep.NotCounting > 0 {
			fmt.Fprintf(env.stdout, "%d entries do not count: their authors have no authority (kept, unused)\n", rep.NotCounting)
		}
		if rep.Malformed > 0 {
			fmt.Fprintf(env.stdout, "%d entries are malformed (signed, but do not fit the log; unused)\n", rep.Malformed)
		}
		if rep.Pending > 0 {
			fmt.Fprintf(env.stdout, "%d entries wait for entries this node does not have yet\n", rep.Pending)
		}
		if rep.MissingBlocks > 0 {
			fmt.Fprintf(env.stdout, "%d content blocks are not here yet\n", rep.MissingBlocks)
		}
		for _, c := range rep.Corruptions {
			fmt.Fprintf(env.stdout, "corrupt store record: %s\n", c)
		}
		for _, h := range rep.BadEntries {
			fmt.Fprintf(env.stdout, "bad hash or signature: entry %s\n", h)
		}
		for _, f := range rep.BadContents {
			fmt.Fprintf(env.stdout, "content does not match its hash: %s\n", f)
		}
		if !rep.OK {
			return fmt.Errorf("verify failed: %d bad entries, %d corrupt records, %d bad contents",
				len(rep.BadEntries), len(rep.Corruptions), len(rep.BadContents))
		}
		fmt.Fprintln(env.stdout, "ok")
		return nil
	})
}
