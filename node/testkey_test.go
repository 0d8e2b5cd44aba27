package node

import (
	"crypto/ed25519"
	"crypto/sha256"
)

func testKey(name string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("node-test:" + name))
	return ed25519.NewKeyFromSeed(seed[:])
}
