package umcg

import (
	"errors"
	"reflect"
	"testing"
	"unsafe"
)

func newTestArena(t *testing.T, n int) *Arena {
	t.Helper()
	a, err := NewArena(n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

func TestSlotIndex(t *testing.T) {
	const base = 0x10000
	for _, tc := range []struct {
		name string
		addr uint64
		n    int
		want int
		ok   bool
	}{
		{"first", base, 4, 0, true},
		{"third", base + 2*64, 4, 2, true},
		{"last", base + 3*64, 4, 3, true},
		{"one past", base + 4*64, 4, -1, false},
		{"below", base - 64, 4, -1, false},
		{"inside a slot", base + 64 + 8, 4, -1, false},
		{"zero", 0, 4, -1, false},
		{"high half of a 64-bit link", base | 1<<32, 4, -1, false},
	} {
		got, ok := slotIndex(base, tc.n, tc.addr)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: slotIndex(%#x) = %d, %v; want %d, %v", tc.name, tc.addr, got, ok, tc.want, tc.ok)
		}
	}
}

func TestArenaSlots(t *testing.T) {
	a := newTestArena(t, 3)
	if a.Len() < 3 || a.Len()*TaskSize%4096 != 0 {
		t.Fatalf("arena of %d slots: not whole pages of at least 3 slots", a.Len())
	}
	if a.Base()%TaskAlign != 0 {
		t.Fatalf("arena base %#x not 64-byte aligned", a.Base())
	}
	seen := map[int]bool{}
	for i := 0; i < a.Len(); i++ {
		s, err := a.Alloc()
		if err != nil {
			t.Fatalf("alloc %d: %v", i, err)
		}
		if seen[s] {
			t.Fatalf("slot %d handed out twice", s)
		}
		seen[s] = true
		if got, ok := a.Index(uint64(a.Task(s).Addr())); !ok || got != s {
			t.Errorf("Index(Task(%d).Addr()) = %d, %v", s, got, ok)
		}
	}
	if _, err := a.Alloc(); err == nil {
		t.Errorf("alloc beyond %d slots succeeded", a.Len())
	}
	a.Free(1)
	if s, err := a.Alloc(); err != nil || s != 1 {
		t.Errorf("alloc after Free(1) = %d, %v", s, err)
	}
}

// TestRunnableList builds lists the way the kernel does and checks what
// a server takes off them.
func TestRunnableList(t *testing.T) {
	for _, tc := range []struct {
		name   string
		pushes []int // slots pushed, in order
		want   []int // list order (a stack: last pushed first)
	}{
		{"empty", nil, nil},
		{"one", []int{2}, []int{2}},
		{"three", []int{1, 2, 3}, []int{3, 2, 1}},
		{"last slot", []int{63, 0}, []int{0, 63}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newTestArena(t, 64)
			srv := a.Task(4)
			if len(tc.pushes) > 0 && tc.pushes[0] == 63 {
				srv = a.Task(5)
			}
			for _, s := range tc.pushes {
				srv.PushRunnable(a.Task(s))
			}
			got, err := a.ListSlots(srv.RunnableWorkers())
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("ListSlots = %v, %v; want %v", got, err, tc.want)
			}
			head := srv.TakeRunnableWorkers()
			if srv.RunnableWorkers() != 0 {
				t.Errorf("head not cleared by take")
			}
			if got, _ := a.ListSlots(head); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("taken list = %v, want %v", got, tc.want)
			}
			if len(tc.want) > 0 && head != uint64(a.Task(tc.want[0]).Addr()) {
				t.Errorf("head %#x is not slot %d at %#x", head, tc.want[0], a.Task(tc.want[0]).Addr())
			}
		})
	}
}

func TestBrokenLists(t *testing.T) {
	a := newTestArena(t, 64)
	// foreign link after one node
	a.Task(1).SetRunnableWorkers(uint64(a.Base()) + 8)
	_, err := a.ListSlots(uint64(a.Task(1).Addr()))
	var le *ListError
	if !errors.As(err, &le) || le.Kind != ListForeign || le.Nodes != 1 {
		t.Errorf("foreign link: %v", err)
	}
	// cycle 2 -> 3 -> 2
	a.Task(2).SetRunnableWorkers(uint64(a.Task(3).Addr()))
	a.Task(3).SetRunnableWorkers(uint64(a.Task(2).Addr()))
	_, err = a.ListSlots(uint64(a.Task(2).Addr()))
	if !errors.As(err, &le) || le.Kind != ListTooLong || le.Nodes != a.Len() {
		t.Errorf("cycle: %v", err)
	}
}

func TestWordAccess(t *testing.T) {
	a := newTestArena(t, 1)
	tk := a.Task(0)
	tk.SetWord32(OffHole, 0xdead)
	tk.SetWord64(OffZero+16, 0xbeef)
	tk.SetState(StateRunning)
	tk.SetNextTID(42 | TIDRunning)
	tk.SetServerTID(7)
	raw := unsafe.Slice((*byte)(unsafe.Pointer(tk)), TaskSize)
	snap, err := DecodeSnapshot(raw)
	if err != nil {
		t.Fatal(err)
	}
	if snap != tk.Snapshot() {
		t.Errorf("decoded %+v, direct %+v", snap, tk.Snapshot())
	}
	want := Snapshot{State: StateRunning, NextTID: 42 | TIDRunning, ServerTID: 7, Hole: 0xdead, Zero: [3]uint64{0, 0, 0xbeef}}
	if snap != want {
		t.Errorf("snapshot %+v, want %+v", snap, want)
	}
	tk.Reset(StateBlocked, 9)
	if s := tk.Snapshot(); s != (Snapshot{State: StateBlocked, ServerTID: 9}) {
		t.Errorf("after Reset: %+v", s)
	}
	for _, off := range []uintptr{2, 64} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Word32(%d) did not panic", off)
				}
			}()
			tk.Word32(off)
		}()
	}
	if _, err := DecodeSnapshot(raw[:63]); err == nil {
		t.Errorf("DecodeSnapshot of 63 bytes succeeded")
	}
}
