// Headless Chromium for the browser drivers (tests/viewer/*.mjs,
// tests/bench/viewer): Debian's chromium, driven by the playwright-core
// the viewer's npm install brought.
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, '..', '..', 'viewer', 'node_modules', '/'));
const { chromium } = require('playwright-core');

const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--no-first-run',
];

// A launched browser (executable: its path, default Debian's).
export function launchChromium(executable) {
  return chromium.launch({ executablePath: executable || '/usr/bin/chromium', args: ARGS });
}
