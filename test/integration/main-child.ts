/**
 * Child-process entry for the shutdown test: src/main.ts's main() (its real signal handling, store
 * and exit) with the mean-colour TEST DOUBLE instead of the ONNX classifier. Every classification
 * waits for SIGUSR2 from the test, so the test decides when work is in flight.
 */
import { main } from '../../src/main.ts';
import { MeanColourTestClassifier } from '../helpers/test-classifier.ts';

class HeldClassifier extends MeanColourTestClassifier {
  override async classify(bytes: Uint8Array, options: { signal?: AbortSignal } = {}) {
    const hold = this.hold();
    const released = new Promise<void>((resolve) => process.once('SIGUSR2', () => resolve()));
    void hold.reached.then(() => process.stdout.write('test classifier: holding until SIGUSR2\n'));
    void released.then(() => hold.release());
    return super.classify(bytes, options);
  }
}

await main({ classifier: new HeldClassifier() });
