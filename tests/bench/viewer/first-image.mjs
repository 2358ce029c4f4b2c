// One browser launch: navigates to URL and prints, as JSON, the time from
// navigation start to the first image drawn (tests/viewer/first-image-probe.mjs).
//
// Usage: node first-image.mjs URL [TIMEOUT_MS]
import { launchChromium } from '../../viewer/chromium.mjs';
import { installFirstImageProbe } from '../../viewer/first-image-probe.mjs';

const [url, timeout = '30000'] = process.argv.slice(2);
const browser = await launchChromium();
const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
await installFirstImageProbe(page);
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
