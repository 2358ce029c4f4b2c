// The DICOMweb calls of the viewer, on the same origin as the page. The
// root is written into the page by drimboxd (data-dicomweb on <html>).

const given = document.documentElement.dataset.dicomweb;
export const root = given && !given.startsWith('%') ? given.replace(/\/$/, '') : '/dicomweb';

// An answer the viewer cannot use; kind is 'notfound', 'denied' or 'network'.
export class LoadError extends Error {
  constructor(kind, detail) {
    super(detail);
    this.kind = kind;
  }
}

export async function getJSON(path) {
  let r;
  try {
    r = await fetch(root + path, { headers: { Accept: 'application/dicom+json' }, credentials: 'same-origin' });
  } catch (e) {
    throw new LoadError('network', `${path}: ${e.message}`);
  }
  if (r.status === 401 || r.status === 403) throw new LoadError('denied', `${path}: HTTP ${r.status}`);
  if (r.status === 404) throw new LoadError('notfound', `${path}: HTTP 404`);
  if (r.status === 204) return [];
  if (!r.ok) {
    let why = `HTTP ${r.status}`;
    try {
      why = (await r.json()).error || why;
    } catch {
      /* not JSON: the status says enough */
    }
    throw new LoadError(r.status < 500 ? 'notfound' : 'network', `${path}: ${why}`);
  }
  try {
    return await r.json();
  } catch (e) {
    throw new LoadError('network', `${path}: ${e.message}`);
  }
}

// First value of a DICOM JSON attribute (PN as its alphabetic form).
export function value(ds, tag) {
  const v = ds?.[tag]?.Value?.[0];
  if (v && typeof v === 'object' && 'Alphabetic' in v) return v.Alphabetic;
  return v;
}

export function number(ds, tag) {
  const v = Number(value(ds, tag));
  return Number.isFinite(v) ? v : undefined;
}

export const q = encodeURIComponent;
