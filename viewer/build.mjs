// Builds the viewer into OUTDIR (default ../build/viewer): esbuild bundles
// src/main.js (split: the tools load after the first image) and the image
// loader's decode worker, copies the codecs' WebAssembly and the page, and
// writes .gz and .br beside every text asset. Hashed names are cached
// forever by drimboxd; index.html is not.
//
// Usage: node build.mjs [OUTDIR]
import * as esbuild from 'esbuild';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import zlib from 'node:zlib';

const here = path.dirname(fileURLToPath(import.meta.url));
const out = path.resolve(process.argv[2] || path.join(here, '..', 'build', 'viewer'));
const tmp = `${out}.tmp-${process.pid}`;
const loader = path.join(here, 'node_modules', '@cornerstonejs', 'dicom-image-loader', 'dist', 'esm');

// Node built-ins that codec start-up code and vtk.js import but never use
// in a browser.
const nodeShims = {
  name: 'node-shims',
  setup(build) {
    build.onResolve({ filter: /^(node:)?events$/ }, () => ({ path: path.join(here, 'src', 'shim-events.js') }));
    build.onResolve({ filter: /^(node:)?(fs|path|url|crypto)$/ }, () => ({
      path: path.join(here, 'src', 'shim-empty.js'),
    }));
  },
};

const common = {
  bundle: true,
  minify: true,
  format: 'esm',
  target: ['chrome110', 'firefox115', 'safari16'],
  sourcemap: false,
  legalComments: 'linked',
  logLevel: 'warning',
  plugins: [nodeShims],
  define: { 'process.env.NODE_ENV': '"production"' },
};

fs.rmSync(tmp, { recursive: true, force: true });
fs.mkdirSync(path.join(tmp, 'wasm'), { recursive: true });

const main = await esbuild.build({
  ...common,
  entryPoints: { boot: path.join(here, 'src', 'boot.js'), main: path.join(here, 'src', 'main.js') },
  splitting: true,
  outdir: tmp,
  entryNames: '[name]-[hash]',
  chunkNames: 'chunk-[hash]',
  metafile: true,
});
// The worker keeps its fixed name: the loader builds its URL from
// import.meta.url of the chunk that holds it.
await esbuild.build({
  ...common,
  entryPoints: { decodeImageFrameWorker: path.join(loader, 'decodeImageFrameWorker.js') },
  outdir: tmp,
});

const wasm = {
  'codec-charls/dist/charlswasm_decode.wasm': 'charlswasm_decode.wasm',
  'codec-libjpeg-turbo-8bit/dist/libjpegturbowasm_decode.wasm': 'libjpegturbowasm_decode.wasm',
  'codec-openjpeg/dist/openjpegwasm_decode.wasm': 'openjpegwasm_decode.wasm',
  'codec-openjph/dist/openjphjs.wasm': 'openjphjs.wasm',
};
for (const [from, to] of Object.entries(wasm))
  fs.copyFileSync(path.join(here, 'node_modules', '@cornerstonejs', from), path.join(tmp, 'wasm', to));

// The page loads boot.js (and what it imports: preloaded), which imports
// main.js once it has drawn its preview: loading and compiling
// Cornerstone3D meanwhile delayed that preview by half a second one time
// in two (tests/bench/viewer).
const outputs = main.metafile.outputs;
const entryOut = (name) =>
  Object.keys(outputs).find((o) => outputs[o].entryPoint?.endsWith(`src/${name}.js`));
const preload = [];
(function walk(o) {
  if (preload.includes(o)) return;
  preload.push(o);
  for (const i of outputs[o].imports) if (i.kind === 'import-statement') walk(i.path);
})(entryOut('boot'));
const css = fs.readFileSync(path.join(here, 'src', 'style.css'));
const cssName = `style-${createHash('sha256').update(css).digest('hex').slice(0, 8).toUpperCase()}.css`;
fs.writeFileSync(path.join(tmp, cssName), css);
const html = fs
  .readFileSync(path.join(here, 'src', 'index.html'), 'utf8')
  .replaceAll('%BOOT%', path.basename(entryOut('boot')))
  .replaceAll('%MAIN%', path.basename(entryOut('main')))
  .replace('%PRELOAD%', preload.map((o) => `<link rel="modulepreload" href="${path.basename(o)}">`).join('\n'))
  .replaceAll('%CSS%', cssName);
fs.writeFileSync(path.join(tmp, 'index.html'), html);

// Precompressed copies of everything a browser would accept compressed.
for (const name of fs.readdirSync(tmp, { recursive: true })) {
  const file = path.join(tmp, name);
  if (!/\.(js|css|html|wasm|txt)$/.test(name) || !fs.statSync(file).isFile()) continue;
  const data = fs.readFileSync(file);
  fs.writeFileSync(`${file}.gz`, zlib.gzipSync(data, { level: 9 }));
  fs.writeFileSync(
    `${file}.br`,
    zlib.brotliCompressSync(data, {
      params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 10, [zlib.constants.BROTLI_PARAM_SIZE_HINT]: data.length },
    }),
  );
}

fs.rmSync(out, { recursive: true, force: true });
fs.renameSync(tmp, out);
