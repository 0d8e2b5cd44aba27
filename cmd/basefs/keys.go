package main

import (
	"fmt"
	"os"
	"sort"

	"github.com/basefs/basefs/control"
	"github.com/basefs/basefs/gossip"
	"github.com/basefs/basefs/log"
)

// cmdGossipKey manages the shared gossip encryption key: generate writes a
// new key file; install, use, remove and list act on the whole cluster
// through this home's running node.
func cmdGossipKey(env *cliEnv, p *parsed) error {
	if len(p.args) == 0 {
		return usagef("usage: basefs gossip-key generate FILE | gossip-key NAME install|use|remove KEY | gossip-key NAME list")
	}
	if p.args[0] == "generate" {
		if err := nArgs(p, "gossip-key", 2, 2); err != nil {
			return err
		}
		path := p.args[1]
		if _, err := os.Stat(path); err == nil && !p.has("force") {
			return fmt.Errorf("%s exists (use --force to replace it)", path)
		}
		k := gossip.EncodeKey(gossip.GenerateKey())
		if err := log.WriteFileAtomic(path, []byte(k+"\n"), 0o600); err != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "wrote a new gossip key to %s; start every node with --encrypt %s\n", path, path)
		return nil
	}
	if len(p.args) < 2 {
		return usagef("usage: basefs gossip-key NAME install|use|remove KEY | gossip-key NAME list")
	}
	name, op := p.args[0], p.args[1]
	key := ""
	switch op {
	case "list":
		if err := nArgs(p, "gossip-key", 2, 2); err != nil {
			return err
		}
	case "install", "use", "remove":
		if err := nArgs(p, "gossip-key", 3, 3); err != nil {
			return err
		}
		key = p.args[2]
		// A key may be given as a file.
		if b, err := os.ReadFile(key); err == nil {
			ks, err := gossip.ParseKeys(b)
			if err != nil || len(ks) == 0 {
				return fmt.Errorf("%s: not a gossip key file", key)
			}
			key = gossip.EncodeKey(ks[0])
		}
	default:
		return usagef("gossip-key: unknown operation %q (install, use, remove or list)", op)
	}
	if err := log.ValidateFSName(name); err != nil {
		return usagef("%v", err)
	}
	c, err := control.Dial(env.fsDir(name))
	if err != nil {
		return fmt.Errorf("no node of this home is running %s: gossip keys change in a running cluster", name)
	}
	defer c.Close()
	rep, err := c.GossipKey(op, key)
	if err != nil {
		return err
	}
	if op == "list" {
		keys := make([]string, 0, len(rep.Keys))
		for k := range rep.Keys {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(env.stdout, "%s  held by %d of %d nodes, primary on %d\n", k, rep.Keys[k], rep.Nodes, rep.Primary[k])
		}
	} else {
		fmt.Fprintf(env.stdout, "%s: done on the cluster\n", op)
	}
	for n, e := range rep.Errors {
		fmt.Fprintf(env.stdout, "%s: %s\n", n, e)
	}
	return nil
}
