#!/usr/bin/env node
// Drives a running catdog container from outside (scripts/container-test.sh):
//   node container-check-web.mjs <base url> <photos dir> <expected model id> [pid to SIGTERM]
// Checks GET /healthz (200, the model loaded, the expected head, ResNet50), POST /api/classify
// with each cat.N.jpg / dog.N.jpg (200 and the right label), a text file (415), /metrics (the web
// requests counted). With a pid: sends it SIGTERM while classifications are in flight and checks
// that each of them is answered (200), or refused as "restarting" (503) if it came too late,
// with at least one 200 answered after the signal. Prints one line per check; exit 1 on any failure.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const [base, photosDir, expectedModel, pidArg] = process.argv.slice(2);
let failed = 0;
let passed = 0;
function check(ok, what) {
  if (ok) passed++;
  else failed++;
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
}

async function classify(bytes, type = 'image/jpeg') {
  const res = await fetch(`${base}/api/classify`, { method: 'POST', body: bytes, headers: { 'content-type': type } });
  return { status: res.status, body: await res.json() };
}

const health = await fetch(`${base}/healthz`);
const h = await health.json();
check(health.status === 200 && h.status === 'ok', `GET /healthz: ${health.status} ${h.status}`);
check(h.model?.loaded === true && h.model.model === expectedModel, `model loaded, head ${h.model?.model} (expected ${expectedModel})`);
check(Array.isArray(h.model?.backbones) && h.model.backbones.includes('resnet50'), `backbones ${JSON.stringify(h.model?.backbones)}`);
check(h.discord?.configured === false, `Discord off without a token (configured: ${h.discord?.configured})`);

const photos = readdirSync(photosDir).filter((f) => /^(cat|dog)\.\d+\.jpg$/.test(f)).sort();
check(photos.length > 0, `${photos.length} photos to classify`);
for (const f of photos) {
  const expected = f.slice(0, 3);
  const t0 = performance.now();
  const r = await classify(readFileSync(join(photosDir, f)));
  const ms = Math.round(performance.now() - t0);
  check(r.status === 200 && r.body.label === expected && r.body.model === expectedModel,
    `POST /api/classify ${f}: ${r.status} ${r.body.label ?? r.body.error} (dog ${r.body.dogPercent}%, model ${r.body.model}, ${ms} ms)`);
}
const text = await classify(Buffer.from('just some notes, not a photo\n'), 'text/plain');
check(text.status === 415 && text.body.error === 'unsupported_image', `POST /api/classify with text: ${text.status} ${text.body.error}`);
const metrics = await (await fetch(`${base}/metrics`)).text();
const okCount = Number(/catdog_requests_total\{surface="web",outcome="ok"\} (\d+)/.exec(metrics)?.[1] ?? NaN);
check(okCount >= photos.length, `GET /metrics: web ok requests counted ${okCount}`);

if (pidArg) {
  const pid = Number(pidArg);
  const bytes = readFileSync(join(photosDir, photos[photos.length - 1]));
  const pending = Array.from({ length: 4 }, () =>
    classify(bytes).then((r) => ({ ...r, at: performance.now() }), (err) => ({ status: 0, body: { error: String(err) }, at: performance.now() })),
  );
  await new Promise((r) => setTimeout(r, 30));
  const signalled = performance.now();
  process.kill(pid, 'SIGTERM');
  const results = await Promise.all(pending);
  const answeredAfter = results.filter((r) => r.status === 200 && r.at > signalled).length;
  check(results.every((r) => r.status === 200 || (r.status === 503 && r.body.error === 'shutting_down')),
    `SIGTERM with 4 classifications in flight: ${results.map((r) => `${r.status}${r.status === 200 ? '' : ` ${r.body.error}`}`).join(', ')}`);
  check(answeredAfter >= 1, `${answeredAfter} answered (200) after the signal`);
}
console.log(`web checks: ${passed} ok, ${failed} failing`);
process.exit(failed ? 1 : 0);
