// Command demofigures measures the demo: time from start to every printer
// state retained, resident memory after a minute, and publishes per minute
// at steady state. Run it with bench/demo-figures.sh.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/bus"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/mqttpub"
)

func main() {
	bin := flag.String("bin", "./ultimaker2mqtt", "binary to measure")
	window := flag.Duration("window", 2*time.Minute, "steady-state window after the first minute")
	flag.Parse()
	if err := measure(*bin, *window); err != nil {
		fmt.Fprintln(os.Stderr, "demofigures:", err)
		os.Exit(1)
	}
}

type seen struct {
	at       time.Time
	topic    string
	retained bool
}

func measure(bin string, window time.Duration) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addr := ln.Addr().String()
	ln.Close()

	var mu sync.Mutex
	var msgs []seen
	watcher, err := mqttpub.New(mqttpub.Config{URL: "tcp://" + addr, ClientID: "demofigures", StateTopic: "demofigures/state",
		MaxReconnectInterval: 50 * time.Millisecond, InboxSize: 100000}, zerolog.Nop())
	if err != nil {
		return err
	}
	watcher.Handle("ultimaker/#", func(_ context.Context, m bus.Inbound) {
		mu.Lock()
		msgs = append(msgs, seen{time.Now(), m.Topic, m.Retained})
		mu.Unlock()
	})

	cmd := exec.Command(bin, "demo")
	cmd.Env = append(os.Environ(), "DEMO_MQTT_LISTEN="+addr)
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return err
	}
	defer cmd.Process.Kill()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go watcher.Run(ctx)

	// Start to every printer state retained: the demo world has six printers.
	var allStates time.Duration
	for allStates == 0 {
		if time.Since(t0) > 30*time.Second {
			return fmt.Errorf("printer states not all seen in 30s")
		}
		time.Sleep(5 * time.Millisecond)
		mu.Lock()
		states := map[string]time.Time{}
		for _, m := range msgs {
			if strings.HasPrefix(m.topic, "ultimaker/printers/") && strings.HasSuffix(m.topic, "/state") {
				if _, ok := states[m.topic]; !ok {
					states[m.topic] = m.at
				}
			}
		}
		mu.Unlock()
		if len(states) == 6 {
			var last time.Time
			for _, at := range states {
				if at.After(last) {
					last = at
				}
			}
			allStates = last.Sub(t0)
		}
	}
	fmt.Printf("start to all 6 printer states on the broker: %s\n", allStates.Round(time.Millisecond))

	time.Sleep(time.Until(t0.Add(time.Minute)))
	fmt.Printf("resident memory after 1 minute: %s\n", rss(cmd.Process.Pid))

	from := time.Now()
	time.Sleep(window)
	to := time.Now()
	fmt.Printf("resident memory after %s: %s\n", time.Since(t0).Round(time.Second), rss(cmd.Process.Pid))
	mu.Lock()
	byKind := map[string]int{}
	total := 0
	for _, m := range msgs {
		if m.at.Before(from) || m.at.After(to) || m.retained {
			continue
		}
		total++
		parts := strings.Split(m.topic, "/")
		byKind[parts[1]+"/"+parts[len(parts)-1]]++
	}
	mu.Unlock()
	perMin := float64(total) / to.Sub(from).Minutes()
	fmt.Printf("publishes per minute, steady state (%s window after minute 1): %.1f\n", window, perMin)
	var kinds []string
	for k := range byKind {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		fmt.Printf("  %-24s %6.1f/min\n", k, float64(byKind[k])/to.Sub(from).Minutes())
	}

	start := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	err = cmd.Wait()
	fmt.Printf("SIGTERM to exit: %s (exit error: %v)\n", time.Since(start).Round(time.Millisecond), err)
	return nil
}

func rss(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			return strings.TrimSpace(strings.TrimPrefix(line, "VmRSS:"))
		}
	}
	return "unknown"
}
