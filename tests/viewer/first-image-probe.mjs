// The first image a viewer draws, seen the same way for every viewer: the
// first animation frame in which a viewport canvas (a cornerstone canvas,
// or any canvas of at least 256x256) holds lit pixels. Installed on a
// page or a browser context (then also in the windows it opens), it sets
// in each page window.__firstImageMs (since the page's navigation),
// window.__firstImageAt (epoch ms) and window.__fetched ({requests, bytes}
// received by then).
export function installFirstImageProbe(target) {
  return target.addInitScript(() => {
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
          window.__firstImageAt = performance.timeOrigin + window.__firstImageMs;
          const before = performance.getEntriesByType('resource').filter((e) => e.responseEnd <= window.__firstImageMs);
          window.__fetched = { requests: before.length, bytes: before.reduce((n, e) => n + e.encodedBodySize, 0) };
          return;
        }
      }
      requestAnimationFrame(look);
    };
    requestAnimationFrame(look);
  });
}
