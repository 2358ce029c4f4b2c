// The first script of the page, small: it asks for the study's series, the
// first series' metadata and the middle image rendered by drimbox (JPEG),
// and draws that image; then it loads the viewer's code (main.js,
// Cornerstone3D), which takes over from these answers.
import { root, q, value } from './dicomweb.js';
import { studyUid, seriesList, firstSeries, seriesMetadata, seriesInstances, frames } from './study.js';

const boot = (window.drimboxBoot = {});
boot.uid = studyUid(new URLSearchParams(location.search));
boot.series = boot.uid.then(seriesList);
boot.first = boot.series.then(firstSeries);
boot.meta = boot.first.then(seriesMetadata);
// main.js reports these failures; here they are only not drawn
for (const p of [boot.uid, boot.series, boot.first, boot.meta]) p.catch(() => {});

// The middle image, chosen from the instance list (its rendering waits
// only for that instance when the PACS still has to send it).
async function preview() {
  const series = await boot.first;
  const all = frames(await seriesInstances(series));
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
// The viewer's code (3 MB of JavaScript) is fetched, compiled and run
// once the preview is drawn (or after half a second at most): doing it
// meanwhile took the main thread from the preview.
const drawn = preview().catch(() => {});
Promise.race([drawn, new Promise((resolve) => setTimeout(resolve, 500))]).then(() =>
  import(document.documentElement.dataset.main),
);
