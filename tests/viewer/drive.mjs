// Drives the viewer in headless Chromium (Debian's, through npm
// playwright-core) and reports what it saw as JSON on stdout; the Python
// test (tests/integration/test_viewer.py) starts the servers and asserts.
//
// Usage: node drive.mjs SPEC.json   (SPEC: see test_viewer.py)
// Each scenario yields {name, ok, ...measures, error?}; screenshots go to
// SPEC.artifacts.
import fs from 'node:fs';
import path from 'node:path';

import { launchChromium } from './chromium.mjs';


const spec = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
fs.rmSync(spec.artifacts, { recursive: true, force: true });
fs.mkdirSync(spec.artifacts, { recursive: true });

const browser = await launchChromium(spec.chromium);

async function newPage(width = 1280, height = 800) {
  const page = await browser.newPage({ viewport: { width, height } });
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(e.message));
  return page;
}

async function ready(page, timeout = 60000) {
  await page.waitForFunction(() => window.drimboxViewer?.ready || window.drimboxViewer?.error, null, { timeout });
  return page.evaluate(() => ({ ...window.drimboxViewer }));
}

// The viewer on query ('study=UID'...), once its first image is drawn and
// its tools are loaded; what window.drimboxViewer says then.
async function open(page, query) {
  await page.goto(spec.viewer + '?' + query);
  const s = await ready(page);
  await page.waitForFunction(() => document.body.dataset.tools === 'ready');
  return s;
}

// Statistics of what viewport i's canvas shows (RGBA, read back).
function pixels(page, i = 0) {
  return page.evaluate((i) => {
    const c = document.querySelector(`#vp${i} canvas`);
    const { data } = c.getContext('2d').getImageData(0, 0, c.width, c.height);
    let sum = 0;
    let sq = 0;
    let lit = 0;
    let hash = 0;
    const n = data.length / 4;
    for (let p = 0; p < data.length; p += 4) {
      const v = (data[p] + data[p + 1] + data[p + 2]) / 3;
      sum += v;
      sq += v * v;
      if (v > 8) lit++;
      hash = (hash * 31 + data[p] + 7 * data[p + 1] + 13 * data[p + 2]) >>> 0;
    }
    let colour = 0;
    for (let p = 0; p < data.length; p += 4) if (Math.abs(data[p] - data[p + 1]) > 30) colour++;
    const mean = sum / n;
    return { w: c.width, h: c.height, mean, std: Math.sqrt(sq / n - mean * mean), lit: lit / n, colour: colour / n, hash };
  }, i);
}

function state(page, i = 0) {
  return page.evaluate((i) => {
    const vp = window.drimboxViewer.viewport(i);
    const voi = vp.getProperties().voiRange;
    return { index: vp.getCurrentImageIdIndex(), count: vp.getImageIds().length, voi: voi && [voi.lower, voi.upper] };
  }, i);
}

async function box(page, i = 0) {
  return page.locator(`#vp${i}`).boundingBox();
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(spec.artifacts, `${name}.png`) });
}

const scenarios = {
  // The report link, followed to the first image.
  async link(page) {
    await page.goto(spec.link);
    const s = await ready(page);
    await shot(page, 'link');
    return {
      url: page.url(),
      firstImageMs: s.firstImageMs,
      previewMs: s.previewMs,
      error: s.error,
      pixels: await pixels(page),
      banner: await page.locator('#banner').innerText(),
      nondiag: await page.locator('#nondiag').isVisible(),
    };
  },

  // Wheel and keys move through the stack; the image changes.
  async scroll(page) {
    await open(page, 'study=' + spec.studies.ct);
    const before = { ...(await state(page)), pixels: await pixels(page) };
    const b = await box(page);
    await page.mouse.move(b.x + b.width / 2, b.y + b.height / 2);
    for (let k = 0; k < 3; k++) {
      await page.mouse.wheel(0, 120);
      await page.waitForTimeout(150);
    }
    await page.waitForTimeout(400);
    const wheel = { ...(await state(page)), pixels: await pixels(page) };
    await page.keyboard.press('Home');
    await page.waitForTimeout(400);
    const home = await state(page);
    return { before, wheel, home };
  },

  // A drag with the window/level tool changes the VOI and the pixels.
  async windowing(page) {
    await open(page, 'study=' + spec.studies.ct);
    const before = { ...(await state(page)), pixels: await pixels(page) };
    const b = await box(page);
    await page.mouse.move(b.x + b.width / 2, b.y + b.height / 2);
    await page.mouse.down();
    await page.mouse.move(b.x + b.width / 2 + 120, b.y + b.height / 2 + 80, { steps: 8 });
    await page.mouse.up();
    await page.waitForTimeout(300);
    const after = { ...(await state(page)), pixels: await pixels(page) };
    await page.keyboard.press('1'); // lung preset
    await page.waitForTimeout(300);
    const preset = await state(page);
    await shot(page, 'windowing');
    return { before, after, preset };
  },

  // A length measured between two image points, as the tool prints it.
  async measure(page) {
    await open(page, 'study=' + spec.studies.ct);
    await page.keyboard.press('l');
    const b = await box(page);
    const [p, q] = await page.evaluate(
      (pts) => pts.map(([c, r]) => window.drimboxViewer.imageToCanvas(0, c, r)),
      spec.measure.points,
    );
    await page.mouse.move(b.x + p[0], b.y + p[1]);
    await page.mouse.down();
    await page.mouse.move(b.x + q[0], b.y + q[1], { steps: 10 });
    await page.mouse.up();
    await page.waitForTimeout(400);
    await shot(page, 'measure');
    const texts = await page.locator('#vp0 svg text').allTextContents();
    return { texts };
  },

  // Every series of every study draws pixels (one per transfer syntax).
  async syntaxes(page) {
    const out = [];
    for (const [key, uid] of Object.entries(spec.studies)) {
      await page.goto(spec.viewer + '?study=' + uid);
      const s = await ready(page);
      const thumbs = await page.locator('.thumb').count();
      for (let t = 0; t < thumbs; t++) {
        await page.locator('.thumb').nth(t).click();
        await page.waitForFunction(
          (n) => document.querySelector('#vp0 .overlay').textContent.startsWith(`Série ${n} `),
          await page.locator('.thumb').nth(t).getAttribute('data-number'),
        );
        await page.waitForTimeout(300);
        await shot(page, `syntax-${key}-${t}`);
        out.push({ study: key, series: t, error: s.error, pixels: await pixels(page) });
      }
    }
    return { series: out };
  },

  // Cine on the multi-frame ultrasound moves through its frames.
  async cine(page) {
    await open(page, 'study=' + spec.studies.us);
    const before = await state(page);
    await page.keyboard.press('c');
    const seen = new Set();
    for (let k = 0; k < 12; k++) {
      await page.waitForTimeout(100);
      seen.add((await state(page)).index);
    }
    return {
      before,
      seen: [...seen],
      cineVisible: await page.locator('#cine').isVisible(),
      fps: await page.locator('#fps').inputValue(),
    };
  },

  // A prior of the same patient beside the exam.
  async compare(page) {
    await open(page, 'study=' + spec.studies.ct);
    await page.locator('[data-action=compare]').click();
    await page.locator('#priorlist button').first().click();
    await page.waitForFunction(() => window.drimboxViewer.viewport(1)?.getImageIds().length > 0, null, { timeout: 15000 });
    await page.waitForTimeout(500);
    await shot(page, 'compare');
    return { left: await pixels(page, 0), right: await pixels(page, 1), priors: await page.locator('#priorlist button').count() };
  },

  // Tablet width: the page fits, the image is drawn, help opens.
  async tablet(page) {
    await page.setViewportSize({ width: 768, height: 1024 });
    const s = await open(page, 'accession=' + spec.accession);
    await page.keyboard.press('?');
    const help = await page.locator('#help').isVisible();
    await shot(page, 'tablet');
    return {
      error: s.error,
      pixels: await pixels(page),
      overflow: await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth),
      help,
    };
  },

  // What a person sees when the study is not there, is refused, or the
  // network fails.
  async errors(page) {
    const out = {};
    await page.goto(spec.viewer + '?study=1.2.3.4.5.6.7.8.9');
    out.missing = await ready(page);
    out.missingText = await page.locator('#message').innerText();
    await shot(page, 'error-missing');
    await page.route('**/studies/*/series?*', (r) => r.fulfill({ status: 403, contentType: 'application/json', body: '{"error":"forbidden"}' }));
    await page.goto(spec.viewer + '?study=' + spec.studies.ct);
    out.denied = await ready(page);
    out.deniedText = await page.locator('#message').innerText();
    await page.unroute('**/studies/*/series?*');
    await page.route('**/studies/*/series?*', (r) => r.abort('connectionrefused'));
    await page.goto(spec.viewer + '?study=' + spec.studies.ct);
    out.network = await ready(page);
    out.networkText = await page.locator('#message').innerText();
    await page.unroute('**/studies/*/series?*');
    await page.goto(spec.viewer);
    out.none = await ready(page);
    await page.goto(spec.unpublishedLink);
    out.unpublishedLink = { status: 0, text: await page.locator('body').innerText() };
    return out;
  },
};

const results = [];
for (const name of spec.scenarios || Object.keys(scenarios)) {
  const page = await newPage();
  const t0 = Date.now();
  try {
    results.push({ name, ok: true, ...(await scenarios[name](page)), pageErrors: page.errors, ms: Date.now() - t0 });
  } catch (e) {
    await shot(page, `failed-${name}`).catch(() => {});
    results.push({ name, ok: false, error: String(e.stack || e), pageErrors: page.errors });
  }
  await page.close();
}
await browser.close();
process.stdout.write(JSON.stringify(results) + '\n');
