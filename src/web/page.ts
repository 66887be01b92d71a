/** The upload page: choose a photo, see how likely it is to show a dog. No external assets. */
import { BACKBONES } from '../model/backbones/index.ts';

export const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Cat or dog?</title>
<link rel="stylesheet" href="/app.css">
</head>
<body>
<main>
  <h1>Cat or dog?</h1>
  <p>Choose a photo and I will tell you how likely it is to show a dog.</p>
  <label class="pick">Choose a photo
    <input type="file" id="photo" name="photo" accept="image/*">
  </label>
  <figure id="figure" hidden><img id="preview" alt="The chosen photo"></figure>
  <section id="answer" aria-live="polite">
    <p id="result" role="status"></p>
    <div class="bar" id="bar" hidden><div id="bar-fill"></div></div>
    <p id="details"></p>
  </section>
</main>
<script src="/app.js" defer></script>
</body>
</html>
`;

export const PAGE_CSS = `
body { font-family: system-ui, sans-serif; margin: 0; background: #faf7f2; color: #222; }
main { max-width: 36rem; margin: 3rem auto; padding: 0 1rem; }
h1 { font-size: 2rem; }
.pick { display: inline-block; padding: .6rem 1rem; border-radius: .5rem; background: #e67e22; color: #fff; cursor: pointer; }
.pick input { display: block; margin-top: .5rem; color: #222; }
figure img { max-width: 100%; max-height: 20rem; border-radius: .5rem; }
#result { font-size: 1.5rem; font-weight: 600; min-height: 2rem; }
#result.error { color: #c0392b; font-size: 1.1rem; }
.bar { height: 1rem; background: #ddd; border-radius: .5rem; overflow: hidden; }
#bar-fill { height: 100%; width: 0; background: #e67e22; transition: width .3s; }
#details { color: #666; }
`;

export const PAGE_JS = `
'use strict';
const input = document.getElementById('photo');
const result = document.getElementById('result');
const details = document.getElementById('details');
const bar = document.getElementById('bar');
const fill = document.getElementById('bar-fill');
const figure = document.getElementById('figure');
const preview = document.getElementById('preview');
const NAMES = ${JSON.stringify(Object.fromEntries(Object.values(BACKBONES).map((b) => [b.name, b.title])))};
const VERDICT = { dog: '🐶 Dog', cat: '🐱 Cat', neither: '🤷 Neither a cat nor a dog' };

input.addEventListener('change', async () => {
  const file = input.files && input.files[0];
  if (!file) return;
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(file);
  figure.hidden = false;
  result.className = '';
  result.dataset.label = '';
  result.textContent = 'Looking…';
  details.textContent = '';
  bar.hidden = true;
  try {
    const res = await fetch('/api/classify', {
      method: 'POST',
      headers: { 'content-type': file.type || 'application/octet-stream' },
      body: file,
    });
    const body = await res.json();
    if (!res.ok) throw new Error(body.message || ('HTTP ' + res.status));
    result.dataset.label = body.label;
    result.textContent = VERDICT[body.label] + ' — ' + body.dogPercent + '% dog';
    fill.style.width = body.dogPercent + '%';
    bar.hidden = false;
    details.textContent = 'Backbones: ' + body.backbones.map((b) => NAMES[b] || b).join(' + ') +
      ' (' + body.precision + ') · ' + (body.elapsedMs / 1000).toFixed(2) + ' s';
  } catch (err) {
    result.className = 'error';
    result.textContent = err.message;
  }
});
`;
