/**
 * The embedded default's model process: forked by the main process (src/scale/embedded.ts), it
 * loads the processor (the ONNX sessions) and answers classify / head / job messages, so the main
 * process only does gateway and web I/O. It exits when the main process goes away (its IPC
 * channel closes), whatever way that happens (SIGKILL included).
 */
import { processEnv } from '../config.ts';
import type { FromChild, ToChild } from './ipc.ts';
import { Processor } from './processor.ts';
import { toWire } from './wire.ts';

const send = (m: FromChild) => process.send?.(m);
process.on('disconnect', () => process.exit(0));
// The parent decides when to stop (it sends nothing more and disconnects); signals sent to the
// whole process group (Ctrl-C) must not kill the model before the main process has finished.
process.on('SIGINT', () => {});
process.on('SIGTERM', () => {});

let processor: Processor;
try {
  processor = await Processor.load(processEnv(), { log: (l) => process.stdout.write(`${l}\n`) });
} catch (err) {
  send({ t: 'loadFailed', error: toWire(err) });
  process.exit(1);
}

const jobs = new Map<string, AbortController>();

process.on('message', (m: ToChild) => {
  switch (m.t) {
    case 'classify':
      processor.classify(m.bytes).then(
        (value) => send({ t: 'answer', id: m.id, ok: true, value }),
        (err) => send({ t: 'answer', id: m.id, ok: false, error: toWire(err) }),
      );
      return;
    case 'head':
      try {
        processor.setHead(m.file);
        send({ t: 'answer', id: m.id, ok: true, value: processor.info() });
      } catch (err) {
        send({ t: 'answer', id: m.id, ok: false, error: toWire(err) });
      }
      return;
    case 'job': {
      const controller = new AbortController();
      const jobId = m.record.id;
      jobs.set(jobId, controller);
      processor
        .runJob(m.record, m.params, controller.signal, (update) => send({ t: 'progress', jobId, update }))
        .then(
          (result) => send({ t: 'jobEnd', jobId, ok: true, result }),
          (err) => send({ t: 'jobEnd', jobId, ok: false, error: toWire(err) }),
        )
        .finally(() => jobs.delete(jobId));
      return;
    }
    case 'abort':
      jobs.get(m.jobId)?.abort(new Error('stopped by the main process'));
      return;
  }
});

send({ t: 'ready', info: processor.info() });
