package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
)

// browser finds a Chromium or Chrome; without one the test is skipped,
// except under CI=true, where .ci/run installs Debian's chromium.
func browser(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	const why = "no chromium, chromium-browser or google-chrome on PATH (apt-get install chromium)"
	if os.Getenv("CI") == "true" {
		t.Fatal("CI=true and " + why)
	}
	t.Skip(why)
	return ""
}

// TestBrowserUploadsFollowsAndSearches drives the page in a real headless
// browser: sign in, upload a sample export, watch its progress reach 100 %
// and its customers get synced, find a customer by search, look at the dead
// letters, and check that the imports page fits a 360 px screen. With
// WEB_SCREENSHOTS=<folder> it saves a screenshot of each page there (make
// screenshots writes docs/).
func TestBrowserUploadsFollowsAndSearches(t *testing.T) {
	t.Parallel()
	exe := browser(t)
	b := setup(t)
	b.consumer(t)
	deadLetters(t, b, "crm_rejected", "crm_rejected", "invalid_message")

	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(t.Context(), opts...)
	defer cancelAlloc()
	ctx, cancelTab := chromedp.NewContext(actx)
	defer cancelTab()
	// The browser starts with the first action, on a context without a
	// deadline (a deadline there would end the browser).
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate("about:blank")))
	ctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
	defer cancel()

	shots := os.Getenv("WEB_SCREENSHOTS")
	screenshot := func(name string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			if shots == "" {
				return nil
			}
			png, err := chromedp.FullScreenshot(100)(ctx, tg)
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(shots, name), png, 0o600)
		})
	}
	text := func(sel chromedp.CSS) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(sel))
		require.NoError(t, err, "text of %s", sel)
		return s
	}

	// The page asks for the token once, then uploads a sample export and
	// follows its import to the end.
	file := seed(t, "mock_data_1000_header.csv")
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(b.base+"/"),
		chromedp.WaitVisible(chromedp.CSS(`input[name=token]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=token]`), testToken),
		chromedp.Submit(chromedp.CSS(`input[name=token]`)),
		chromedp.WaitVisible(chromedp.CSS(`#upload`)),
		chromedp.SetUploadFiles(chromedp.CSS(`#upload input[type=file]`), []string{file}),
		chromedp.Click(chromedp.CSS(`#upload button[type=submit]`)),
		// The page reloads with the new import, then follows its events.
		chromedp.WaitVisible(chromedp.CSS(`li.import[data-import]`)),
	))
	_, err := chromedp.Run(ctx, chromedp.Poll[bool](`(() => {
		const card = document.querySelector("li.import");
		return !!card && card.querySelector("[data-percent]").textContent === "100 %" &&
			card.querySelector('[data-field="customers.synced"]').textContent === "1,002";
	})()`, chromedp.WithPollingTimeout(3*time.Minute)))
	require.NoError(t, err, "the import did not reach 100 %% with 1,002 synced customers on the page: it shows %q, synced %q",
		text(`li.import [data-percent]`), text(`li.import [data-field="customers.synced"]`))
	require.Equal(t, "mock_data_1000_header.csv", text(`li.import .name`))
	require.Equal(t, "done", text(`li.import [data-field=state]`))
	require.NoError(t, chromedp.Do(ctx, screenshot("web-imports.png")))

	// A customer, found by search.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`nav a[href="/customers"]`)),
		chromedp.WaitVisible(chromedp.CSS(`input[name=q]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=q]`), "hmahedy"),
		chromedp.Submit(chromedp.CSS(`input[name=q]`)),
		chromedp.WaitVisible(chromedp.CSS(`td.email a`)),
	))
	found := text(`table.customers tbody`)
	require.Contains(t, found, "hmahedy0@diigo.com")
	require.Contains(t, found, "Hadleigh Mahedy")
	require.Contains(t, found, "synced")
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(b.base+"/customers?q=a"),
		chromedp.WaitVisible(chromedp.CSS(`td.email a`)),
		screenshot("web-customers.png"),
	))

	// The dead letters, by reason.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`nav a[href="/dead-letters"]`)),
		chromedp.WaitVisible(chromedp.CSS(`table.reasons`)),
		screenshot("web-dead-letters.png"),
	))
	reasons := text(`table.reasons tbody`)
	require.Contains(t, reasons, "crm_rejected")
	require.Contains(t, reasons, "invalid_message")

	// A phone: nothing wider than the screen.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.EmulateViewport(360, 740),
		chromedp.Navigate(b.base+"/"),
		chromedp.WaitVisible(chromedp.CSS(`li.import`)),
		screenshot("web-imports-360px.png"),
	))
	fits, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth <= 360`))
	require.NoError(t, err)
	require.True(t, fits, "the imports page is wider than a 360 px screen")
}
