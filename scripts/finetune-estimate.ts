/**
 * What fine-tuning ResNet50's last block (`conv5_block3`, "res5c") on cached activations would
 * cost with TF.js on this machine, measured rather than guessed: it times training steps of that
 * block (1x1 2048→512, 3x3 512→512, 1x1 512→2048, the residual add, average-and-max pooling and a
 * dense sigmoid, Adam) on random inputs of the shape the cached `conv5_block2_out` maps would have
 * at each view size, and in the same run the machine's own TF.js matmul rate, then projects
 * the hours for K folds and a final fit.
 *
 * The block is written with matMuls (the 3x3 convolution as im2col + matMul) and BatchNorm frozen
 * into a per-channel scale and shift, as a fine-tune on cached maps would train it: TF.js's wasm
 * backend has no Conv2DBackpropFilter kernel, so `tf.conv2d` cannot be trained on it at all, and
 * the cpu backend that has one is the pure-JS one.
 *
 *   npx tsx scripts/finetune-estimate.ts [--sizes 224,288,416,448] [--batch 32] [--steps 4]
 *     [--photos 12002] [--folds 5] [--epochs 10] [--train-views 3]
 */
import { parseArgs } from 'node:util';
import { initTf, tf } from '../src/model/tf.ts';

const { values } = parseArgs({
  options: {
    sizes: { type: 'string', default: '224,288,416,448' },
    batch: { type: 'string', default: '32' },
    steps: { type: 'string', default: '4' },
    photos: { type: 'string', default: '12002' },
    folds: { type: 'string', default: '5' },
    epochs: { type: 'string', default: '10' },
    'train-views': { type: 'string', default: '3' },
  },
});
const log = (s: string) => process.stdout.write(`${s}\n`);
const sizes = values.sizes.split(',').map(Number);
const batch = Number(values.batch);
const steps = Number(values.steps);
const photos = Number(values.photos);
const folds = Number(values.folds);
const epochs = Number(values.epochs);
const trainViews = Number(values['train-views']);
for (const [k, v] of Object.entries({ batch, steps, photos, folds, epochs, trainViews })) {
  if (!Number.isInteger(v) || v < 1) throw new Error(`--${k} must be a positive integer, got ${v}`);
}
for (const s of sizes) if (!Number.isInteger(s) || s % 32 !== 0) throw new Error(`view size ${s} must be a multiple of 32`);

const backend = await initTf();
log(`TF.js backend: ${backend}`);

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

async function timeIt(fn: () => tf.Tensor | tf.Tensor[] | void, rounds: number): Promise<number[]> {
  const times: number[] = [];
  for (let r = 0; r <= rounds; r++) {
    const t0 = performance.now();
    const out = tf.tidy(fn);
    const outs = out ? (Array.isArray(out) ? out : [out]) : [];
    for (const t of outs) await t.data();
    tf.dispose(outs);
    if (r > 0) times.push(performance.now() - t0); // round 0 warms up
  }
  return times;
}

// The machine's TF.js limit, in the same run: a 1024 x 4096 x 512 product.
let peakGflops: number;
{
  const a = tf.randomNormal([1024, 4096]);
  const b = tf.randomNormal([4096, 512]);
  const times = await timeIt(() => tf.matMul(a, b), 5);
  peakGflops = (2 * 1024 * 4096 * 512) / (median(times) / 1000) / 1e9;
  log(`matMul 1024 x 4096 x 512: median ${median(times).toFixed(1)} ms = ${peakGflops.toFixed(1)} GFLOPS (this machine's TF.js rate)`);
  tf.dispose([a, b]);
}

const he = (shape: number[], fanIn: number) => tf.variable(tf.randomNormal(shape, 0, Math.sqrt(2 / fanIn)));
const w1 = he([2048, 512], 2048);
const w2 = he([9 * 512, 512], 9 * 512);
const w3 = he([512, 2048], 512);
const bn = (c: number) => [tf.variable(tf.ones([c])), tf.variable(tf.zeros([c]))] as const;
const [s1, b1] = bn(512);
const [s2, b2] = bn(512);
const [s3, b3] = bn(2048);
const wd = he([4096, 1], 4096);
const bd = tf.variable(tf.zeros([1]));
const optimizer = tf.train.adam(1e-4);

/** 3x3 stride-1 'same' patches of [B, H, W, C] as [B*H*W, 9*C]. */
function im2col(x: tf.Tensor4D): tf.Tensor2D {
  const [n, h, w, c] = x.shape;
  const p = tf.pad(x, [
    [0, 0],
    [1, 1],
    [1, 1],
    [0, 0],
  ]);
  const cols: tf.Tensor4D[] = [];
  for (let dy = 0; dy < 3; dy++) for (let dx = 0; dx < 3; dx++) cols.push(tf.slice(p, [0, dy, dx, 0], [n, h, w, c]));
  return tf.reshape(tf.concat(cols, 3), [n * h * w, 9 * c]);
}

function forward(x: tf.Tensor4D): tf.Tensor {
  const [n, h, w] = x.shape;
  const flat = tf.reshape(x, [n * h * w, 2048]);
  const a1 = tf.relu(tf.add(tf.mul(tf.matMul(flat, w1), s1), b1));
  const a2 = tf.relu(tf.add(tf.mul(tf.matMul(im2col(tf.reshape(a1, [n, h, w, 512])), w2), s2), b2));
  const a3 = tf.add(tf.mul(tf.matMul(a2, w3), s3), b3);
  const out = tf.reshape(tf.relu(tf.add(a3, flat)), [n, h * w, 2048]);
  const pooled = tf.concat([tf.mean(out, 1), tf.max(out, 1)], 1);
  return tf.add(tf.matMul(pooled, wd), bd);
}

log(`res5c training steps, batch ${batch}, ${steps} timed after one warm-up:`);
const rows: { size: number; msPerPhoto: number }[] = [];
for (const size of sizes) {
  const g = size / 32;
  const x = tf.relu(tf.randomNormal([batch, g, g, 2048])) as tf.Tensor4D;
  const y = tf.tensor2d(
    Array.from({ length: batch }, (_, i) => i % 2),
    [batch, 1],
  );
  const times = await timeIt(() => {
    const loss = optimizer.minimize(() => tf.losses.sigmoidCrossEntropy(y, forward(x)), true);
    return loss ?? undefined;
  }, steps);
  const ms = median(times);
  const macs = g * g * (2048 * 512 + 9 * 512 * 512 + 512 * 2048) * batch;
  const achieved = (3 * 2 * macs) / (ms / 1000) / 1e9; // forward + backward ≈ 3 forwards
  log(
    `  ${size} px (${g}x${g} map): median ${ms.toFixed(0)} ms a step = ${(ms / batch).toFixed(1)} ms a photo-view; ` +
      `${achieved.toFixed(1)} GFLOPS = ${(achieved / peakGflops).toFixed(2)}x the matMul rate`,
  );
  rows.push({ size, msPerPhoto: ms / batch });
  tf.dispose([x, y]);
}

// K folds train on (K-1)/K of the photos, the final fit on all of them; each photo once per view.
const photoViewsPerEpoch = photos * trainViews;
const fits = folds * ((folds - 1) / folds) + 1;
log(`Projected, ${photos} photos, ${trainViews} training views each, ${epochs} epochs, ${folds} folds + a final fit:`);
for (const r of rows) {
  const hours = (r.msPerPhoto * photoViewsPerEpoch * epochs * fits) / 3.6e6;
  log(`  every view at ${r.size} px: ${hours.toFixed(1)} h (training steps only; extracting the maps is extra)`);
}
