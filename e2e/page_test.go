package e2e

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/simulator"
)

// screenshots, when set, is where TestFarmPageInChromium writes its
// screenshots for the README: go test ./e2e -run FarmPage -screenshots ../docs
var screenshots = flag.String("screenshots", "", "directory for the page's screenshots")

// chromiumPath finds Debian's chromium, which test.sh installs.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("chromium not found: ./test.sh installs it (Debian package chromium)")
	return ""
}

// browser starts a headless Chromium for the test, as the machine's notes
// say to run it here (no sandbox as root, no background networking).
func browser(t *testing.T, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromiumPath(t)), chromedp.NoSandbox,
		chromedp.DisableGPU, chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1400, 900))
	opts = append(opts, extra...)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelA() })
	return ctx
}

// pageOf runs steps against a headless Chromium and fails the test on an
// error; value evaluates one expression.
type pageOf struct {
	t   *testing.T
	ctx context.Context
	pw  *pageWatch
}

func openBrowser(t *testing.T, w, h int) pageOf {
	t.Helper()
	ctx := browser(t, chromedp.WindowSize(w, h))
	p := pageOf{t: t, ctx: ctx, pw: &pageWatch{}}
	p.pw.listen(t, ctx)
	return p
}

func (p pageOf) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		p.t.Fatalf("%s: %v", what, err)
	}
}

func (p pageOf) value(what, expr string) any {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[any](expr))
	if err != nil {
		p.t.Fatalf("%s: %v", what, err)
	}
	return v
}

func (p pageOf) noErrors() {
	p.t.Helper()
	p.pw.mu.Lock()
	defer p.pw.mu.Unlock()
	if len(p.pw.errors) > 0 {
		p.t.Errorf("the page logged errors: %v", p.pw.errors)
	}
}

// pageWatch collects what a page did: its requests and its errors.
type pageWatch struct {
	mu       sync.Mutex
	requests []string
	errors   []string
}

func (pw *pageWatch) listen(t *testing.T, ctx context.Context) {
	t.Helper()
	err := chromedp.Listen(ctx, func(ev any) {
		pw.mu.Lock()
		defer pw.mu.Unlock()
		switch e := ev.(type) {
		case *network.EventRequestWillBeSent:
			pw.requests = append(pw.requests, e.Request.URL)
		case *runtime.EventExceptionThrown:
			text := e.ExceptionDetails.Text
			if x := e.ExceptionDetails.Exception; x != nil && x.Description != "" {
				text += " " + x.Description
			}
			pw.errors = append(pw.errors, text)
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.ConsoleAPICalledTypeError {
				pw.errors = append(pw.errors, fmt.Sprintf("console.error %v", e.Args))
			}
		}
	})
	if err != nil {
		t.Fatalf("listen to the page: %v", err)
	}
}

// TestFarmPageInChromium opens the farm's page in a real headless
// Chromium against the bridge, the simulator and mosquitto: every printer
// appears, a change in the cloud shows without a reload, a counter
// filters (and says so in the URL), wall mode fits the screen, the page
// makes no request outside the bridge and logs no error; without the
// token no control shows and an action is refused, with it a pause
// reaches the simulator and its answer shows (issue 21).
func TestFarmPageInChromium(t *testing.T) {
	var mu sync.Mutex
	var actions []string
	w := fastWorldWith(t, "page", simulator.Options{OnAction: func(path string) {
		mu.Lock()
		actions = append(actions, path)
		mu.Unlock()
	}})
	addr := freeAddr(t)
	const token = "page-test-token-of-24-chars"
	startBridge(t, append(slices.Clone(w.env), "HTTP_LISTEN="+addr, "WEB_TOKEN="+token))
	origin := "http://" + addr
	waitForPrinters(t, w, "page")

	b := openBrowser(t, 1400, 900)
	ctx, pw, run, value := b.ctx, b.pw, b.do, b.value
	ready := chromedp.Poll[chromedp.Void](`window.__u2m && window.__u2m.ready`, chromedp.WithPollingTimeout(20*time.Second))
	run("open the page", chromedp.Navigate(origin+"/"), ready)
	n := value("count tiles", `document.querySelectorAll('.tile').length`)
	if n != 6.0 {
		t.Errorf("%d tiles, want the simulator's 6 printers", n)
	}
	shoot(t, ctx, "page.png")

	// A change in the cloud reaches the open page.
	renamed := w.sim.Rename(w.sim.ClusterIDs()[0], "Lab printer renamed")
	run("see the rename", chromedp.Poll[chromedp.Void](fmt.Sprintf(`[...document.querySelectorAll('.tile')].some(t => `+
		`t.dataset.id === %q && t.textContent.includes('Lab printer renamed'))`, renamed),
		chromedp.WithPollingTimeout(15*time.Second)))

	// A counter filters, and the URL says so.
	run("filter offline", chromedp.Click(chromedp.CSS(`button.counter[data-filter=offline]`)),
		chromedp.Sleep(500*time.Millisecond))
	shown := value("count filtered tiles", `document.querySelectorAll('#farm .tile').length`)
	url, _ := value("read the URL", `location.href`).(string)
	if shown != 1.0 || !strings.Contains(url, "filter=offline") {
		t.Errorf("the offline filter shows %d tiles (want the offline UM3 alone), URL %s", shown, url)
	}

	// Read-only without the token: no control, and an action is refused.
	run("open a printer", chromedp.Click(chromedp.CSS(`button.counter[data-filter=offline]`)),
		chromedp.Sleep(500*time.Millisecond),
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`.tile[data-id=%q]`, renamed))),
		chromedp.WaitVisible(chromedp.ID(`detail`)))
	controls := value("count controls", `document.querySelectorAll('#detail .controls button').length`)
	if controls != 0.0 {
		t.Errorf("%d controls shown without the token", controls)
	}
	resp, err := http.Post(origin+"/api/printers/"+renamed+"/actions", "application/json",
		strings.NewReader(`{"action":"pause"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a POST without the token: %s, want 401", resp.Status)
	}

	// With the token: the controls show, and a pause reaches the cloud.
	run("close the printer", chromedp.Click(chromedp.CSS(`#detail form.close button`)))
	run("unlock", chromedp.Click(chromedp.ID(`unlock`)),
		chromedp.SendKeys(chromedp.ID(`token-input`), token),
		chromedp.Click(chromedp.CSS(`#token-form button[type=submit]`)),
		chromedp.WaitNotVisible(chromedp.ID(`token-dialog`)))
	run("open the printer again", chromedp.Click(chromedp.CSS(fmt.Sprintf(`.tile[data-id=%q]`, renamed))),
		chromedp.WaitVisible(chromedp.CSS(`#detail .controls`)))
	run("pause", chromedp.Click(chromedp.Search(`//dialog[@id="detail"]//button[text()="Pause"]`)))
	pctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	answer, err := chromedp.Run(pctx, chromedp.Poll[string](`document.querySelector('#detail .answer').textContent`+
		`.includes(': ok') && document.querySelector('#detail .answer').textContent`))
	cancel()
	if err != nil {
		t.Errorf("no answer to the pause on the page: %v", err)
	}
	mu.Lock()
	paused := slices.ContainsFunc(actions, func(a string) bool { return strings.HasSuffix(a, "/action/pause") })
	mu.Unlock()
	if !paused {
		t.Errorf("the pause did not reach the simulator: %v (answer %q)", actions, answer)
	}
	shoot(t, ctx, "detail.png")

	// The tile has the job's controls too: resume from it.
	tileSel := fmt.Sprintf(`.tile[data-id=%q]`, renamed)
	run("close the detail", chromedp.Click(chromedp.CSS(`#detail form.close button`)))
	run("resume from the tile", chromedp.Click(chromedp.Search(fmt.Sprintf(`//article[@data-id=%q]//button[text()="Resume"]`, renamed))))
	pctx, cancel = context.WithTimeout(ctx, 20*time.Second)
	_, err = chromedp.Run(pctx, chromedp.Poll[bool](fmt.Sprintf(`document.querySelector('%s .answer').textContent`+
		`.includes('resume: ok')`, tileSel)))
	cancel()
	mu.Lock()
	resumed := slices.ContainsFunc(actions, func(a string) bool { return strings.HasSuffix(a, "/action/print") })
	mu.Unlock()
	if err != nil || !resumed {
		t.Errorf("resume from the tile: %v; the simulator got %v", err, actions)
	}
	if open := value("is the detail open", `document.querySelector('#detail').open`); open != false {
		t.Error("a click on the tile's control opened the detail too")
	}

	// Wall mode fits the screen, without controls.
	run("wall mode", chromedp.Navigate(origin+"/?view=wall"), ready, chromedp.Sleep(1500*time.Millisecond))
	fits := value("measure the wall", `document.documentElement.scrollHeight <= innerHeight + 1 && `+
		`[...document.querySelectorAll('.tile')].every(t => { const r = t.getBoundingClientRect(); `+
		`return r.bottom <= innerHeight + 1 && r.right <= innerWidth + 1 })`)
	wallControls := value("count wall controls",
		`document.querySelectorAll('.tile button, #unlock:not([hidden]), .controls').length`)
	if fits != true || wallControls != 0.0 {
		t.Errorf("wall mode: fits %v, %d controls", fits, wallControls)
	}
	shoot(t, ctx, "wall.png")

	// A phone gets one column, without scrolling sideways.
	run("phone", chromedp.EmulateViewport(390, 844), chromedp.Navigate(origin+"/"), ready)
	columns := value("count the phone's columns", `new Set([...document.querySelectorAll('.tile')].`+
		`map(t => Math.round(t.getBoundingClientRect().left))).size`)
	sideways := value("measure the phone's width", `document.documentElement.scrollWidth > innerWidth + 1`)
	if columns != 1.0 || sideways != false {
		t.Errorf("on a phone: %v columns of tiles, scrolls sideways %v; want one column", columns, sideways)
	}
	shoot(t, ctx, "phone.png")

	pw.mu.Lock()
	defer pw.mu.Unlock()
	for _, r := range pw.requests {
		if !strings.HasPrefix(r, origin+"/") && !strings.HasPrefix(r, "data:") {
			t.Errorf("the page requested %s, outside the bridge", r)
		}
	}
	if len(pw.errors) > 0 {
		t.Errorf("the page logged errors: %v", pw.errors)
	}
}

// shoot writes a screenshot of the page, when -screenshots asks for them.
func shoot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	if *screenshots == "" {
		return
	}
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(filepath.Join(*screenshots, name), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestFarmPageByAName: the page works by a name in WEB_ALLOWED_HOSTS, and
// a name that is not there (a rebinding page's) gets nothing from it
// (issue 28).
func TestFarmPageByAName(t *testing.T) {
	w := fastWorld(t, "named")
	addr := freeAddr(t)
	startBridge(t, append(slices.Clone(w.env), "HTTP_LISTEN="+addr, "WEB_ALLOWED_HOSTS=printers.lab.test"))
	waitForPrinters(t, w, "named")
	_, port, _ := strings.Cut(addr, ":")
	// Both names lead to the bridge, as a rebinding page's would.
	ctx := browser(t, chromedp.Flag("host-resolver-rules", "MAP printers.lab.test 127.0.0.1, MAP evil.lab.test 127.0.0.1"))
	var pw pageWatch
	pw.listen(t, ctx)
	tctx, cancel := context.WithTimeout(ctx, 40*time.Second)
	defer cancel()
	if err := chromedp.Do(tctx, chromedp.Navigate("http://printers.lab.test:"+port+"/"),
		chromedp.Poll[chromedp.Void](`window.__u2m && window.__u2m.ready && document.querySelectorAll('.tile').length === 6`,
			chromedp.WithPollingTimeout(20*time.Second))); err != nil {
		t.Fatalf("the page by its allowed name: %v", err)
	}
	if err := chromedp.Do(tctx, chromedp.Navigate("http://evil.lab.test:"+port+"/")); err != nil {
		t.Fatal(err)
	}
	body, err := chromedp.Run(tctx, chromedp.Evaluate[string](`document.body.innerText`))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(body, "WEB_ALLOWED_HOSTS") || strings.Contains(body, "Printers") {
		t.Errorf("the page by a name not allowed showed %q", body)
	}
	pw.mu.Lock()
	defer pw.mu.Unlock()
	for _, e := range pw.errors {
		if !strings.Contains(e, "421") {
			t.Errorf("the page logged %s", e)
		}
	}
}
