/**
 * The upload page in a real headless browser (Debian's chromium, driven by playwright-core):
 * choose a file, see the answer. Skips with a message when /usr/bin/chromium is absent (CI fails).
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main, type App } from '../../src/main.ts';
import { CATTY, DOGGY, MeanColourTestClassifier, expectedDog, makePhoto } from '../helpers/test-classifier.ts';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const available = existsSync(CHROMIUM);
if (!available) {
  const msg = `${CHROMIUM} is missing (install it with: apt-get install -y chromium)`;
  if (process.env.CI) throw new Error(`${msg}: CI needs it for the browser test`);
  console.warn(`skipping the browser test: ${msg}`);
}

let app: App;
let browser: Browser;
let tmp: string;

beforeAll(async () => {
  if (!available) return;
  tmp = mkdtempSync(join(tmpdir(), 'catdog-browser-'));
  app = await main({
    env: { PORT: '0', WEB_HOST: '127.0.0.1', DATA_DIR: join(tmp, 'data') },
    classifier: new MeanColourTestClassifier(),
    handleSignals: false,
    log: () => {},
  });
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
});

afterAll(async () => {
  await browser?.close();
  await app?.shutdown('test over');
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe.skipIf(!available)('the upload page', () => {
  it('shows the dog probability of a chosen photo, then of another one', async () => {
    const dogFile = join(tmp, 'rex.jpg');
    const catFile = join(tmp, 'tom.png');
    writeFileSync(dogFile, await makePhoto(DOGGY, { format: 'jpeg', width: 320, height: 240 }));
    writeFileSync(catFile, await makePhoto(CATTY, { width: 320, height: 240 }));
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
    try {
      await page.goto(`${app.web.url}/`);
      expect(await page.title()).toBe('Cat or dog?');

      await page.setInputFiles('#photo', dogFile);
      const result = page.locator('#result');
      await result.and(page.locator('[data-label="dog"]')).waitFor({ timeout: 15_000 });
      const dogPct = Math.round(expectedDog(DOGGY) * 100);
      expect(await result.textContent()).toBe(`🐶 Dog — ${dogPct}% dog`);
      expect(await page.locator('#details').textContent()).toMatch(/^Backbones: ResNet50 \+ Xception \(fp32\) · \d+\.\d\d s$/);
      expect(await page.locator('#bar-fill').evaluate((el) => (el as HTMLElement).style.width)).toBe(`${dogPct}%`);
      expect(await page.locator('#preview').isVisible()).toBe(true);

      await page.setInputFiles('#photo', catFile);
      await result.and(page.locator('[data-label="cat"]')).waitFor({ timeout: 15_000 });
      expect(await result.textContent()).toBe(`🐱 Cat — ${Math.round(expectedDog(CATTY) * 100)}% dog`);

      const text = join(tmp, 'notes.txt');
      writeFileSync(text, 'not a photo at all\n');
      await page.setInputFiles('#photo', text);
      await page.locator('#result.error').waitFor({ timeout: 15_000 });
      expect(await result.textContent()).toBe("🙀 I can't read that as a photo. This looks like text, not an image. Please send a JPEG, PNG, WebP, GIF or AVIF photo.");
      expect(errors.filter((e) => !/Failed to load resource.*415/.test(e))).toEqual([]);
    } finally {
      await page.close();
    }
  });
});
