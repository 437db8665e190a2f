package umcg

import "fmt"

// A runnable list is a singly linked stack of worker structs: the
// server's runnable_workers_ptr holds the user address of the first
// worker's struct umcg_task, each worker's runnable_workers_ptr the next
// one's, 0 ends it. The kernel pushes a worker that becomes RUNNABLE
// (self->link = head; cmpxchg(&server->head, head, self)); the server takes
// the whole list with one xchg and walks it.

// ListErrorKind says how a runnable list is broken.
type ListErrorKind int

// Ways a list can be broken.
const (
	ListForeign ListErrorKind = iota + 1 // a link that is not a slot of the arena
	ListTooLong                          // more nodes than slots: a cycle
)

// ListError is a broken runnable list.
type ListError struct {
	Kind  ListErrorKind
	Addr  uint64 // the offending link
	Nodes int    // nodes walked before it
}

func (e *ListError) Error() string {
	switch e.Kind {
	case ListForeign:
		return fmt.Sprintf("umcg: runnable list link %#x after %d nodes is not a task slot", e.Addr, e.Nodes)
	case ListTooLong:
		return fmt.Sprintf("umcg: runnable list longer than %d nodes (a cycle?), at %#x", e.Nodes, e.Addr)
	}
	return fmt.Sprintf("umcg: broken runnable list (%d)", e.Kind)
}

// step decodes one node of a list: its slot and the link it holds, or
// why the node is bad (0 when it is fine). No allocation: the server
// loop uses it (see Server.loop).
//
//go:nosplit
func (a *Arena) step(addr uint64, walked int) (int, uint64, ListErrorKind) {
	if walked >= a.n {
		return -1, 0, ListTooLong
	}
	i, ok := a.Index(addr)
	if !ok {
		return -1, 0, ListForeign
	}
	return i, a.task(i).RunnableWorkers(), 0
}

// ListSlots walks a list from head without changing it and returns the
// slots in list order: for reports and tests (the list may change under
// a concurrent walk; the result is then only a hint).
func (a *Arena) ListSlots(head uint64) ([]int, error) {
	var out []int
	for head != 0 {
		i, next, kind := a.step(head, len(out))
		if kind != 0 {
			return out, &ListError{Kind: kind, Addr: head, Nodes: len(out)}
		}
		out = append(out, i)
		head = next
	}
	return out, nil
}
