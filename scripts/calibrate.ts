/**
 * `npm run calibrate -- [--backbones resnet50,...] [--photos 300] [--method percentile|mse|minmax] [--tail 1e-5] [--residual-tail 1e-6] [--keep-float T1,T2] [--float-residual] [--rounding nearest|gptq [--gptq-positions 64] [--gptq-damp 0.01]] SOURCE...`
 *
 * Measures the activation ranges the int8 graphs are quantized with: the fp32 graph of each
 * backbone's configured weights (CATDOG_WEIGHTS_<NAME> or the default) runs on `--photos`
 * labelled training photos (a seeded shuffle, seed 2018, of SOURCE: Kaggle zips or folders) and
 * models/calibration/<backbone>-<weights key>.json is written. The file lists the photos, so a
 * conformance check can use others. `--residual-tail` is the percentile tail of the residual
 * path's tensors (Add inputs and outputs), where one photo's large values clip. `--keep-float` (tensors kept fp32) and `--float-residual`
 * (fp32 Adds on the residual path) are the file's quantization recipe: chosen by measurement with
 * scripts/int8-sensitivity.ts. `--rounding gptq` also rounds the int8 kernels with GPTQ on the
 * same photos (src/model/onnx/gptq.ts) and writes models/calibration/<backbone>-<key>.gptq.br.
 */
import { parseArgs } from 'node:util';
import { BACKBONES } from '../src/model/backbones/index.ts';
import type { BackboneName } from '../src/model/types.ts';
import { loadConfig } from '../src/config.ts';

const isBackboneName = (s: string): s is BackboneName => Object.hasOwn(BACKBONES, s);
const model = loadConfig().model;
import { CALIBRATION_METHODS, calibrateBackbone, calibrationSamples, type CalibrationMethod } from '../src/model/onnx/calibrate.ts';
import { ensureOnnx } from '../src/model/onnx/session.ts';
import { resolveWeights } from '../src/model/weights/sources.ts';
import { openDataset } from '../src/train/dataset.ts';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    backbones: { type: 'string', default: 'resnet50' },
    photos: { type: 'string', default: '300' },
    method: { type: 'string', default: 'percentile' },
    tail: { type: 'string' },
    'residual-tail': { type: 'string' },
    'keep-float': { type: 'string' },
    'float-residual': { type: 'boolean', default: false },
    rounding: { type: 'string', default: 'nearest' },
    'gptq-positions': { type: 'string' },
    'gptq-damp': { type: 'string' },
  },
});
if (!positionals.length) {
  console.error('usage: npm run calibrate -- [--backbones resnet50,inception_v3,xception] [--photos 300] [--method percentile|mse|minmax] [--tail 1e-5] [--residual-tail 1e-6] [--keep-float T1,T2] [--float-residual] [--rounding nearest|gptq] SOURCE...');
  process.exit(2);
}
const method = values.method as CalibrationMethod;
if (values.rounding !== 'nearest' && values.rounding !== 'gptq') throw new Error(`--rounding must be nearest or gptq, got ${values.rounding}`);
if (!CALIBRATION_METHODS.includes(method)) throw new Error(`--method must be one of ${CALIBRATION_METHODS.join(', ')}, got ${method}`);
const ds = await openDataset(positionals, { kind: 'train' });
try {
  const photos = calibrationSamples(ds.samples, Number(values.photos));
  for (const name of values.backbones!.split(',').map((s) => s.trim())) {
    if (!isBackboneName(name)) throw new Error(`unknown backbone ${name}`);
    const def = BACKBONES[name];
    const resolved = resolveWeights(def, model.weights[name] ?? def.defaultWeights, model.modelsDir);
    const fp32 = await ensureOnnx(def, resolved, console.log, model.modelsDir);
    const t0 = performance.now();
    const { path, file } = await calibrateBackbone(def, fp32.path, fp32.sidecar.weightsId, resolved.cacheKey, photos, {
      method,
      modelsDir: model.modelsDir,
      tail: values.tail ? Number(values.tail) : undefined,
      residualTail: values['residual-tail'] ? Number(values['residual-tail']) : undefined,
      recipe: { keepFloat: values['keep-float'] ? values['keep-float'].split(',').map((t) => t.trim()) : undefined, floatResidual: values['float-residual'] || undefined },
      ...(values.rounding === 'gptq'
        ? { gptq: { positions: values['gptq-positions'] ? Number(values['gptq-positions']) : undefined, damp: values['gptq-damp'] ? Number(values['gptq-damp']) : undefined, log: console.log } }
        : {}),
      onProgress: (d, n, pass) => d % 50 === 0 && process.stderr.write(`${def.title}: pass ${pass}, ${d}/${n} photos\n`),
    });
    const recipe = (file.recipe ? `, recipe ${JSON.stringify(file.recipe)}` : '') + (file.rounding ? `, GPTQ rounding in ${file.rounding.file}` : '');
    console.log(`${def.title} (${resolved.label}): ${method} ranges of ${Object.keys(file.ranges).length} tensors on ${file.photos} photos in ${((performance.now() - t0) / 1000).toFixed(0)} s${recipe} → ${path}`);
  }
} finally {
  await ds.close();
}
