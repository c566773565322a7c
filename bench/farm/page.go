package main

import (
	"context"
	"fmt"
	"os/exec"
	"time"

	"github.com/chromedp/chromedp"
)

// page is the farm's page open in a headless Chromium.
type page struct {
	ctx    context.Context
	cancel func()
}

// openPage opens origin's page and waits for the first frame with all n
// tiles; it returns how long that took from the start of the navigation.
func openPage(origin string, n int) (*page, time.Duration, error) {
	path := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		return nil, 0, fmt.Errorf("-page needs chromium (Debian package chromium)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
		chromedp.DisableGPU, chromedp.WindowSize(1600, 1000))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	pg := &page{ctx: ctx, cancel: func() { cancel(); cancelA() }}
	// The tab lives as long as the context of the first run: this one.
	if err := chromedp.Do(ctx); err != nil {
		pg.close()
		return nil, 0, fmt.Errorf("start chromium: %w", err)
	}
	tctx, done := context.WithTimeout(ctx, 2*time.Minute)
	defer done()
	err := chromedp.Do(tctx, chromedp.Navigate(origin+"/"),
		chromedp.Poll[chromedp.Void](fmt.Sprintf(`window.__u2m && __u2m.renderedAt && `+
			`document.querySelectorAll('.tile').length >= %d`, n), chromedp.WithPollingTimeout(2*time.Minute)))
	if err != nil {
		pg.close()
		return nil, 0, fmt.Errorf("open the page: %w", err)
	}
	ms, err := chromedp.Run(tctx, chromedp.Evaluate[float64](`__u2m.renderedAt`))
	if err != nil {
		pg.close()
		return nil, 0, err
	}
	return pg, time.Duration(ms * float64(time.Millisecond)), nil
}

// applied is when the page applied each printer name it was sent first
// (the renames: fresh-<n>), in the machine's clock.
func (p *page) applied() (map[string]time.Time, error) {
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	list, err := chromedp.Run(ctx, chromedp.Evaluate[[][]any](
		`__u2m.applied.filter(a => String(a[3]).startsWith('fresh-')).map(a => [a[3], a[2]])`))
	if err != nil {
		return nil, fmt.Errorf("read the page's updates: %w", err)
	}
	out := make(map[string]time.Time, len(list))
	for _, a := range list {
		name, _ := a[0].(string)
		ms, _ := a[1].(float64)
		if _, dup := out[name]; !dup && name != "" {
			out[name] = time.UnixMicro(int64(ms * 1000))
		}
	}
	return out, nil
}

func (p *page) close() { p.cancel() }
