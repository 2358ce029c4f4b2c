// One browser launch, as a physician lives it: the RIS's contextual call
// (a form POSTed to drimbox's /conso), the exam list, "Voir" on the exam,
// the viewer's first image (tests/viewer/first-image-probe.mjs); then, the
// viewer closed, the exam followed in the list's API until the whole study
// is here. Prints as JSON the times from the call: list shown, then,
// without the time the click took after the list was shown: viewer page
// opened, first image, whole study.
//
// Usage: node call-to-image.mjs SPEC.json
// SPEC: {base (drimbox's origin), form ({name: value}), exam (study UID),
//        timeout_ms}
import fs from 'node:fs';

import { launchChromium } from '../../viewer/chromium.mjs';
import { installFirstImageProbe } from '../../viewer/first-image-probe.mjs';

const spec = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const timeout = spec.timeout_ms || 300000;
const browser = await launchChromium();
const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
await installFirstImageProbe(context);
const page = await context.newPage();

// the RIS's page: a form that posts the call
await page.setContent('<form method="post"></form>');
await page.evaluate(({ action, form }) => {
  const f = document.forms[0];
  f.action = action;
  for (const [name, value] of Object.entries(form)) {
    const input = document.createElement('input');
    Object.assign(input, { type: 'hidden', name, value });
    f.append(input);
  }
}, { action: `${spec.base}/conso`, form: spec.form });

const t0 = Date.now();
await Promise.all([page.waitForURL(`${spec.base}/conso/`, { timeout }), page.evaluate(() => document.forms[0].submit())]);
await page.waitForFunction(() => window.drimboxConso?.ready, null, { timeout });
const listed = Date.now() - t0;
const id = await page.evaluate((uid) => window.drimboxConso.exams.find((e) => e.study_uid === uid)?.id, spec.exam);
if (!id) throw new Error(`exam ${spec.exam} is not listed`);
const row = page.locator(`tr[data-id="${id}"]`);
if (!(await row.isVisible())) await page.locator('#filters button[type=reset]').click();
await page.evaluate(() => document.addEventListener('click', () => (window.__clickAt ??= Date.now()), true));
const popup = context.waitForEvent('page', { timeout });
await row.locator('[data-action=view]').click();
const viewer = await popup;
await viewer.waitForFunction(() => window.__firstImageAt !== undefined, null, { timeout, polling: 'raf' });
const [first, viewerNav] = (await viewer.evaluate(() => [window.__firstImageAt, performance.timeOrigin])).map((t) => t - t0);
// the viewer closed once seen: its decoding of the whole stack would share
// this machine's two cores with the source's transcoding, which in life
// runs elsewhere
await viewer.close();

// the whole study: the exam's state, polled as the page itself does
let whole = null;
for (;;) {
  const e = await page.evaluate(async (exam) => {
    const r = await fetch('api/exams', { headers: { 'X-Requested-With': 'drimbox' } });
    return (await r.json()).exams.find((x) => x.id === exam);
  }, id);
  if (e.state === 'local') {
    whole = Date.now() - t0;
    break;
  }
  if (e.state === 'failed' || Date.now() - t0 > timeout) throw new Error(`exam ${e.state}: ${e.error || 'timeout'}`);
  await new Promise((resolve) => setTimeout(resolve, 50));
}
const click = (await page.evaluate(() => window.__clickAt)) - t0;
// the time the physician waits: without the time between the list shown
// and the click (Playwright's, here; a person's, in life)
const idle = click - listed;
process.stdout.write(
  JSON.stringify({
    listed_ms: listed,
    click_ms: click,
    viewer_ms: viewerNav - idle,
    first_image_ms: first - idle,
    whole_ms: whole - idle,
  }) + '\n',
);
await browser.close();
