package main

import (
	"fmt"
	"unsafe"
)

// Page contents are 32-bit words computed from a tag and the word's
// index in the test area, so a checker needs no copy of what it expects
// (the forked child cannot allocate) and a mismatch tells whose data
// showed up where: the tags of the setup, the parent and the child never
// produce the same word at the same index.
const (
	tagPre    uint32 = 0x11 // written before fork (the snapshot)
	tagParent uint32 = 0x22 // the parent's writes after fork
	tagChild  uint32 = 0x33 // the child's writes after fork
)

// tagName names a tag in failure messages.
func tagName(tag uint32) string {
	switch tag {
	case tagPre:
		return "pre-fork data"
	case tagParent:
		return "the parent's write"
	case tagChild:
		return "the child's write"
	}
	return fmt.Sprintf("tag %#x", tag)
}

// patWord is word i of the pattern tagged tag (a mixing hash, so that
// neighbouring words, pages and tags all differ).
//
//go:nosplit
func patWord(tag uint32, i uintptr) uint32 {
	x := tag*0x9e3779b1 ^ uint32(i)*0x85ebca77 ^ 0x5bd1e995
	x ^= x >> 15
	x *= 0x2c1b3c6d
	x ^= x >> 12
	x *= 0x297a2d39
	x ^= x >> 15
	return x
}

// fillWords writes n words of pattern tag, starting at index first, to p.
//
//go:nosplit
func fillWords(p unsafe.Pointer, n uintptr, tag uint32, first uintptr) {
	for i := uintptr(0); i < n; i++ {
		*(*uint32)(unsafe.Add(p, i*4)) = patWord(tag, first+i)
	}
}

// checkWords returns the index (relative to p) of the first of n words
// that is not pattern tag from index first, or n if all are.
//
//go:nosplit
func checkWords(p unsafe.Pointer, n uintptr, tag uint32, first uintptr) uintptr {
	for i := uintptr(0); i < n; i++ {
		if *(*uint32)(unsafe.Add(p, i*4)) != patWord(tag, first+i) {
			return i
		}
	}
	return n
}

// fill writes pattern tag over b, whose first word has index first.
func fill(b []byte, tag uint32, first int) {
	if len(b) >= 4 {
		fillWords(unsafe.Pointer(&b[0]), uintptr(len(b)/4), tag, uintptr(first))
	}
}

// mismatch describes the first word of b that is not pattern tag, or
// returns "" when all are.
func mismatch(b []byte, tag uint32, first int) string {
	if len(b) < 4 {
		return ""
	}
	n := uintptr(len(b) / 4)
	i := checkWords(unsafe.Pointer(&b[0]), n, tag, uintptr(first))
	if i == n {
		return ""
	}
	got := *(*uint32)(unsafe.Pointer(&b[i*4]))
	return fmt.Sprintf("byte %#x (page %d): %#08x, want %#08x (%s); it is %s",
		i*4, int(i*4)/pageSize, got, patWord(tag, uintptr(first)+i), tagName(tag), whoseWord(got, uintptr(first)+i))
}

// whoseWord names the tag whose pattern has got at index i.
func whoseWord(got uint32, i uintptr) string {
	for _, tag := range []uint32{tagPre, tagParent, tagChild} {
		if patWord(tag, i) == got {
			return tagName(tag)
		}
	}
	if got == 0 {
		return "zero (a fresh page?)"
	}
	return "none of the test's patterns"
}
