package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// buildFlags are the flags the command is built with (race_test.go adds
// -race when the tests run with it).
var buildFlags []string

// binary is the ultimaker2mqtt command, built once for the package by
// TestMain: subcommands are tested as a person runs them.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "u2m-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "ultimaker2mqtt")
	args := append(append([]string{"build"}, buildFlags...), "-o", binary, "..")
	if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build the command: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// cliError is a command that exited non-zero: its code and what it
// printed on stderr.
type cliError struct {
	code   int
	stderr string
}

func (e *cliError) Error() string {
	return fmt.Sprintf("exit code %d: %s", e.code, strings.TrimSpace(e.stderr))
}

// exitCodeOf is the exit code an error of cli stands for: 0 for nil.
func exitCodeOf(err error) int {
	var ce *cliError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ce):
		return ce.code
	}
	return -1
}

// cli runs the command with args and env (nothing else from the test's
// environment), stdin when not nil, and its standard output copied to
// stdout when not nil.
func cli(ctx context.Context, env []string, stdin io.Reader, stdout io.Writer, args ...string) error {
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = env
	if stdout == nil {
		stdout = io.Discard
	}
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = stdout, &stderr
	if stdin != nil {
		// Through a pipe of the command's own: Wait closes it when the
		// command exits, whereas with cmd.Stdin it would wait for stdin
		// to end (a test's pipe ends only when the test does).
		w, err := cmd.StdinPipe()
		if err != nil {
			return err
		}
		go func() { io.Copy(w, stdin); w.Close() }()
	}
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return &cliError{code: ee.ExitCode(), stderr: stderr.String()}
	}
	return err
}
