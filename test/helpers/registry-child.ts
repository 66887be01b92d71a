/**
 * A second process using the model registry (for test/unit/registry-safety.test.ts): waits until
 * START_AT (epoch ms, so all children start together), makes each id after the registry folder in argv active in turn, then
 * exits 0.
 */
import { Registry } from '../../src/model/registry.ts';

const startAt = Number(process.env.START_AT ?? 0);
while (Date.now() < startAt) await new Promise((r) => setTimeout(r, 1));
const registry = new Registry(process.argv[2]!);
for (const id of process.argv.slice(3)) await registry.useModel(id);
