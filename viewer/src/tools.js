// The interactive part of the viewer, loaded after the first image:
// window/level, zoom, pan, stack scrolling, measurements, cine, presets,
// keyboard shortcuts.
import { getRenderingEngine } from '@cornerstonejs/core';
import {
  init as toolsInit,
  addTool,
  ToolGroupManager,
  WindowLevelTool,
  ZoomTool,
  PanTool,
  StackScrollTool,
  LengthTool,
  AngleTool,
  Enums as ToolEnums,
  store,
  utilities as toolUtils,
} from '@cornerstonejs/tools';

const { MouseBindings } = ToolEnums;
const $ = (id) => document.getElementById(id);

// name: [window width, window centre]
const PRESETS = {
  1: [1500, -600], // lung
  2: [350, 50], // mediastinum
  3: [2000, 500], // bone
  4: [80, 40], // brain
  5: [400, 40], // abdomen
};

const LEFT_TOOLS = {
  WindowLevel: WindowLevelTool.toolName,
  Zoom: ZoomTool.toolName,
  Pan: PanTool.toolName,
  Length: LengthTool.toolName,
  Angle: AngleTool.toolName,
};

let group;
let engineId;
let ctx;
let playing = null;

function viewport() {
  return getRenderingEngine(engineId).getViewport(ctx.active.id);
}

function selectTool(name) {
  const toolName = LEFT_TOOLS[name];
  for (const t of Object.values(LEFT_TOOLS)) {
    if (t === toolName) continue;
    if (group.getToolOptions(t)?.bindings?.some((b) => b.mouseButton === MouseBindings.Primary))
      group.setToolPassive(t, { removeAllBindings: [{ mouseButton: MouseBindings.Primary }] });
  }
  group.setToolActive(toolName, { bindings: [{ mouseButton: MouseBindings.Primary }] });
  for (const b of document.querySelectorAll('[data-tool]')) b.classList.toggle('active', b.dataset.tool === name);
}

function preset(n) {
  const p = PRESETS[n];
  if (!p) return;
  const vp = viewport();
  vp.setProperties({ voiRange: { lower: p[1] - p[0] / 2, upper: p[1] + p[0] / 2 } });
  vp.render();
  ctx.overlay(ctx.active);
}

function action(name) {
  const vp = viewport();
  if (name === 'fit') {
    vp.resetCamera();
  } else if (name === 'invert') {
    vp.setProperties({ invert: !vp.getProperties().invert });
  } else if (name === 'reset') {
    vp.resetCamera();
    vp.resetProperties();
  } else if (name === 'cine') {
    cine();
  } else if (name === 'compare') {
    ctx.compare().catch(ctx.fail);
    return;
  } else if (name === 'help') {
    $('help').showModal();
    return;
  }
  vp.render();
  ctx.overlay(ctx.active);
}

function cine() {
  const el = ctx.active.element;
  if (playing) {
    toolUtils.cine.stopClip(playing);
    playing = null;
    return;
  }
  const fps = Number($('fps').value) || 10;
  toolUtils.cine.playClip(el, { framesPerSecond: Math.min(60, Math.max(1, fps)), loop: true });
  playing = el;
}

function scroll(delta, absolute) {
  const vp = viewport();
  const n = vp.getImageIds().length;
  const i = absolute ? delta : vp.getCurrentImageIdIndex() + delta;
  vp.setImageIdIndex(Math.max(0, Math.min(n - 1, i)));
}

function onKey(e) {
  if (e.target.closest('input, select, dialog') || e.ctrlKey || e.metaKey || e.altKey) return;
  const k = e.key;
  const keys = {
    ArrowDown: () => scroll(1),
    ArrowRight: () => scroll(1),
    PageDown: () => scroll(10),
    ArrowUp: () => scroll(-1),
    ArrowLeft: () => scroll(-1),
    PageUp: () => scroll(-10),
    Home: () => scroll(0, true),
    End: () => scroll(1e9, true),
    w: () => selectTool('WindowLevel'),
    z: () => selectTool('Zoom'),
    p: () => selectTool('Pan'),
    l: () => selectTool('Length'),
    a: () => selectTool('Angle'),
    f: () => action('fit'),
    i: () => action('invert'),
    r: () => action('reset'),
    c: () => action('cine'),
    '?': () => action('help'),
  };
  const f = keys[k] || keys[k.toLowerCase()] || (PRESETS[k] && (() => preset(k)));
  if (f) {
    e.preventDefault();
    f();
  }
}

export function attach(slot) {
  if (!group.getViewportIds().includes(slot.id)) group.addViewport(slot.id, engineId);
}

export function setup(id, slots, context) {
  engineId = id;
  ctx = context;
  toolsInit();
  // the viewports were enabled before the tools existed: give them the
  // listeners tools add to every viewport enabled after init
  for (const s of slots) store.addEnabledElement({ detail: { element: s.element, viewportId: s.id, renderingEngineId: id } });
  for (const T of [WindowLevelTool, ZoomTool, PanTool, StackScrollTool, LengthTool, AngleTool]) addTool(T);
  group = ToolGroupManager.createToolGroup('drimbox');
  for (const T of [WindowLevelTool, ZoomTool, PanTool, StackScrollTool, LengthTool, AngleTool]) group.addTool(T.toolName);
  group.setToolActive(WindowLevelTool.toolName, { bindings: [{ mouseButton: MouseBindings.Primary }] });
  group.setToolActive(PanTool.toolName, { bindings: [{ mouseButton: MouseBindings.Auxiliary }] });
  group.setToolActive(ZoomTool.toolName, { bindings: [{ mouseButton: MouseBindings.Secondary }] });
  group.setToolActive(StackScrollTool.toolName, { bindings: [{ mouseButton: MouseBindings.Wheel }] });
  group.setToolPassive(LengthTool.toolName);
  group.setToolPassive(AngleTool.toolName);
  for (const s of slots) if (s.series) attach(s);
  for (const b of document.querySelectorAll('[data-tool]')) b.onclick = () => selectTool(b.dataset.tool);
  for (const b of document.querySelectorAll('[data-action]')) b.onclick = () => action(b.dataset.action);
  $('presets').onchange = (e) => {
    preset(e.target.value);
    e.target.value = '';
  };
  document.addEventListener('keydown', onKey);
  document.body.dataset.tools = 'ready';
}
