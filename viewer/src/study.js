// What the viewer asks DICOMweb about a study: its UID (from the address),
// its series, a series' image metadata. Shared by boot.js (which asks
// before the viewer's code has loaded) and main.js.
import { getJSON, value, number, q, LoadError } from './dicomweb.js';

export const NON_IMAGE = new Set(['KO', 'PR', 'SR', 'DOC', 'REG', 'SEG', 'RTSTRUCT']);

export async function studyUid(params) {
  const uid =
    params.get('study') || params.get('studyUID') || (params.get('StudyInstanceUIDs') || '').split(/[,;]/)[0];
  if (uid) return uid;
  const acc = params.get('accession') || params.get('AccessionNumber');
  if (!acc) throw new LoadError('notfound', "l'adresse ne désigne aucun examen (study= ou accession=)");
  const found = await getJSON(`/studies?AccessionNumber=${q(acc)}`);
  if (!found.length) throw new LoadError('notfound', `aucun examen de numéro d'accès ${acc}`);
  return value(found[0], '0020000D');
}

// The study's series, by series number.
export async function seriesList(uid) {
  const list = await getJSON(`/studies/${q(uid)}/series?includefield=0008103E`);
  if (!list.length) throw new LoadError('notfound', `examen ${uid} inconnu`);
  return list
    .map((s) => ({
      uid: value(s, '0020000E'),
      number: number(s, '00200011') ?? 0,
      modality: value(s, '00080060') || '',
      description: value(s, '0008103E') || '',
      count: number(s, '00201209') ?? 0,
      study: uid,
    }))
    .sort((a, b) => a.number - b.number);
}

// The series shown first: the first one holding images.
export function firstSeries(series) {
  return series.find((s) => !NON_IMAGE.has(s.modality)) || series[0];
}

// Key Object Selection, SR, presentation states: no pixels to draw
const NON_IMAGE_SOP = new Set([
  '1.2.840.10008.5.1.4.1.1.88.59',
  '1.2.840.10008.5.1.4.1.1.88.11',
  '1.2.840.10008.5.1.4.1.1.88.22',
  '1.2.840.10008.5.1.4.1.1.88.33',
  '1.2.840.10008.5.1.4.1.1.11.1',
]);

const byInstanceNumber = (a, b) => (number(a, '00200013') ?? 0) - (number(b, '00200013') ?? 0);

// A series' images' metadata (no SR, KOS...), by instance number.
export async function seriesMetadata(series) {
  const meta = await getJSON(`/studies/${q(series.study)}/series/${q(series.uid)}/metadata`);
  return meta.filter((m) => m['00280010']).sort(byInstanceNumber);
}

// A series' image instances as the index lists them (QIDO: answered at
// once, where the metadata may wait for the PACS to send the series), with
// their number of frames: by instance number when each has one, else in
// the index's order (a series still arriving from another DRIMbox, listed
// as its manifest orders it), so that its middle does not move as
// instances arrive and the one drimbox pulls first is the one drawn first.
export async function seriesInstances(series) {
  const list = await getJSON(`/studies/${q(series.study)}/series/${q(series.uid)}/instances?includefield=00280008`);
  const images = list.filter((m) => !NON_IMAGE_SOP.has(value(m, '00080016')));
  return images.every((m) => number(m, '00200013') != null) ? images.sort(byInstanceNumber) : images;
}

// [instance metadata, frame number] of each image of a series, in order.
export function frames(images) {
  return images.flatMap((m) => Array.from({ length: number(m, '00280008') || 1 }, (_, f) => [m, f + 1]));
}
