// Command tapline is the change-data-capture daemon and toolbox: it runs
// YAML pipelines (`tapline run`), checks them (`validate`), inspects and
// moves their positions (`offsets`), and runs single connectors against
// JSON lines on stdin and stdout (`source`, `sink`).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	if err != nil {
		var ee *exitError
		if errors.As(err, &ee) {
			if ee.msg != "" {
				fmt.Fprintln(os.Stderr, ee.msg)
			}
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "tapline:", err)
		os.Exit(1)
	}
}

// exitError ends the program with a code, printing msg (if any) as is.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }
