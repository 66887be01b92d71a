/**
 * A second writer of the feature cache (for test/unit/feature-cache.test.ts): waits until
 * START_AT (epoch ms, so writers start together), then puts records `from`..`from+count-1`, each
 * vector filled with its own number, and exits 0. Args: dir from count.
 */
import { FeatureCache } from '../../src/train/feature-cache.ts';

const [dir, from, count] = [process.argv[2]!, Number(process.argv[3]), Number(process.argv[4])];
const startAt = Number(process.env.START_AT ?? 0);
while (Date.now() < startAt) await new Promise((r) => setTimeout(r, 1));
const cache = FeatureCache.open(dir, 'resnet50', 'abcdef0123456789ffff', 2048);
for (let k = from; k < from + count; k++) cache.put(k.toString(16).padStart(64, '0'), 0, new Float32Array(2048).fill(k));
cache.close();
