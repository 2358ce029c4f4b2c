// drimbox viewer: the page a referring physician opens from a report link.
// This module draws the first image as soon as it can: the series list,
// the first series' metadata, its middle frame. The tools (tools.js) load
// after that, then the rest of the series, then one frame per other series
// for the thumbnails.
import {
  init as coreInit,
  RenderingEngine,
  Enums,
  imageLoader,
  imageLoadPoolManager,
  utilities,
} from '@cornerstonejs/core';
import { init as loaderInit, wadors } from '@cornerstonejs/dicom-image-loader';
import { root, getJSON, value, number, q, LoadError } from './dicomweb.js';
import { NON_IMAGE, studyUid, seriesList, firstSeries, seriesMetadata, seriesInstances } from './study.js';

const $ = (id) => document.getElementById(id);
// what boot.js asked for (it ran first); the same questions when not
const boot = window.drimboxBoot || {};
if (!boot.uid) {
  boot.uid = studyUid(new URLSearchParams(location.search));
  boot.series = boot.uid.then(seriesList);
  boot.first = boot.series.then(firstSeries);
  boot.meta = boot.first.then(seriesMetadata);
}
const engineId = 'drimbox';

// What tests and benchmarks read: ready once the first image is drawn.
const app = (window.drimboxViewer = { ready: false, firstImageMs: null, error: null });

const slots = [0, 1].map((i) => ({
  id: `vp${i}`,
  element: $(`vp${i}`),
  study: null, // { uid, series: [...] }
  series: null, // the series shown
  ids: [],
}));
let active = slots[0];
let engine = null;
let tools = null; // tools.js, once loaded
const seriesCache = new Map(); // series UID -> Promise<{ ids, meta }>

function fail(e) {
  const kind = e instanceof LoadError ? e.kind : 'internal';
  const text = {
    notfound: 'Examen introuvable',
    denied: 'Accès non autorisé à cet examen',
    network: 'Erreur réseau : les images ne peuvent pas être chargées',
    internal: "Erreur d'affichage : rechargez la page",
  }[kind];
  app.error = kind;
  document.body.dataset.state = `error-${kind}`;
  const m = $('message');
  m.replaceChildren(text);
  const d = document.createElement('span');
  d.className = 'detail';
  d.textContent = e.message || String(e);
  m.firstChild.after(d);
  m.hidden = false;
  console.warn('drimbox viewer:', e);
}
window.addEventListener('unhandledrejection', (ev) => fail(ev.reason));

function frameBase(series, sop) {
  return `wadors:${location.origin}${root}/studies/${series.study}/series/${series.uid}/instances/${sop}/frames/`;
}

// One instance's metadata made known to the image loader; its imageIds.
function addInstance(series, m) {
  const base = frameBase(series, value(m, '00080018'));
  wadors.metaDataManager.add(`${base}1`, m);
  const n = number(m, '00280008') || 1;
  return Array.from({ length: n }, (_, f) => `${base}${f + 1}`);
}

function seriesImages(series) {
  if (!seriesCache.has(series.uid)) {
    // boot.js asked for the first series' metadata already
    const asked = boot.firstUid === series.uid ? boot.meta : seriesMetadata(series);
    const p = asked.then((images) => ({ meta: images, ids: images.flatMap((m) => addInstance(series, m)) }));
    seriesCache.set(series.uid, p);
    p.catch(() => seriesCache.delete(series.uid));
  }
  return seriesCache.get(series.uid);
}

function formatDate(d) {
  return d && d.length === 8 ? `${d.slice(6)}/${d.slice(4, 6)}/${d.slice(0, 4)}` : d || '';
}

// INS display rules: birth name, first given name, birth date, sex; the
// INS itself on demand.
function banner(m) {
  const [family = '', given = ''] = (value(m, '00100010') || '').split('^');
  const sex = { F: 'F', M: 'M', O: 'I' }[value(m, '00100040')] || '';
  const p = $('patient');
  p.textContent = `${family.toUpperCase()} ${given.split(/[ ,]/)[0]}  né(e) le ${formatDate(value(m, '00100030'))}  ${sex}`;
  const ins = document.createElement('button');
  ins.textContent = 'INS';
  ins.title = "Afficher l'identifiant national de santé";
  ins.onclick = () => {
    const oid = value(value(m, '00100024'), '00400032') || value(m, '00100021') || '';
    ins.replaceWith(` INS ${value(m, '00100020') || '?'} (${oid})`);
  };
  p.append(' ', ins);
  $('study').textContent = [
    formatDate(value(m, '00080020')),
    value(m, '00081030') || '',
    value(m, '00080050') ? `n° ${value(m, '00080050')}` : '',
  ]
    .filter(Boolean)
    .join(' — ');
}

function overlay(slot) {
  const vp = engine?.getViewport(slot.id);
  if (!vp || !slot.series) return;
  const i = vp.getCurrentImageIdIndex();
  const voi = vp.getProperties().voiRange;
  const ww = voi ? Math.round(voi.upper - voi.lower) : '';
  const wc = voi ? Math.round((voi.upper + voi.lower) / 2) : '';
  const noSpacing = slot.noSpacing ? '\nMesures en pixels (pas de calibration)' : '';
  slot.element.querySelector('.overlay').textContent =
    `Série ${slot.series.number} ${slot.series.description}\nImage ${i + 1}/${slot.ids.length}\nL ${wc} / F ${ww}${noSpacing}`;
  if (slot === active) {
    const s = $('slider');
    s.max = String(slot.ids.length - 1);
    s.value = String(i);
  }
}

function setActive(slot) {
  active = slot;
  for (const s of slots) s.element.classList.toggle('active', s === slot);
  for (const b of document.querySelectorAll('.thumb'))
    b.classList.toggle('current', b.dataset.series === slot.series?.uid);
  $('cine').hidden = !(slot.series && slot.multiframe);
  overlay(slot);
}

async function show(slot, series, first) {
  const { ids, meta } = await seriesImages(series);
  if (!ids.length) throw new LoadError('notfound', `la série ${series.number} ne contient pas d'image`);
  slot.series = series;
  slot.ids = ids;
  slot.noSpacing = !meta[0]['00280030'] && !meta[0]['00181164'];
  slot.multiframe = meta.some((m) => (number(m, '00280008') || 1) > 1);
  // cine at the acquisition's rate: Frame Time (ms), else Cine Rate
  // (frames/s), else 10 frames/s
  const rate = number(meta[0], '00181063') ? 1000 / number(meta[0], '00181063') : number(meta[0], '00180040');
  if (slot.multiframe) $('fps').value = String(Math.min(60, Math.max(1, Math.round(rate || 10))));
  const vp = engine.getViewport(slot.id);
  const middle = Math.floor(ids.length / 2);
  if (first) {
    slot.element.addEventListener(
      Enums.Events.IMAGE_RENDERED,
      () => {
        app.firstImageMs = performance.now();
        app.previewMs = boot.previewMs ?? null;
        slot.element.querySelector('.preview')?.remove();
        app.ready = true;
        document.body.dataset.state = 'ready';
      },
      { once: true },
    );
    banner(meta[0]);
  }
  performance.mark('drimbox:metadata');
  await vp.setStack(ids, middle);
  performance.mark('drimbox:stack');
  vp.render();
  setActive(slot);
  tools?.attach(slot);
  return ids;
}

// The rest of a series, from the middle outwards, below what is displayed.
function prefetch(ids) {
  const middle = Math.floor(ids.length / 2);
  const order = ids
    .map((id, i) => [Math.abs(i - middle), id])
    .sort((a, b) => a[0] - b[0])
    .map((x) => x[1]);
  return Promise.all(
    order.slice(1).map(
      (id) =>
        new Promise((resolve) => {
          imageLoadPoolManager.addRequest(
            () =>
              imageLoader
                .loadAndCacheImage(id, { priority: 5, requestType: Enums.RequestType.Prefetch })
                .then(resolve, resolve),
            Enums.RequestType.Prefetch,
            { imageId: id },
            5,
          );
        }),
    ),
  );
}

// The series panel: one button per series, its canvas drawn later.
function panel(studies) {
  const aside = $('series');
  aside.replaceChildren();
  for (const st of studies) {
    if (studies.length > 1) {
      const h = document.createElement('h3');
      h.textContent = st.label;
      aside.append(h);
    }
    for (const se of st.series) {
      const b = document.createElement('button');
      b.className = 'thumb';
      b.dataset.series = se.uid;
      b.dataset.number = String(se.number);
      b.title = se.description;
      // a series keeps its canvas (and what is drawn in it) when the
      // panel is built again for a second study
      const c = se.canvas || document.createElement('canvas');
      if (!se.canvas) c.width = c.height = 128;
      const t = document.createElement('span');
      t.textContent = `${se.number} ${se.modality} ${se.description}`;
      const n = document.createElement('span');
      n.textContent = `${se.count} image${se.count > 1 ? 's' : ''}`;
      b.append(c, t, n);
      b.onclick = () => show(active, se).catch(fail);
      se.canvas = c;
      aside.append(b);
    }
  }
  setActive(active);
}

// One frame per series, drawn in its thumbnail.
async function thumbnail(se, ids) {
  if (!ids) {
    const inst = await seriesInstances(se);
    if (!inst.length) return;
    const sop = value(inst[Math.floor(inst.length / 2)], '00080018');
    const [m] = await getJSON(`/studies/${q(se.study)}/series/${q(se.uid)}/instances/${q(sop)}/metadata`);
    if (!m?.['00280010']) return;
    ids = addInstance(se, m);
  }
  await utilities.loadImageToCanvas({
    canvas: se.canvas,
    imageId: ids[Math.floor(ids.length / 2)],
    thumbnail: true,
    requestType: Enums.RequestType.Thumbnail,
    priority: 10,
  });
}

async function thumbnails(series, shown) {
  for (const se of series) {
    if (NON_IMAGE.has(se.modality)) continue;
    const cached = seriesCache.has(se.uid) ? (await seriesCache.get(se.uid)).ids : null;
    await thumbnail(se, se === shown.series ? shown.ids : cached).catch((e) => console.warn('thumbnail', se.uid, e));
  }
}

const opened = [];

async function openStudy(slot, uid, label, known) {
  const series = known || (await seriesList(uid));
  const study = { uid, series, label };
  slot.study = study;
  if (!opened.some((s) => s.uid === uid)) opened.push(study);
  const ids = await show(slot, firstSeries(series), slot === slots[0] && !app.ready);
  panel(opened);
  return { study, ids };
}

async function compare() {
  const m = (await seriesImages(slots[0].series)).meta[0];
  const pid = value(m, '00100020');
  const list = $('priorlist');
  list.replaceChildren();
  const studies = pid ? await getJSON(`/studies?PatientID=${q(pid)}&includefield=00081030`) : [];
  for (const st of studies) {
    const uid = value(st, '0020000D');
    if (uid === slots[0].study.uid) continue;
    const label = `${formatDate(value(st, '00080020'))} ${value(st, '00081030') || ''}`;
    const li = document.createElement('li');
    const b = document.createElement('button');
    b.textContent = `${label} (${(st['00080061']?.Value || []).join('/')})`;
    b.onclick = async () => {
      $('priors').close();
      slots[1].element.hidden = false;
      $('viewports').classList.add('viewports-two');
      engine.resize(true, true);
      const { study, ids } = await openStudy(slots[1], uid, label);
      setActive(slots[1]);
      prefetch(ids).then(() => thumbnails(study.series, slots[1]));
    };
    li.append(b);
    list.append(li);
  }
  if (!list.children.length) list.append('Aucun autre examen de ce patient.');
  $('priors').showModal();
}

async function start() {
  performance.mark('drimbox:script');
  const ready = Promise.resolve(coreInit()).then(() =>
    loaderInit({
      maxWebWorkers: Math.max(1, Math.min(4, navigator.hardwareConcurrency || 2)),
      wasmBasePath: new URL('wasm/', import.meta.url).href,
    }),
  );
  const [uid, series, first] = await Promise.all([boot.uid, boot.series, boot.first, ready]);
  boot.firstUid = first.uid;
  performance.mark('drimbox:init');
  engine = new RenderingEngine(engineId);
  engine.setViewports(
    slots.map((s) => ({
      viewportId: s.id,
      type: Enums.ViewportType.STACK,
      element: s.element,
      defaultOptions: { background: [0, 0, 0] },
    })),
  );
  for (const s of slots) {
    s.element.addEventListener(Enums.Events.IMAGE_RENDERED, () => overlay(s));
    s.element.addEventListener('pointerdown', () => setActive(s));
    s.element.oncontextmenu = (e) => e.preventDefault();
  }
  slots[0].label = 'Examen';
  const { study, ids } = await openStudy(slots[0], uid, 'Examen', series);
  const toolsP = import('./tools.js').then((t) => {
    tools = t;
    t.setup(engineId, slots, { get active() { return active; }, overlay, compare, fail });
  });
  window.addEventListener('resize', () => engine.resize(true, true));
  $('slider').oninput = (e) => engine.getViewport(active.id).setImageIdIndex(Number(e.target.value));
  await toolsP;
  await prefetch(ids);
  await thumbnails(study.series, slots[0]);
}

app.imageToCanvas = (i, col, row) => {
  const vp = engine.getViewport(slots[i].id);
  const world = utilities.imageToWorldCoords(vp.getCurrentImageId(), [col, row]);
  return vp.worldToCanvas(world);
};
app.viewport = (i) => engine?.getViewport(slots[i].id);

start().catch(fail);
