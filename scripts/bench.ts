/**
 * `npm run bench [-- --json] [--threads N] [--runs N] [--rounds N] [--batch N] [--no-contention] [--no-int8]`
 *
 * Measures this machine, in this run: the CPU (model, vector extensions), its compute peak as ONNX
 * Runtime reaches it (large 3x3 and 1x1 convolutions, fp32 and int8 — see src/model/onnx/peak.ts),
 * and per backbone and fused, in fp32 and int8: median ms per image at batch 1, the ratio of that
 * to the backbone's multiply-accumulates at the measured peak, images/s in batch mode, load time.
 * The timed runs are interleaved in rounds — peak probes, then every backbone in both precisions,
 * then both fused — so contention from other work falls on all of them alike; the ratios are what
 * compares across runs and machines. Then: peak RSS per precision (a child process each),
 * decoding + ResNet50 and decoding + fused throughput on real photos, and whether spinning ONNX
 * Runtime threads hurt interactive latency while a batch job runs in another process.
 * Backbones without real ImageNet weights here are timed with generated weights: speed does not
 * depend on the values. With --json the last line printed is one JSON object.
 *
 * `--profile` instead prints, per backbone and precision, where the time goes (ONNX Runtime's
 * profiler over 10 runs): by op type, the stem (first convolution), the ImageNet top and the
 * layout reorders, each as a share of the run next to its share of the multiply-accumulates.
 */
import { fork } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { BACKBONES } from '../src/model/backbones/index.ts';
import { calibrateBackbone, calibrationPath, calibrationSamples, readCalibration } from '../src/model/onnx/calibrate.ts';
import { loadProbes, probeGmacs } from '../src/model/onnx/peak.ts';
import { ensureInt8, ensureOnnx, loadBackbone, runBackbone, sessionOptions, type LoadedBackbone, type Precision } from '../src/model/onnx/session.ts';
import type { BackboneName } from '../src/model/types.ts';
import { resolveWeights } from '../src/model/weights/sources.ts';
import { loadConfig } from '../src/config.ts';
import { decodeImage } from '../src/vision/decode.ts';
import { resizeRGB, toTensorNCHW } from '../src/vision/preprocess.ts';

const ORDER: BackboneName[] = ['resnet50', 'inception_v3', 'xception'];
const TRAIN_ZIP = fileURLToPath(new URL('../../shared/data/dogs-vs-cats/train.zip', import.meta.url));

const { values } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    threads: { type: 'string' },
    runs: { type: 'string', default: '40' },
    rounds: { type: 'string', default: '20' },
    batch: { type: 'string', default: '4' },
    'no-contention': { type: 'boolean', default: false },
    'no-int8': { type: 'boolean', default: false },
    worker: { type: 'string' },
    prepare: { type: 'boolean', default: false },
    rss: { type: 'string' },
    profile: { type: 'boolean', default: false },
  },
});

const threads = values.threads ? Number(values.threads) : undefined;
const runs = Number(values.runs);
const rounds = Math.max(2, Number(values.rounds));
const perRound = Math.max(1, Math.round(runs / rounds));
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
const modelsDir = model.modelsDir;

function weightSpec(name: BackboneName): { spec: string; real: boolean } {
  const spec = model.weights[name] ?? BACKBONES[name].defaultWeights;
  try {
    resolveWeights(BACKBONES[name], spec, modelsDir);
    return { spec, real: true };
  } catch {
    return { spec: 'generated', real: false };
  }
}

/** The CPU: model name and the vector extensions that matter to ONNX Runtime's kernels. */
function cpuInfo(): { model: string; cores: number; extensions: string[] } {
  let flags: string[] = [];
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((l) => l.startsWith('flags'));
    flags = line ? line.split(':')[1].trim().split(/\s+/) : [];
  } catch {
    /* not Linux: the model name alone */
  }
  const wanted = /^(sse4_2|avx|avx2|fma|f16c|avx512(f|bw|dq|vl|_vnni|_bf16|_fp16|ifma|vbmi|vbmi2)|avx_vnni|avx_vnni_int8|amx_(tile|int8|bf16))$/;
  return { model: cpus()[0]?.model.trim() ?? 'unknown', cores: cpus().length, extensions: flags.filter((f) => wanted.test(f)) };
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
  const n = Math.max(2, Math.ceil(8 / batchSize) + 1);
  const t = performance.now();
  for (let i = 0; i < n; i++) await runBackbone(b, x, batchSize);
  return (n * batchSize) / ((performance.now() - t) / 1000);
}

/** Child process: runs ResNet50 batches until killed (a batch job sharing the cores). */
async function worker(spin: boolean): Promise<void> {
  const b = await loadBackbone(BACKBONES.resnet50, weightSpec('resnet50').spec, { threads, spin, modelsDir });
  const x = randomInput(224, 8);
  process.send?.('ready');
  for (;;) await runBackbone(b, x, 8);
}

async function contention(): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const spin of [false, true]) {
    const b = await loadBackbone(BACKBONES.resnet50, weightSpec('resnet50').spec, { threads, spin, modelsDir });
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

/** Photos from train.zip (decoded on each pass), or null when the data is not there. */
async function realPhotos(n: number): Promise<Buffer[] | null> {
  if (!existsSync(TRAIN_ZIP)) return null;
  const { openDataset } = await import('../src/train/dataset.ts');
  const ds = await openDataset(TRAIN_ZIP);
  const bytes = await Promise.all(ds.samples.slice(0, n).map((s) => s.read()));
  await ds.close();
  return bytes;
}

/** Decoding, resizing and the backbones (one after the other), in batches of `batch`: photos per second. */
async function endToEnd(bs: LoadedBackbone[], photos: Buffer[], batch: number): Promise<number> {
  const t = performance.now();
  for (let i = 0; i < photos.length; i += batch) {
    const decoded = await Promise.all(photos.slice(i, i + batch).map((x) => decodeImage(x)));
    for (const b of bs) {
      const s = b.definition.inputSize;
      const per = 3 * s * s;
      const rgb = await Promise.all(decoded.map((d) => resizeRGB(d, s)));
      const input = new Float32Array(rgb.length * per);
      for (const [k, r] of rgb.entries()) toTensorNCHW(r, s, b.definition.preprocess, input, k * per);
      await runBackbone(b, input, rgb.length);
    }
  }
  return photos.length / ((performance.now() - t) / 1000);
}

/**
 * Child process: builds any missing ONNX graphs (fp32, and int8 where a calibration exists or can
 * be made), so that their cost stays out of the measuring processes' peak RSS. Generated weights
 * are calibrated on 64 photos of train.zip: their speed, not their accuracy, is what is measured.
 */
async function prepare(): Promise<void> {
  const err = (l: string) => process.stderr.write(`${l}\n`);
  for (const name of ORDER) {
    const def = BACKBONES[name];
    const resolved = resolveWeights(def, weightSpec(name).spec, modelsDir);
    const fp32 = await ensureOnnx(def, resolved, err, modelsDir);
    if (values['no-int8']) continue;
    const cal = await readCalibration(calibrationPath(name, resolved.cacheKey, modelsDir));
    if (!cal && resolved.kind === 'generated' && existsSync(TRAIN_ZIP)) {
      const { openDataset } = await import('../src/train/dataset.ts');
      const ds = await openDataset(TRAIN_ZIP);
      err(`catdog bench: calibrating int8 ${def.title} (generated weights) on 64 photos of train.zip`);
      await calibrateBackbone(def, fp32.path, fp32.sidecar.weightsId, resolved.cacheKey, calibrationSamples(ds.samples, 64), { modelsDir });
      await ds.close();
    }
    try {
      await ensureInt8(def, resolved, err, modelsDir);
    } catch (e) {
      err(`catdog bench: no int8 ${def.title}: ${(e as Error).message}`);
    }
  }
}

/** Child process: the three backbones in one precision, serving single photos then batches; prints its peak RSS. */
async function rssChild(precision: Precision): Promise<void> {
  const loaded: LoadedBackbone[] = [];
  for (const name of ORDER) loaded.push(await loadBackbone(BACKBONES[name], weightSpec(name).spec, { threads, precision, modelsDir }));
  // Sampled after every run: the kernel's maxRSS of a child starts at its parent's (it survives exec).
  let peak = process.memoryUsage().rss;
  const sample = () => (peak = Math.max(peak, process.memoryUsage().rss));
  for (let i = 0; i < 5; i++) {
    for (const b of loaded) {
      await runBackbone(b, randomInput(b.definition.inputSize, 1), 1);
      sample();
    }
  }
  const single = peak / 2 ** 20;
  for (let i = 0; i < 2; i++) {
    for (const b of loaded) {
      await runBackbone(b, randomInput(b.definition.inputSize, batchSize), batchSize);
      sample();
    }
  }
  const batches = peak / 2 ** 20;
  process.send?.({ single, batches });
}

function runChild(args: string[]): Promise<unknown> {
  const child = fork(fileURLToPath(import.meta.url), args, { execArgv: process.execArgv, stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  let message: unknown = null;
  child.on('message', (m) => (message = m));
  return new Promise((resolve, reject) => child.once('exit', (c) => (c === 0 ? resolve(message) : reject(new Error(`bench child ${args.join(' ')} exited with ${c}`)))));
}

/** ONNX Runtime's per-node profile of a backbone: where batch-1 time goes. */
async function profile(): Promise<void> {
  const { readFile, rm } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  for (const precision of values['no-int8'] ? (['fp32'] as Precision[]) : (['fp32', 'int8'] as Precision[])) {
    for (const name of ORDER) {
      const def = BACKBONES[name];
      const resolved = resolveWeights(def, weightSpec(name).spec, modelsDir);
      const { path } = precision === 'int8' ? await ensureInt8(def, resolved, undefined, modelsDir) : await ensureOnnx(def, resolved, undefined, modelsDir);
      const prefix = join(tmpdir(), `catdog-profile-${process.pid}-${name}-${precision}`);
      const session = await ort.InferenceSession.create(path, { ...sessionOptions({ threads }, BACKBONES[name]), enableProfiling: true, profileFilePrefix: prefix });
      const x = new ort.Tensor('float32', randomInput(def.inputSize, 1), [1, 3, def.inputSize, def.inputSize]);
      for (let i = 0; i < 13; i++) await session.run({ input: x });
      const dir = tmpdir();
      const { readdir } = await import('node:fs/promises');
      const file = (await readdir(dir)).map((f) => join(dir, f)).find((f) => f.startsWith(prefix));
      await session.release();
      if (!file) continue;
      const events = JSON.parse(await readFile(file, 'utf8')) as { cat: string; name: string; dur: number; args?: { op_name?: string } }[];
      await rm(file, { force: true });
      const nodes = events.filter((e) => e.cat === 'Node' && e.name.endsWith('_kernel_time'));
      const runsSeen = events.filter((e) => e.name === 'model_run').length;
      const total = nodes.reduce((t, e) => t + e.dur, 0);
      const byOp = new Map<string, number>();
      for (const e of nodes) byOp.set(e.args?.op_name ?? '?', (byOp.get(e.args?.op_name ?? '?') ?? 0) + e.dur);
      const share = (f: (e: (typeof nodes)[number]) => boolean) => (nodes.filter(f).reduce((t, e) => t + e.dur, 0) / total) * 100;
      const graph = def.build({ top: true });
      const stem = graph.nodes.find((n) => n.op === 'conv')!;
      const stemMacs = stem.op === 'conv' ? stem.shape.h * stem.shape.w * stem.filters * graph.node(stem.inputs[0]).shape.c * stem.kernel[0] * stem.kernel[1] : 0;
      // The first convolution ONNX Runtime runs (whatever its fused node is called) is the stem.
      const stemNode = nodes.find((e) => /Conv/.test(e.args?.op_name ?? ''))?.name;
      const ops = [...byOp].sort((a, b) => b[1] - a[1]).slice(0, 6).map(([op, us]) => `${op} ${((us / total) * 100).toFixed(1)}%`).join(', ');
      log(
        `${precision} ${def.title.padEnd(12)} ${(total / runsSeen / 1000).toFixed(1)} ms/run in kernels; ${ops}; stem ${stem.name} ${share((e) => e.name === stemNode).toFixed(1)}% of the time for ${((stemMacs / graph.macs()) * 100).toFixed(1)}% of the MACs; ` +
          `top ${share((e) => /Gemm|Softmax/.test(e.args?.op_name ?? '')).toFixed(1)}%; reorders/transposes ${share((e) => /Reorder|Transpose/.test(e.args?.op_name ?? '')).toFixed(1)}%`,
      );
    }
  }
}

interface Timed {
  precision: Precision;
  backbones: LoadedBackbone[];
  batch1: Map<BackboneName, number[]>;
  faults: Map<BackboneName, number[]>;
  fused: number[];
  inputs: Float32Array[];
}

const round = (x: number) => Math.round(x * 10) / 10;
const pct = (a: number, b: number) => (Math.abs(a - b) / Math.min(a, b)) * 100;

async function main(): Promise<void> {
  if (values.worker) return worker(values.worker === 'spin');
  if (values.prepare) return prepare();
  if (values.rss) return rssChild(values.rss as Precision);
  if (values.profile) return profile();
  await runChild(['--prepare', ...(values['no-int8'] ? ['--no-int8'] : [])]);
  const cpu = cpuInfo();
  log(`catdog bench: onnxruntime-node ${ort.env.versions?.common ?? ''}, threads ${threads ?? 'default'}, ${rounds} rounds x ${perRound} runs, batch ${batchSize}`);
  log(`CPU: ${cpu.model}, ${cpu.cores} cores; vector extensions: ${cpu.extensions.join(' ') || 'unknown'}`);
  const precisions: Precision[] = values['no-int8'] ? ['fp32'] : ['fp32', 'int8'];
  const timed: Timed[] = [];
  for (const precision of precisions) {
    const bs: LoadedBackbone[] = [];
    for (const name of ORDER) {
      try {
        bs.push(await loadBackbone(BACKBONES[name], weightSpec(name).spec, { threads, precision, modelsDir }));
      } catch (e) {
        log(`${precision} ${BACKBONES[name].title}: not measured (${(e as Error).message})`);
      }
    }
    timed.push({ precision, backbones: bs, batch1: new Map(bs.map((b) => [b.definition.name, []])), faults: new Map(bs.map((b) => [b.definition.name, []])), fused: [], inputs: bs.map((b) => randomInput(b.definition.inputSize, 1)) });
  }
  const probes = await loadProbes(sessionOptions({ threads }, BACKBONES.resnet50));
  for (const t of timed) for (let i = 0; i < 2; i++) for (const [k, b] of t.backbones.entries()) await runBackbone(b, t.inputs[k], 1);

  // Interleaved rounds: the peak probes, every backbone in every precision, then fused in each.
  const peaks: Record<Precision, number[]> = { fp32: [], int8: [] };
  for (let r = 0; r < rounds; r++) {
    for (const precision of precisions) {
      let best = 0;
      for (const p of probes.filter((q) => q.precision === precision)) best = Math.max(best, await probeGmacs(p));
      peaks[precision].push(best);
    }
    for (const t of timed) {
      for (const [k, b] of t.backbones.entries()) {
        for (let i = 0; i < perRound; i++) {
          const f0 = process.resourceUsage().minorPageFault;
          const t0 = performance.now();
          await runBackbone(b, t.inputs[k], 1);
          t.batch1.get(b.definition.name)!.push(performance.now() - t0);
          t.faults.get(b.definition.name)!.push(process.resourceUsage().minorPageFault - f0);
        }
      }
    }
    for (const t of timed) {
      if (t.backbones.length !== ORDER.length) continue;
      for (let i = 0; i < perRound; i++) {
        const t0 = performance.now();
        for (const [k, b] of t.backbones.entries()) await runBackbone(b, t.inputs[k], 1);
        t.fused.push(performance.now() - t0);
      }
    }
  }
  for (const p of probes) await p.session.release();
  const peak = { fp32: median(peaks.fp32), int8: peaks.int8.length ? median(peaks.int8) : NaN };
  log(`measured peak (best of the 3x3 and 1x1 convolution probes, median over ${rounds} rounds): fp32 ${peak.fp32.toFixed(0)} GMAC/s, int8 ${peak.int8.toFixed(0)} GMAC/s`);

  const photos = await realPhotos(64);
  const report: Record<Precision, Record<string, unknown>> = { fp32: {}, int8: {} };
  const fp32Ms = new Map<string, number>();
  for (const t of timed) {
    const out: Record<string, unknown> = {};
    const backbones: Record<string, unknown> = {};
    let limitTotal = 0;
    for (const b of t.backbones) {
      const def = b.definition;
      const times = t.batch1.get(def.name)!;
      const ms = median(times);
      // Two halves of the interleaved rounds: how far apart the same figure lands within this run.
      const half = pct(median(times.filter((_, i) => Math.floor(i / perRound) % 2 === 0)), median(times.filter((_, i) => Math.floor(i / perRound) % 2 === 1)));
      const ips = await imagesPerSecond(b);
      const limit = (def.build().macs() / 1e9 / peak[t.precision]) * 1000;
      limitTotal += limit;
      const weights = b.info.generated ? 'generated' : b.info.weights;
      const faults = median(t.faults.get(def.name)!);
      backbones[def.name] = { ms_p50: round(ms), img_per_s: round(ips), load_ms: round(b.info.loadMs), ratio: Math.round((ms / limit) * 100) / 100, weights, faults_per_run: faults, halves_differ_pct: round(half) };
      if (t.precision === 'fp32') fp32Ms.set(def.name, ms);
      const vs = t.precision === 'int8' && fp32Ms.has(def.name) ? `  ${(ms / fp32Ms.get(def.name)!).toFixed(2)}x fp32` : '';
      log(
        `${t.precision} ${def.title.padEnd(12)} ${ms.toFixed(1).padStart(7)} ms/img (batch 1, p50)  ${ips.toFixed(1).padStart(6)} img/s (batch ${batchSize})  load ${b.info.loadMs.toFixed(0).padStart(5)} ms  limit ${limit.toFixed(1)} ms  ratio ${(ms / limit).toFixed(2)}${vs}  page faults/run ${faults}  halves ${half.toFixed(1)}% apart  [${weights === 'generated' ? 'generated weights' : weights}]`,
      );
    }
    out.backbones = backbones;
    if (t.fused.length) {
      const fusedP50 = median(t.fused);
      const half = pct(median(t.fused.filter((_, i) => Math.floor(i / perRound) % 2 === 0)), median(t.fused.filter((_, i) => Math.floor(i / perRound) % 2 === 1)));
      const batchInputs = t.backbones.map((b) => randomInput(b.definition.inputSize, batchSize));
      const n = Math.max(2, Math.ceil(8 / batchSize));
      const tb = performance.now();
      for (let i = 0; i < n; i++) for (const [k, b] of t.backbones.entries()) await runBackbone(b, batchInputs[k], batchSize);
      const fusedIps = (n * batchSize) / ((performance.now() - tb) / 1000);
      out.fused = { ms_p50: round(fusedP50), img_per_s: round(fusedIps), ratio: Math.round((fusedP50 / limitTotal) * 100) / 100, halves_differ_pct: round(half) };
      if (t.precision === 'fp32') fp32Ms.set('fused', fusedP50);
      const vs = t.precision === 'int8' && fp32Ms.has('fused') ? `  ${(fusedP50 / fp32Ms.get('fused')!).toFixed(2)}x fp32` : '';
      log(`${t.precision} ${'fused'.padEnd(12)} ${fusedP50.toFixed(1).padStart(7)} ms/img (batch 1, p50)  ${fusedIps.toFixed(1).padStart(6)} img/s (batch ${batchSize})  limit ${limitTotal.toFixed(1)} ms  ratio ${(fusedP50 / limitTotal).toFixed(2)}${vs}  halves ${half.toFixed(1)}% apart`);
    }
    out.limit_ms = round(limitTotal);
    if (photos) {
      const resnet = t.backbones.find((b) => b.definition.name === 'resnet50');
      if (resnet) out.resnet50_decode_img_per_s = round(await endToEnd([resnet], photos, batchSize));
      if (t.backbones.length === ORDER.length) out.fused_decode_img_per_s = round(await endToEnd(t.backbones, photos.slice(0, 16), 1));
      log(`${t.precision} with decoding, real photos from train.zip: ResNet50 ${out.resnet50_decode_img_per_s ?? '-'} img/s (batch ${batchSize}, 64 photos), fused ${out.fused_decode_img_per_s ?? '-'} img/s (batch 1, 16 photos)`);
    }
    for (const b of t.backbones) await b.session.release();
    report[t.precision] = out;
  }
  for (const precision of precisions) {
    const rss = (await runChild(['--rss', precision, ...(threads ? ['--threads', String(threads)] : []), '--batch', String(batchSize)])) as { single: number; batches: number };
    report[precision].rss_mb_peak = round(rss.single);
    report[precision].rss_mb_after_batches = round(rss.batches);
    log(`${precision} peak RSS with three backbones loaded: ${rss.single.toFixed(0)} MB serving single photos, ${rss.batches.toFixed(0)} MB after batches of ${batchSize}`);
  }

  let cont: Record<string, number> | null = null;
  if (!values['no-contention']) {
    cont = await contention();
    log(`ResNet50 batch-1 p50 while another process runs ResNet50 batches: spinning off ${cont.no_spin.toFixed(1)} ms, spinning on ${cont.spin.toFixed(1)} ms`);
  }
  const result: Record<string, unknown> = { ...report.fp32 };
  result.peak_gmacs_fp32 = round(peak.fp32);
  result.peak_gmacs_int8 = Number.isFinite(peak.int8) ? round(peak.int8) : null;
  result.cpu = `${cpu.model} (${cpu.cores} cores; ${cpu.extensions.join(' ')})`;
  if (cont) result.contention_ms_p50 = { no_spin: round(cont.no_spin), spin: round(cont.spin) };
  if (precisions.includes('int8')) result.int8 = report.int8;
  if (values.json) process.stdout.write(`${JSON.stringify(result)}\n`);
}

await main();
