// The first script of the page, small: it asks for the study's series, the
// first series' metadata and the middle image rendered by drimbox (JPEG),
// and draws that image, while the browser still loads the viewer's code
// (main.js, Cornerstone3D), which then takes over from these answers.
import { root, q, value } from './dicomweb.js';
import { studyUid, seriesList, firstSeries, seriesMetadata, frames } from './study.js';

const boot = (window.drimboxBoot = {});
boot.uid = studyUid(new URLSearchParams(location.search));
boot.series = boot.uid.then(seriesList);
boot.first = boot.series.then(firstSeries);
boot.meta = boot.first.then(seriesMetadata);
// main.js reports these failures; here they are only not drawn
for (const p of [boot.uid, boot.series, boot.first, boot.meta]) p.catch(() => {});

async function preview() {
  const [series, images] = await Promise.all([boot.first, boot.meta]);
  const all = frames(images);
  if (!all.length) return;
  const [m, frame] = all[Math.floor(all.length / 2)];
  const url = `${root}/studies/${q(series.study)}/series/${q(series.uid)}/instances/${q(value(m, '00080018'))}/frames/${frame}/rendered`;
  const r = await fetch(url, { headers: { Accept: 'image/jpeg' } });
  if (!r.ok) return;
  const bitmap = await createImageBitmap(await r.blob());
  const vp = document.getElementById('vp0');
  if (window.drimboxViewer?.ready || !vp) return; // the viewer was faster
  const c = document.createElement('canvas');
  c.className = 'preview';
  const w = vp.clientWidth;
  const h = vp.clientHeight;
  const dpr = window.devicePixelRatio || 1;
  c.width = Math.round(w * dpr);
  c.height = Math.round(h * dpr);
  const ctx = c.getContext('2d');
  const scale = Math.min(c.width / bitmap.width, c.height / bitmap.height);
  const dw = bitmap.width * scale;
  const dh = bitmap.height * scale;
  ctx.fillStyle = '#000';
  ctx.fillRect(0, 0, c.width, c.height);
  ctx.drawImage(bitmap, (c.width - dw) / 2, (c.height - dh) / 2, dw, dh);
  vp.append(c);
  boot.previewMs = performance.now();
}
// The viewer's code is being fetched and compiled meanwhile (modulepreload);
// running it takes the main thread for a while, so it waits for the
// preview to be drawn (or half a second at most).
const drawn = preview().catch(() => {});
Promise.race([drawn, new Promise((resolve) => setTimeout(resolve, 500))]).then(() =>
  import(document.documentElement.dataset.main),
);
