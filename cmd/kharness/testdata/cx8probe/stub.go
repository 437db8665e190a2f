//go:build !386

package main

// Only the 386 build runs; this keeps `go vet ./...` on amd64 quiet.
func xadd64Flags(p *uint64, lo, hi uint32) uint32 { panic("cx8probe is a 386 program") }
