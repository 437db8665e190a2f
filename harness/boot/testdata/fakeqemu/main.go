// Command fakeqemu stands in for qemu-system-* in unit tests of the boot
// and verdict logic. It accepts QEMU's command line, connects to the
// events socket the way QEMU's socket chardev does, and replays a script:
// console text, guest events, silence, floods, and an exit code or a
// signal. End-to-end tests boot real kernels; this only drives the host
// side through every path it must handle.
//
// The script is the file named by fakeqemu.script= on the kernel command
// line (-append) or by $FAKEQEMU_SCRIPT. One step per line:
//
//	console TEXT         a console line
//	console-raw N        N bytes of 'x' without a newline
//	stderr TEXT          a line on QEMU's stderr
//	event JSON           a line on the events port
//	event-big N          an event line of N bytes
//	sleep DURATION
//	noisy DURATION TEXT  console lines of TEXT for DURATION (0: forever)
//	hang                 sleep forever
//	exit CODE
//	signal NAME          kill itself (TERM, KILL, SEGV)
//	term-from PID        print QEMU's "terminating on signal 15 from pid PID" and exit 0
package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	var script, sock string
	args := os.Args[1:]
	for i := 0; i+1 < len(args); i++ {
		switch args[i] {
		case "-append":
			for _, w := range strings.Fields(args[i+1]) {
				if v, ok := strings.CutPrefix(w, "fakeqemu.script="); ok {
					script = v
				}
			}
		case "-chardev":
			if strings.HasSuffix(args[i+1], ",id=ev") && strings.HasPrefix(args[i+1], "socket,path=") {
				sock = strings.TrimSuffix(strings.TrimPrefix(args[i+1], "socket,path="), ",id=ev")
			}
		case "-version":
		}
	}
	if len(args) == 1 && args[0] == "-version" {
		fmt.Println("QEMU emulator version 10.0.2 (fakeqemu)")
		return
	}
	if script == "" {
		script = os.Getenv("FAKEQEMU_SCRIPT")
	}
	data, err := os.ReadFile(script)
	if err != nil {
		fmt.Fprintf(os.Stderr, "fakeqemu: script: %v\n", err)
		os.Exit(1)
	}
	var ev net.Conn
	if sock != "" {
		if ev, err = net.Dial("unix", sock); err != nil {
			fmt.Fprintf(os.Stderr, "qemu-system-x86_64: -chardev socket: Failed to connect to '%s': %v\n", sock, err)
			os.Exit(1)
		}
	}
	out := bufio.NewWriter(os.Stdout)
	flush := func() { out.Flush() }
	for _, line := range strings.Split(string(data), "\n") {
		cmd, arg, _ := strings.Cut(strings.TrimSpace(line), " ")
		switch cmd {
		case "", "#":
		case "console":
			fmt.Fprintln(out, arg)
			flush()
		case "console-raw":
			n, _ := strconv.Atoi(arg)
			out.WriteString(strings.Repeat("x", n))
			flush()
		case "stderr":
			fmt.Fprintln(os.Stderr, arg)
		case "event":
			if ev != nil {
				ev.Write([]byte(arg + "\n"))
			}
		case "event-big":
			n, _ := strconv.Atoi(arg)
			if ev != nil {
				ev.Write([]byte(`{"type":"log","message":"` + strings.Repeat("y", n) + "\"}\n"))
			}
		case "sleep":
			d, _ := time.ParseDuration(arg)
			time.Sleep(d)
		case "noisy":
			ds, text, _ := strings.Cut(arg, " ")
			d, _ := time.ParseDuration(ds)
			end := time.Now().Add(d)
			for d == 0 || time.Now().Before(end) {
				fmt.Fprintln(out, text)
				flush()
				time.Sleep(20 * time.Millisecond)
			}
		case "hang":
			select {}
		case "exit":
			code, _ := strconv.Atoi(arg)
			flush()
			os.Exit(code)
		case "signal":
			flush()
			sig := map[string]syscall.Signal{"TERM": syscall.SIGTERM, "KILL": syscall.SIGKILL, "SEGV": syscall.SIGSEGV}[arg]
			syscall.Kill(os.Getpid(), sig)
			time.Sleep(time.Second)
		case "term-from":
			flush()
			fmt.Fprintf(os.Stderr, "qemu-system-x86_64: terminating on signal 15 from pid %s (bash)\n", arg)
			os.Exit(0)
		default:
			fmt.Fprintf(os.Stderr, "fakeqemu: unknown step %q\n", cmd)
			os.Exit(3)
		}
	}
	flush()
}
