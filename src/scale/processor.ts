/**
 * The processor: the one piece of code that runs the model outside the doors' processes. The
 * embedded default forks it as a child (src/scale/child.ts); the distributed inference and jobs
 * workers run it in BullMQ's sandboxed child processes (src/scale/sandbox-*.ts). One classifier
 * (one set of ONNX sessions) per process, so `session.run`, a synchronous native call, never
 * blocks an event loop that holds a Discord gateway, a web server or a BullMQ lock.
 *
 * It classifies photos, runs job work (src/jobs/work.ts, the same pipeline as before: interactive
 * requests still go before job batches in the classifier's priority lock) and swaps heads.
 */
import { loadConfig, type Env } from '../config.ts';
import type { JobContext, ProgressUpdate } from '../jobs/runner.ts';
import type { JobParams, JobRecord, JobResult } from '../jobs/types.ts';
import { pipelineWork } from '../jobs/work.ts';
import { Classifier, type ClassifierInfo } from '../model/classifier.ts';
import { Head, type HeadFile } from '../model/head.ts';
import { Registry } from '../model/registry.ts';
import type { Prediction } from '../model/types.ts';

export interface ProcessorInfo {
  backbones: ClassifierInfo['backbones'];
  precisions: ClassifierInfo['precisions'];
  model: string | null;
  loadMs: number;
  pid: number;
  threads: number | null;
}

export class Processor {
  private constructor(
    readonly classifier: Classifier,
    private readonly dataDir: string,
    private readonly registry: Registry,
    private readonly threads: number | null,
  ) {}

  /** Loads the classifier as configured by `env` (the same configuration every role reads). */
  static async load(env: Env, o: { threads?: number; log?: (line: string) => void } = {}): Promise<Processor> {
    const config = loadConfig(env);
    const classifier = await Classifier.load({
      model: config.model,
      limits: { maxBytes: config.limits.maxImageBytes, maxPixels: config.limits.maxImagePixels },
      threads: o.threads,
      log: o.log,
    });
    return new Processor(classifier, config.dataDir, new Registry(config.model.registryDir), o.threads ?? config.model.threads);
  }

  info(): ProcessorInfo {
    const i = this.classifier.info();
    return { backbones: i.backbones, precisions: i.precisions, model: i.model, loadMs: i.loadMs, pid: process.pid, threads: this.threads };
  }

  classify(bytes: Uint8Array, signal?: AbortSignal): Promise<Prediction> {
    return this.classifier.classify(bytes, { signal });
  }

  /** Answers with `head` from now on (requests in flight finish with the one they started with). */
  setHead(file: HeadFile | null): string | null {
    this.classifier.setHead(file ? new Head(file) : null);
    return this.classifier.info().model;
  }

  /** Runs a job's work (a retrain or a scoring run) for `record` with its resolved `params`, reporting progress. */
  runJob(record: JobRecord, params: JobParams, signal: AbortSignal, progress: (p: ProgressUpdate) => void): Promise<JobResult> {
    const ctx: JobContext = { record, signal, progress };
    return pipelineWork({ classifier: this.classifier, dataDir: this.dataDir, registry: this.registry }).run(params, ctx);
  }

  close(): Promise<void> {
    return this.classifier.close();
  }
}
