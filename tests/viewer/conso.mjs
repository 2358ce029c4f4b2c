// Drives the consumer exam list (/conso/) in headless Chromium (Debian's,
// through npm playwright-core) and reports what it saw as one JSON object
// on stdout; the Python test starts drimboxd and asserts.
//
// Usage: node conso.mjs SPEC.json
// SPEC: {url (the contextual call's redirect, ?ctx=...), chromium, artifacts,
//        scenario: "list" | "view" | "import" | "error", exam (study UID,
//        for view and import), timeout_ms}
// The scenario's screenshot goes to SPEC.artifacts/<scenario>.png. A
// scenario that fails reports ok false (and why, in "failure"); only a
// crash of the driver exits non-zero.
import fs from 'node:fs';
import path from 'node:path';

import { launchChromium } from './chromium.mjs';


const spec = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const timeout = spec.timeout_ms || 60000;
fs.mkdirSync(spec.artifacts, { recursive: true });

// What the list page shows: banner, exams, error banner.
function summary(page) {
  return page.evaluate(() => {
    const text = (sel) => document.querySelector(sel)?.innerText.trim() ?? null;
    const ins = document.querySelector('#ins .value')?.textContent;
    const box = document.getElementById('error');
    const shown = box && !box.hidden;
    return {
      banner: text('#banner'),
      ins_hidden: ins ? !document.getElementById('ins').checkVisibility() && !document.body.innerText.includes(ins) : null,
      exams: window.drimboxConso.exams.map(({ id, study_uid, state }) => ({ id, study_uid, state })),
      error: shown ? box.querySelector('.message').textContent : null,
      retry: shown && !document.getElementById('retry').hidden,
      count: text('#count'),
      empty: document.getElementById('empty')?.hidden === false ? text('#empty') : null,
      focus: [...document.querySelectorAll('tr.focus')].map((tr) => tr.dataset.id),
    };
  });
}

// The INS as shown once asked for; hidden again afterwards.
async function insShown(page) {
  const toggle = page.locator('#ins-toggle');
  if (!(await toggle.isVisible())) return null;
  await toggle.click();
  const text = await page.locator('#ins').innerText();
  await toggle.click();
  return text;
}

// The row of SPEC.exam, made visible (the call's focus may have filtered it out).
async function examRow(page) {
  const id = await page.evaluate((uid) => window.drimboxConso.exams.find((e) => e.study_uid === uid)?.id, spec.exam);
  if (!id) throw new Error(`exam ${spec.exam} is not listed`);
  const row = page.locator(`tr[data-id="${id}"]`);
  if (!(await row.isVisible())) await page.locator('#filters button[type=reset]').click();
  await row.waitFor({ state: 'visible', timeout: 5000 });
  return { id, row };
}

const rowError = (row) => row.locator('.row-error').textContent();

const scenarios = {
  async list(page, s) {
    return { ok: s.error === null };
  },

  async error(page, s) {
    return { ok: s.error !== null };
  },

  // Voir: the window the page opens, followed to the viewer's first image.
  async view(page) {
    const { row } = await examRow(page);
    const link = row.locator('[data-action=view]');
    const popup = page.context().waitForEvent('page', { timeout }).catch(() => null);
    await link.click();
    await page.waitForFunction(
      (tr) => tr.querySelector('[data-action=view]').getAttribute('href') !== '#' || tr.querySelector('.row-error').textContent,
      await row.elementHandle(),
      { timeout },
    );
    const href = await link.getAttribute('href');
    if (href === '#') return { ok: false, viewer_url: null, row_error: await rowError(row) };
    const viewer_url = new URL(href, page.url()).href;
    let viewer = await popup;
    if (!viewer || viewer.isClosed()) {
      viewer = await page.context().newPage();
      await viewer.goto(viewer_url, { timeout });
    } else {
      await viewer.waitForURL(viewer_url, { timeout });
    }
    await viewer.waitForFunction(() => window.drimboxViewer?.ready || window.drimboxViewer?.error, null, { timeout });
    const v = await viewer.evaluate(() => ({ ...window.drimboxViewer }));
    await viewer.screenshot({ path: path.join(spec.artifacts, 'view-viewer.png') });
    return {
      ok: Boolean(v.ready) && !v.error,
      viewer_url,
      viewer_ready: Boolean(v.ready),
      viewer_error: v.error || null,
      first_image_ms: v.firstImageMs ?? null,
      row_error: await rowError(row),
    };
  },

  // Importer: the row followed until its import ends (or its request fails).
  async import(page) {
    const { row } = await examRow(page);
    const initial = await row.getAttribute('data-state');
    await row.locator('[data-action=import]').click();
    await page.waitForFunction(
      ({ tr, initial }) => {
        const s = tr.dataset.state;
        tr.left ||= s !== initial; // an exam failed before must fail again
        return (tr.left && (s === 'imported' || s === 'failed')) || tr.querySelector('.row-error').textContent !== '';
      },
      { tr: await row.elementHandle(), initial },
      { timeout, polling: 200 },
    );
    const state = await row.getAttribute('data-state');
    return {
      ok: state === 'imported',
      state,
      state_text: await row.locator('.state').innerText(),
      row_error: await rowError(row),
    };
  },
};

if (!scenarios[spec.scenario]) throw new Error(`unknown scenario ${spec.scenario}`);
const browser = await launchChromium(spec.chromium);
const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
const page = await context.newPage();
const pageErrors = [];
page.on('pageerror', (e) => pageErrors.push(e.message));

let result;
const t0 = Date.now();
try {
  await page.goto(spec.url, { timeout });
  await page.waitForFunction(() => window.drimboxConso?.ready, null, { timeout });
  const s = await summary(page);
  s.ins_shown = await insShown(page);
  result = { scenario: spec.scenario, ...s, ...(await scenarios[spec.scenario](page, s)) };
} catch (e) {
  result = { scenario: spec.scenario, ok: false, failure: String(e.stack || e) };
}
await page.screenshot({ path: path.join(spec.artifacts, `${spec.scenario}.png`), fullPage: true }).catch(() => {});
await browser.close();
process.stdout.write(JSON.stringify({ ...result, page_errors: pageErrors, ms: Date.now() - t0 }) + '\n');
