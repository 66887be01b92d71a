/**
 * The process under test for `npm run bench:abuse` (scripts/bench-abuse.ts starts it): src/main.ts
 * with the mean-colour test classifier (it decodes every photo for real with sharp) made slow,
 * argv[2] ms per photo, so the queue stays busy while the abuse runs. Everything else —
 * queue, limits, downloads, web server, store — is the real thing. Loopback only: the driver sets
 * WEB_HOST=127.0.0.1 and points Discord at its fake on 127.0.0.1. Prints "ready <url>" when up.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { main } from '../src/main.ts';
import type { Prediction } from '../src/model/types.ts';
import { MeanColourTestClassifier } from '../test/helpers/test-classifier.ts';

const delayMs = Number(process.argv[2] ?? 1000);

class SlowClassifier extends MeanColourTestClassifier {
  override async classify(bytes: Uint8Array, options: { signal?: AbortSignal } = {}): Promise<Prediction> {
    const p = await super.classify(bytes, options);
    await new Promise((r) => setTimeout(r, delayMs));
    return p;
  }
}

// The event loop's delay, reported (max ms since the last report) on SIGUSR2 to the driver.
const loop = monitorEventLoopDelay({ resolution: 5 });
loop.enable();
process.on('SIGUSR2', () => {
  process.stdout.write(`eld ${(loop.max / 1e6).toFixed(1)}\n`);
  loop.reset();
});

const app = await main({ classifier: new SlowClassifier({ maxBytes: 25 * 1024 * 1024 }), handleSignals: true, log: () => {} });
process.stdout.write(`ready ${app.web.url}\n`);
