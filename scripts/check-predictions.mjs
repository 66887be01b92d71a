#!/usr/bin/env node
// Checks `catdog predict --json` output (one object per line) against the photos' Kaggle names:
// cat.<n>.jpg must be answered "cat", dog.<n>.jpg "dog". Exit 1 on any error or wrong label, or
// when there is no answer at all. Used by the Containerfile's test stage.
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';

const lines = readFileSync(process.argv[2], 'utf8').split('\n').filter((l) => l.trim());
let bad = 0;
for (const line of lines) {
  const r = JSON.parse(line);
  const expected = /^(cat|dog)\./.exec(basename(r.file))?.[1];
  const ok = !r.error && expected !== undefined && r.label === expected;
  if (!ok) bad++;
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${basename(r.file)}: ${r.error ?? `${r.label} (dog ${(r.dog * 100).toFixed(1)}%, ${r.ms} ms)`}${expected ? '' : ' (no cat./dog. name)'}`);
}
if (!lines.length) console.log('FAIL: no predictions');
console.log(`${lines.length - bad} of ${lines.length} photos answered right`);
process.exit(lines.length && !bad ? 0 : 1);
