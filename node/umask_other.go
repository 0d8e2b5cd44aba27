//go:build !unix

package node

func syscallUmask(mask int) int { return 0 }
