// The consumer's exam list: the patient of the contextual call, the imaging
// exams the DMP lists for them and, per exam, its report, the viewer and
// the import into the local PACS. Talks to drimboxd's /conso/api (JSON,
// session cookie); filtering and sorting happen here.

const API = new URL('api/', import.meta.url);
const POST = { method: 'POST', headers: { 'X-Requested-With': 'drimbox' } };
const EXPIRED = 'Session expirée : rouvrez drimbox depuis votre logiciel';
const STATES = {
  remote: 'Disponible',
  pulling: 'Téléchargement…',
  local: 'Téléchargé',
  importing: 'Import en cours…',
  imported: 'Importé dans le PACS',
  failed: 'Échec',
};
const PENDING_MS = 15000; // how long an accepted import may leave the state unchanged

// Test hook (tests/viewer/conso.mjs).
const hook = (window.drimboxConso = { ready: false, error: null, exams: [] });
const $ = (id) => document.getElementById(id);

let session = null; // GET session's answer
let loaded = false; // the exams were listed at least once
let expired = false;
let pollTimer = 0;
const rows = new Map(); // exam id -> its <tr>
const rowErrors = new Map(); // exam id -> why its last view or import failed
const pending = new Map(); // exam id -> {state, until}: import asked, not yet under way

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function call(path, options = {}) {
  let r;
  try {
    r = await fetch(new URL(path, API), { cache: 'no-store', ...options });
  } catch {
    throw new ApiError(0, 'drimbox ne répond pas : vérifiez la connexion');
  }
  const body = await r.json().catch(() => ({}));
  if (r.status === 401) expire();
  if (!r.ok) throw new ApiError(r.status, body.error || `Erreur ${r.status}`);
  return body;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  node.append(...children);
  return node;
}

// "20240115" (DICOM) or "2024-01-15" (ISO) as 15/01/2024.
function formatDate(d) {
  const m = /^(\d{4})-?(\d{2})-?(\d{2})$/.exec(d || '');
  return m ? `${m[3]}/${m[2]}/${m[1]}` : d || '';
}

// Text is replaced only when it changes, so that live regions do not repeat it.
function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

const modalities = (e) => (e.modality || '').split('\\').filter(Boolean);
const plural = (n, word) => `${n} ${word}${n > 1 ? 's' : ''}`;

// Nothing but the message: the page can do nothing more without a session.
function expire() {
  expired = true;
  clearTimeout(pollTimer);
  const box = $('error');
  box.querySelector('.message').textContent = EXPIRED;
  $('retry').hidden = true;
  box.hidden = false;
  box.classList.add('expired');
  document.body.replaceChildren(box);
  Object.assign(hook, { ready: true, error: EXPIRED });
}

// The error banner; a retry is offered when the cause may be temporary.
function showError(e) {
  if (expired) return;
  hook.error = e ? e.message : null;
  $('error').hidden = !e;
  if (!e) return;
  $('error').querySelector('.message').textContent = e.message;
  $('retry').hidden = !(e.status === 0 || e.status >= 500);
}

function status(text) {
  if (expired) return;
  $('status').textContent = text;
  $('status').classList.toggle('busy', Boolean(text));
  $('exams').setAttribute('aria-busy', String(Boolean(text)));
}

// Identity-vigilance display: birth name, first given name, birth date,
// sex, birthplace; the INS and its OID only on demand.
function showPatient({ patient: p, professional }) {
  const field = (key, value) => (value ? el('span', { class: 'field' }, el('span', { class: 'key' }, key), ' ', value) : '');
  const given = (p.given || '').split(/[ ,]/)[0];
  $('identity').replaceChildren(
    el('strong', { class: 'name' }, `${(p.family || '').toUpperCase()} ${given}`),
    field({ F: 'Née le', M: 'Né le' }[p.gender] || 'Né(e) le', formatDate(p.birth_date)),
    field('Sexe', { F: 'Féminin', M: 'Masculin' }[p.gender] || 'Indéterminé'),
    field('Lieu de naissance (INSEE)', p.district),
  );
  $('ins').querySelector('.value').textContent = p.ins || '';
  $('ins').querySelector('.oid').textContent = p.ins_oid || '';
  $('professional').textContent = professional?.name || '';
  $('patient').hidden = false;
}

function toggleIns() {
  const show = $('ins').hidden;
  $('ins').hidden = !show;
  $('ins-toggle').setAttribute('aria-expanded', String(show));
  $('ins-toggle').textContent = show ? "Masquer l'INS" : "Afficher l'INS";
}

function isFocus(e) {
  const f = session.focus || {};
  return Boolean((f.study_uid && e.study_uid === f.study_uid) || (f.accession && e.accession === f.accession));
}

// Fills a filter's list, keeping the choice; rebuilt only when it changes.
function setOptions(select, values) {
  const list = [...new Set(values.filter(Boolean))].sort((a, b) => a.localeCompare(b, 'fr'));
  const key = list.join('\n');
  if (select.dataset.key === key) return;
  select.dataset.key = key;
  const current = select.value;
  select.replaceChildren(new Option('Toutes', ''), ...list.map((v) => new Option(v)));
  select.value = list.includes(current) ? current : '';
}

// The contextual call's focus as the first filters.
function prefill() {
  const f = session.focus || {};
  $('f-modality').value = modalities(f)[0] || '';
  $('f-region').value = f.region || '';
  $('f-from').value = $('f-to').value = (f.study_date || '').replace(/^(\d{4})(\d{2})(\d{2})$/, '$1-$2-$3');
  $('f-accession').value = f.accession || '';
}

function filters() {
  const v = (id) => $(id).value.trim();
  return {
    modality: v('f-modality'),
    region: v('f-region'),
    from: v('f-from').replaceAll('-', ''),
    to: v('f-to').replaceAll('-', ''),
    accession: v('f-accession').toLowerCase(),
  };
}

function matches(e, f) {
  return (
    (!f.modality || modalities(e).includes(f.modality)) &&
    (!f.region || e.region === f.region) &&
    (!f.from || (e.date && e.date >= f.from)) &&
    (!f.to || (e.date && e.date <= f.to)) &&
    (!f.accession || (e.accession || '').toLowerCase().includes(f.accession))
  );
}

function newRow(id) {
  const report = el('a', { 'data-action': 'report', href: new URL(`exams/${encodeURIComponent(id)}/report`, API), target: '_blank', rel: 'noopener' }, 'Compte rendu');
  return el(
    'tr',
    { 'data-id': id },
    ...['date', 'modality', 'region', 'description', 'source', 'accession'].map((c) => el('td', { class: c })),
    el('td', {}, report),
    el('td', { class: 'state' }, el('span', { class: 'label' }), el('progress', { 'aria-label': 'Progression' })),
    el(
      'td',
      { class: 'actions' },
      el('a', { 'data-action': 'view', href: '#', class: 'button' }, 'Voir'),
      el('button', { type: 'button', 'data-action': 'import' }, 'Importer dans mon PACS'),
      el('span', { class: 'row-error', role: 'alert' }),
    ),
  );
}

function stateLabel(e, done, total) {
  if (e.state === 'failed') return `Échec : ${e.error || 'erreur inconnue'}`;
  const label = STATES[e.state] || e.state;
  if (total > 0) return `${label} ${done}/${total}`;
  return done > 0 ? `${label} (${done})` : label;
}

function update(tr, e) {
  const q = (s) => tr.querySelector(s);
  const set = (s, text) => setText(q(s), text);
  const when = formatDate(e.date);
  const mods = modalities(e).join(', ');
  const summary = [mods, when && `du ${when}`].filter(Boolean).join(' ') || 'examen';
  set('.date', when);
  set('.modality', mods);
  set('.region', e.region || '');
  set('.description', e.description || '');
  set('.source', e.source || '');
  set('.accession', e.accession || '');
  tr.classList.toggle('focus', isFocus(e));

  const report = q('[data-action=report]');
  report.hidden = !e.report;
  report.setAttribute('aria-label', `Compte rendu ${summary}`);

  const [done, total] =
    e.state === 'pulling' ? [e.received, e.expected] : e.state === 'importing' ? [e.import_sent, e.import_total] : [];
  const bar = q('progress');
  bar.hidden = done === undefined;
  if (total > 0) {
    bar.max = total;
    bar.value = Math.min(done, total);
  } else {
    bar.removeAttribute('value'); // indeterminate
  }
  const label = stateLabel(e, done, total);
  set('.label', label);
  if (tr.dataset.state && tr.dataset.state !== e.state) $('announce').textContent = `${summary} : ${label}`;
  tr.dataset.state = e.state;

  q('[data-action=view]').setAttribute('aria-label', `Voir ${summary}`);
  const imp = q('[data-action=import]');
  imp.disabled = e.state === 'importing' || e.state === 'imported' || pending.has(e.id);
  imp.setAttribute('aria-label', `Importer dans mon PACS ${summary}`);
  set('.row-error', rowErrors.get(e.id) || '');
}

function render() {
  if (expired) return;
  const f = filters();
  const shown = [...hook.exams].sort((a, b) => (b.date || '').localeCompare(a.date || '')).filter((e) => matches(e, f));
  const trs = shown.map((e) => {
    if (!rows.has(e.id)) rows.set(e.id, newRow(e.id));
    update(rows.get(e.id), e);
    return rows.get(e.id);
  });
  const body = $('rows');
  // rows are moved only when the order changes, so as to keep the focus
  if (trs.length !== body.children.length || trs.some((tr, i) => body.children[i] !== tr)) body.replaceChildren(...trs);

  const n = hook.exams.length;
  $('list').hidden = !loaded;
  $('filters').hidden = $('count').hidden = n === 0;
  setText($('count'), `${plural(n, 'examen')} (${plural(shown.length, 'affiché')})`);
  $('table-wrap').hidden = shown.length === 0;
  $('empty').hidden = shown.length > 0;
  setText($('empty'), n ? 'Aucun examen ne correspond aux filtres.' : "Aucun examen d'imagerie dans le DMP pour ce patient");
}

const busy = () => hook.exams.some((e) => e.state === 'pulling' || e.state === 'importing') || pending.size > 0;

function schedulePoll() {
  if (!pollTimer && !expired)
    pollTimer = setTimeout(() => {
      pollTimer = 0;
      refresh(true);
    }, 1000);
}

function setExams(exams) {
  hook.exams = exams;
  for (const id of rows.keys()) if (!exams.some((e) => e.id === id)) rows.delete(id);
  for (const [id, p] of pending) {
    const e = exams.find((x) => x.id === id);
    if (!e || e.state !== p.state || Date.now() > p.until) pending.delete(id);
  }
  setOptions($('f-modality'), [...exams.flatMap(modalities), ...modalities(session.focus || {})]);
  setOptions($('f-region'), [...exams.map((e) => e.region), session.focus?.region]);
  const first = !loaded;
  if (first) prefill();
  loaded = true;
  render();
  if (first) document.querySelector('tr.focus')?.scrollIntoView({ block: 'center' });
  if (busy()) schedulePoll();
}

// Loads the session (once) and the exams, both asked at once; quiet for
// the polls.
async function refresh(quiet = false) {
  if (!quiet) status('Recherche des examens dans le DMP…');
  try {
    const exams = call('exams');
    exams.catch(() => {}); // reported below, once awaited
    if (!session) showPatient((session = await call('session')));
    setExams((await exams).exams);
    showError(null);
  } catch (e) {
    showError(e);
  }
  if (!quiet) status('');
  hook.ready = true;
}

function setRowError(id, message) {
  if (message) rowErrors.set(id, message);
  else rowErrors.delete(id);
  const tr = rows.get(id);
  if (tr) setText(tr.querySelector('.row-error'), message);
}

// The window is opened at once, while the click still allows it, and sent
// to the viewer once drimboxd has answered (which may take a while when
// it asks the source DRIMbox).
async function view(id, link) {
  setRowError(id, '');
  const win = window.open('', '_blank');
  if (win) {
    win.opener = null;
    win.document.title = 'drimbox — visualisation';
    win.document.body.textContent = 'Ouverture de la visionneuse…';
  }
  try {
    const { viewer } = await call(`exams/${encodeURIComponent(id)}/view`, POST);
    link.href = new URL(viewer, location.href).href;
    if (win) win.location.replace(link.href);
    else setRowError(id, 'Fenêtre bloquée par le navigateur : autorisez les fenêtres de drimbox');
    schedulePoll(); // the source's images may be on their way
  } catch (e) {
    win?.close();
    setRowError(id, e.message);
  }
}

async function importExam(id) {
  const exam = hook.exams.find((e) => e.id === id);
  setRowError(id, '');
  pending.set(id, { state: exam.state, until: Date.now() + PENDING_MS });
  render();
  try {
    await call(`exams/${encodeURIComponent(id)}/import`, POST);
    schedulePoll();
  } catch (e) {
    pending.delete(id);
    setRowError(id, e.message);
    render();
  }
}

$('ins-toggle').addEventListener('click', toggleIns);
$('retry').addEventListener('click', () => refresh());
$('filters').addEventListener('input', render);
$('filters').addEventListener('reset', () => setTimeout(render)); // after the fields are reset
$('filters').addEventListener('submit', (ev) => ev.preventDefault());
$('rows').addEventListener('click', (ev) => {
  const target = ev.target.closest('[data-action=view], [data-action=import]');
  if (!target) return;
  const id = target.closest('tr').dataset.id;
  if (target.dataset.action === 'view') {
    ev.preventDefault();
    view(id, target);
  } else {
    importExam(id);
  }
});

refresh();
