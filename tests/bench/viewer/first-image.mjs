// One browser launch: navigates to URL and prints, as JSON, the time from
// navigation start to the first image drawn, seen the same way for every
// viewer: the first animation frame in which a viewport canvas (a
// cornerstone canvas, or any canvas of at least 256x256) holds lit pixels.
//
// Usage: node first-image.mjs URL [TIMEOUT_MS]
import { launchChromium } from '../../viewer/chromium.mjs';

const [url, timeout = '30000'] = process.argv.slice(2);
const browser = await launchChromium();
const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
await page.addInitScript(() => {
  const lit = (c) => {
    try {
      const ctx = c.getContext('2d', { willReadFrequently: true });
      if (!ctx) return false;
      const { data } = ctx.getImageData(0, 0, c.width, c.height);
      for (let p = 0; p < data.length; p += 4 * 97) if (data[p] + data[p + 1] + data[p + 2] > 60) return true;
    } catch {
      /* a WebGL canvas: not the one shown */
    }
    return false;
  };
  const look = () => {
    for (const c of document.querySelectorAll('canvas')) {
      if ((c.classList.contains('cornerstone-canvas') || (c.width >= 256 && c.height >= 256)) && lit(c)) {
        window.__firstImageMs = performance.now();
        // what had been fetched by then
        const before = performance.getEntriesByType('resource').filter((e) => e.responseEnd <= window.__firstImageMs);
        window.__fetched = { requests: before.length, bytes: before.reduce((n, e) => n + e.encodedBodySize, 0) };
        return;
      }
    }
    requestAnimationFrame(look);
  };
  requestAnimationFrame(look);
});
await page.goto(url);
await page.waitForFunction(() => window.__firstImageMs !== undefined, null, { timeout: Number(timeout) });
const { ms, requests, bytes } = await page.evaluate(() => ({ ms: window.__firstImageMs, ...window.__fetched }));
// drimbox's viewer also says when Cornerstone drew its first image (after
// the server-rendered preview that the detector above sees first)
let interactiveMs = null;
if (await page.evaluate(() => 'drimboxBoot' in window)) {
  await page.waitForFunction(() => window.drimboxViewer?.ready, null, { timeout: Number(timeout) });
  interactiveMs = await page.evaluate(() => window.drimboxViewer.firstImageMs);
}
process.stdout.write(JSON.stringify({ ms, interactiveMs, requests, bytes }) + '\n');
await browser.close();
