/**
 * `npm run bench [-- --json] [--threads N] [--runs N] [--batch N] [--no-contention]`
 *
 * Per backbone and fused: median ms per image at batch 1 after warm-up, images/s in batch mode,
 * model load time (ONNX Runtime session from the cached graph), peak RSS, and the ratio to the
 * compute limit (multiply-accumulates / 137 GMAC/s, this 2-core machine's fp32 peak).
 * Backbones without real ImageNet weights here are timed with generated weights: speed does not
 * depend on the values. Then: decode + ResNet50 throughput on real photos, and whether spinning
 * ONNX Runtime threads hurt interactive latency while a batch job runs in another process.
 * With --json the last line printed is one JSON object.
 */
import { fork } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { BACKBONES } from '../src/model/backbones/index.ts';
import { ensureOnnx, loadBackbone, runBackbone, type LoadedBackbone } from '../src/model/onnx/session.ts';
import type { BackboneName } from '../src/model/types.ts';
import { resolveWeights } from '../src/model/weights/sources.ts';
import { decodeImage } from '../src/vision/decode.ts';
import { resizeRGB, toTensorNCHW } from '../src/vision/preprocess.ts';
import { loadConfig } from '../src/config.ts';

const PEAK_GMACS = 137;
const ORDER: BackboneName[] = ['resnet50', 'inception_v3', 'xception'];

const { values } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    threads: { type: 'string' },
    runs: { type: 'string', default: '20' },
    batch: { type: 'string', default: '4' },
    'no-contention': { type: 'boolean', default: false },
    worker: { type: 'string' },
    prepare: { type: 'boolean', default: false },
  },
});

const threads = values.threads ? Number(values.threads) : undefined;
const runs = Number(values.runs);
const batchSize = Number(values.batch);
const log = (s: string) => {
  if (!values.json) process.stdout.write(`${s}\n`);
  else process.stderr.write(`${s}\n`);
};

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function randomInput(size: number, n: number): Float32Array {
  const x = new Float32Array(n * 3 * size * size);
  for (let i = 0; i < x.length; i++) x[i] = Math.random() * 2 - 1;
  return x;
}

const model = loadConfig().model;

function weightSpec(name: BackboneName): { spec: string; real: boolean } {
  const spec = model.weights[name] ?? BACKBONES[name].defaultWeights;
  try {
    resolveWeights(BACKBONES[name], spec, model.modelsDir);
    return { spec, real: true };
  } catch {
    return { spec: 'generated', real: false };
  }
}

async function timeBatch1(b: LoadedBackbone, n = runs): Promise<number[]> {
  const s = b.definition.inputSize;
  const x = randomInput(s, 1);
  for (let i = 0; i < 3; i++) await runBackbone(b, x, 1);
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await runBackbone(b, x, 1);
    times.push(performance.now() - t);
  }
  return times;
}

async function imagesPerSecond(b: LoadedBackbone): Promise<number> {
  const s = b.definition.inputSize;
  const x = randomInput(s, batchSize);
  await runBackbone(b, x, batchSize);
  const rounds = Math.max(2, Math.ceil(runs / batchSize) + 1);
  const t = performance.now();
  for (let i = 0; i < rounds; i++) await runBackbone(b, x, batchSize);
  return (rounds * batchSize) / ((performance.now() - t) / 1000);
}

/** Child process: runs ResNet50 batches until killed (a batch job sharing the cores). */
async function worker(spin: boolean): Promise<void> {
  const b = await loadBackbone(BACKBONES.resnet50, weightSpec('resnet50').spec, { threads, spin, modelsDir: model.modelsDir });
  const x = randomInput(224, 8);
  process.send?.('ready');
  for (;;) await runBackbone(b, x, 8);
}

async function contention(): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const spin of [false, true]) {
    const b = await loadBackbone(BACKBONES.resnet50, weightSpec('resnet50').spec, { threads, spin, modelsDir: model.modelsDir });
    const child = fork(fileURLToPath(import.meta.url), ['--worker', spin ? 'spin' : 'nospin', ...(threads ? ['--threads', String(threads)] : [])], {
      execArgv: process.execArgv,
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    });
    await new Promise<void>((resolve, reject) => {
      child.once('message', () => resolve());
      child.once('exit', (c) => reject(new Error(`bench worker exited with ${c}`)));
    });
    const times = await timeBatch1(b, Math.max(10, runs));
    child.kill('SIGKILL');
    await b.session.release();
    out[spin ? 'spin' : 'no_spin'] = median(times);
  }
  return out;
}

async function endToEnd(b: LoadedBackbone): Promise<{ img_per_s: number; n: number } | null> {
  const zip = new URL('../../shared/data/dogs-vs-cats/train.zip', import.meta.url);
  if (!existsSync(zip)) return null;
  const { openDataset } = await import('../src/train/dataset.ts');
  const ds = await openDataset(fileURLToPath(zip));
  const samples = ds.samples.slice(0, 64);
  const bytes = await Promise.all(samples.map((s) => s.read()));
  await ds.close();
  const per = 3 * 224 * 224;
  const t = performance.now();
  for (let i = 0; i < bytes.length; i += batchSize) {
    const chunk = bytes.slice(i, i + batchSize);
    const rgb = await Promise.all(chunk.map(async (x) => resizeRGB(await decodeImage(x), 224)));
    const batch = new Float32Array(chunk.length * per);
    rgb.forEach((r, k) => toTensorNCHW(r, 224, 'caffe', batch, k * per));
    await runBackbone(b, batch, chunk.length);
  }
  return { img_per_s: bytes.length / ((performance.now() - t) / 1000), n: bytes.length };
}

/** Child process: builds any missing ONNX graphs, so that their cost stays out of this process's peak RSS. */
async function prepare(): Promise<void> {
  for (const name of ORDER) {
    const def = BACKBONES[name];
    await ensureOnnx(def, resolveWeights(def, weightSpec(name).spec, model.modelsDir), (l) => process.stderr.write(`${l}\n`), model.modelsDir);
  }
}

function runChild(args: string[]): Promise<void> {
  const child = fork(fileURLToPath(import.meta.url), args, { execArgv: process.execArgv, stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  return new Promise((resolve, reject) => child.once('exit', (c) => (c === 0 ? resolve() : reject(new Error(`bench child ${args.join(' ')} exited with ${c}`)))));
}

async function main(): Promise<void> {
  if (values.worker) return worker(values.worker === 'spin');
  if (values.prepare) return prepare();
  await runChild(['--prepare']);
  log(`catdog bench: onnxruntime-node ${ort.env.versions?.common ?? ''}, threads ${threads ?? 'default'}, ${runs} runs, batch ${batchSize}`);
  const loaded: LoadedBackbone[] = [];
  const result: Record<string, unknown> = {};
  const backbones: Record<string, { ms_p50: number; img_per_s: number; load_ms: number; limit_ms: number; ratio: number; weights: string }> = {};
  let limitTotal = 0;
  const batch1 = new Map<BackboneName, number>();
  for (const name of ORDER) {
    const b = await loadBackbone(BACKBONES[name], weightSpec(name).spec, { threads, modelsDir: model.modelsDir });
    loaded.push(b);
    batch1.set(name, median(await timeBatch1(b)));
  }
  // Fused: the three backbones one after the other, as the classifier runs them.
  const inputs = loaded.map((b) => randomInput(b.definition.inputSize, 1));
  for (let i = 0; i < 2; i++) for (const [k, b] of loaded.entries()) await runBackbone(b, inputs[k], 1);
  const fusedTimes: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    for (const [k, b] of loaded.entries()) await runBackbone(b, inputs[k], 1);
    fusedTimes.push(performance.now() - t);
  }
  const fusedP50 = median(fusedTimes);
  // Peak RSS so far: three backbones loaded and serving single photos.
  const rss = process.resourceUsage().maxRSS / 1024;
  for (const b of loaded) {
    const def = b.definition;
    const t = batch1.get(def.name)!;
    const ips = await imagesPerSecond(b);
    const limit = (def.build().macs() / 1e9 / PEAK_GMACS) * 1000;
    limitTotal += limit;
    const weights = b.info.generated ? 'generated' : b.info.weights;
    backbones[def.name] = { ms_p50: t, img_per_s: ips, load_ms: b.info.loadMs, limit_ms: limit, ratio: t / limit, weights };
    log(
      `${def.title.padEnd(12)} ${t.toFixed(1).padStart(7)} ms/img (batch 1, p50)  ${ips.toFixed(1).padStart(6)} img/s (batch ${batchSize})  load ${b.info.loadMs.toFixed(0).padStart(5)} ms  limit ${limit.toFixed(1)} ms  ratio ${(t / limit).toFixed(2)}  [${weights === 'generated' ? 'generated weights' : weights}]`,
    );
  }
  const batchInputs = loaded.map((b) => randomInput(b.definition.inputSize, batchSize));
  const rounds = Math.max(2, Math.ceil(runs / batchSize));
  const tb = performance.now();
  for (let i = 0; i < rounds; i++) for (const [k, b] of loaded.entries()) await runBackbone(b, batchInputs[k], batchSize);
  const fusedIps = (rounds * batchSize) / ((performance.now() - tb) / 1000);
  log(`${'fused'.padEnd(12)} ${fusedP50.toFixed(1).padStart(7)} ms/img (batch 1, p50)  ${fusedIps.toFixed(1).padStart(6)} img/s (batch ${batchSize})  limit ${limitTotal.toFixed(1)} ms  ratio ${(fusedP50 / limitTotal).toFixed(2)}`);
  const rssBatch = process.resourceUsage().maxRSS / 1024;
  log(`peak RSS with three backbones loaded: ${rss.toFixed(0)} MB serving single photos, ${rssBatch.toFixed(0)} MB after batches of ${batchSize}`);

  const e2e = await endToEnd(loaded[0]);
  if (e2e) log(`ResNet50 with decoding, ${e2e.n} real photos from train.zip: ${e2e.img_per_s.toFixed(1)} img/s (batch ${batchSize})`);
  for (const b of loaded) await b.session.release();

  let cont: Record<string, number> | null = null;
  if (!values['no-contention']) {
    cont = await contention();
    log(`ResNet50 batch-1 p50 while another process runs ResNet50 batches: spinning off ${cont.no_spin.toFixed(1)} ms, spinning on ${cont.spin.toFixed(1)} ms`);
  }
  result.backbones = Object.fromEntries(
    Object.entries(backbones).map(([k, v]) => [k, { ms_p50: round(v.ms_p50), img_per_s: round(v.img_per_s), load_ms: round(v.load_ms), ratio: round(v.ratio), weights: v.weights }]),
  );
  result.fused = { ms_p50: round(fusedP50), img_per_s: round(fusedIps) };
  result.rss_mb_peak = round(rss);
  result.rss_mb_after_batches = round(rssBatch);
  result.limit_ms = round(limitTotal);
  if (e2e) result.resnet50_decode_img_per_s = round(e2e.img_per_s);
  if (cont) result.contention_ms_p50 = { no_spin: round(cont.no_spin), spin: round(cont.spin) };
  if (values.json) process.stdout.write(`${JSON.stringify(result)}\n`);
}

const round = (x: number) => Math.round(x * 10) / 10;

await main();
