package view

import (
	"fmt"

	"github.com/basefs/basefs/log"
)

// checkConsistency compares what the view maintains incrementally with a
// recomputation from scratch: every chain's head, every visible node, and the
// tree hash.
func (v *View) checkConsistency() error {
	for p, ch := range v.chains {
		if r := v.resolve(ch); r != ch.head {
			return fmt.Errorf("chain %s: head %s, fresh resolution %s", p, cnodeName(ch.head), cnodeName(r))
		}
	}
	for p, ch := range v.chains {
		want := v.computeNode(ch)
		got := v.tree[p]
		var gn *Node
		if got != nil {
			gn = &got.node
		}
		if !sameNode(gn, want) {
			return fmt.Errorf("path %s: tree has %+v, recomputed %+v", p, gn, want)
		}
	}
	for p, vn := range v.tree {
		if p != "/" {
			pv := v.tree[log.Dir(p)]
			if pv == nil || pv.children[log.Base(p)] != vn {
				return fmt.Errorf("path %s: not linked from its parent", p)
			}
		}
	}
	return nil
}

func cnodeName(c *cnode) string {
	if c == nil {
		return "nil"
	}
	return c.en.e.Hash().Short() + " " + c.en.e.Action.String()
}
