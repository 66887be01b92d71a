/**
 * The embedded default's main-process side of the model process (src/scale/child.ts): a
 * classifier and a job work that look like the in-process ones (src/main.ts, src/jobs/runner.ts
 * and src/jobs/models.ts use them unchanged) but send every photo and every job to the child.
 * The main process keeps the store, the job records, Discord and the web page; its event loop is
 * never blocked by ONNX Runtime.
 *
 * If the child dies (out of memory, killed), what it was doing fails with a clear error — a
 * request is answered "something went wrong", a running job ends failed and can be run again —
 * and a new child is started.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { processEnv, type Env } from '../config.ts';
import { CatdogError } from '../errors.ts';
import type { JobContext, JobWork } from '../jobs/runner.ts';
import type { JobParams, JobResult } from '../jobs/types.ts';
import { checkJobParams } from '../jobs/data.ts';
import type { Head } from '../model/head.ts';
import type { BackboneName, Precisions, Prediction } from '../model/types.ts';
import type { FromChild, ToChild } from './ipc.ts';
import { tsExecArgv } from './fork.ts';
import type { ProcessorInfo } from './processor.ts';
import { fromWire } from './wire.ts';

const CHILD = fileURLToPath(new URL('./child.ts', import.meta.url));
const RESTART_DELAY_MS = 1000;

/** The model process stopped while it had our request or job. */
export class ModelProcessLost extends CatdogError {
  constructor(detail: string) {
    super('model_process_lost', `The model process stopped (${detail}); it is being restarted.`);
  }
}

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
}

interface RunningJob {
  resolve: (r: JobResult) => void;
  reject: (e: Error) => void;
  ctx: JobContext;
}

export class ModelProcess {
  private child!: ChildProcess;
  private current!: ProcessorInfo;
  private seq = 0;
  private readonly pending = new Map<number, Pending>();
  private readonly jobs = new Map<string, RunningJob>();
  private closing = false;
  private starting: Promise<void> | null = null;
  /** The head last set, given again to a restarted child. */
  private head: Head | null | undefined = undefined;

  private constructor(
    private readonly env: Env,
    private readonly log: (line: string) => void,
  ) {}

  /** Forks the model process and waits until its classifier is loaded. */
  static async start(env: Env, log: (line: string) => void): Promise<ModelProcess> {
    const p = new ModelProcess(env, log);
    await p.spawn();
    return p;
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  private spawn(): Promise<void> {
    this.starting = (async () => {
      const child = fork(CHILD, [], {
        env: { ...processEnv(), ...this.env },
        execArgv: tsExecArgv(),
        serialization: 'advanced',
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      });
      this.child = child;
      const ready = new Promise<ProcessorInfo>((resolve, reject) => {
        const onMessage = (m: FromChild) => {
          if (m.t === 'ready') resolve(m.info);
          else if (m.t === 'loadFailed') reject(fromWire(m.error));
        };
        child.on('message', onMessage);
        void once(child, 'exit').then(([code, sig]) => reject(new Error(`the model process exited (${sig ?? code}) while loading`)));
      });
      this.current = await ready;
      child.on('message', (m: FromChild) => this.onMessage(m));
      child.once('exit', (code, signal) => this.onExit(child, code, signal));
      if (this.head !== undefined) await this.sendHead(this.head);
    })();
    return this.starting.finally(() => (this.starting = null));
  }

  private onMessage(m: FromChild): void {
    switch (m.t) {
      case 'answer': {
        const p = this.pending.get(m.id);
        if (!p) return;
        this.pending.delete(m.id);
        if (m.ok) p.resolve(m.value);
        else p.reject(fromWire(m.error));
        return;
      }
      case 'progress':
        this.jobs.get(m.jobId)?.ctx.progress(m.update);
        return;
      case 'jobEnd': {
        const j = this.jobs.get(m.jobId);
        if (!j) return;
        this.jobs.delete(m.jobId);
        if (m.ok) j.resolve(m.result);
        else j.reject(fromWire(m.error));
        return;
      }
      default:
        return;
    }
  }

  private onExit(child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (child !== this.child) return;
    const detail = signal ? `signal ${signal}` : `exit code ${code}`;
    const lost = new ModelProcessLost(detail);
    for (const p of this.pending.values()) p.reject(lost);
    this.pending.clear();
    for (const j of this.jobs.values()) j.reject(lost);
    this.jobs.clear();
    if (this.closing) return;
    this.log(`model process: stopped (${detail}); starting a new one in ${RESTART_DELAY_MS} ms`);
    setTimeout(() => {
      if (this.closing) return;
      this.spawn().then(
        () => this.log(`model process: running again (pid ${this.child.pid})`),
        (err) => this.log(`model process: could not restart: ${err instanceof Error ? err.message : String(err)}`),
      );
    }, RESTART_DELAY_MS).unref();
  }

  private async post<T>(make: (id: number) => ToChild): Promise<T> {
    if (this.closing) throw new ModelProcessLost('shutting down');
    if (this.starting) await this.starting;
    const id = ++this.seq;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.child.send(make(id), (err) => {
        if (err && this.pending.delete(id)) reject(new ModelProcessLost(err.message));
      });
    });
  }

  // ------------------------------------------------------------ the classifier the doors use

  classify(bytes: Uint8Array): Promise<Prediction> {
    return this.post<Prediction>((id) => ({ t: 'classify', id, bytes }));
  }

  info(): { backbones: BackboneName[]; precisions: Precisions; model: string | null; loadMs: number } {
    return { backbones: this.current.backbones, precisions: this.current.precisions, model: this.current.model, loadMs: this.current.loadMs };
  }

  get backbones(): BackboneName[] {
    return this.current.backbones;
  }

  /** The precision each of the child's backbones runs in. */
  get precisions(): Precisions {
    return this.current.precisions;
  }

  /** ONNX Runtime threads the child's sessions were made with (null: ONNX Runtime's default for this machine). */
  get threads(): number | null {
    return this.current.threads;
  }

  /** Swaps the child's head (promotion, rollback); resolves once the child answers with it. */
  async setHead(head: Head | null): Promise<void> {
    if (head) {
      head.checkBackbones(this.backbones);
      head.checkPrecision(this.precisions);
    }
    this.head = head;
    await this.sendHead(head);
  }

  private async sendHead(head: Head | null): Promise<void> {
    const id = ++this.seq;
    const info = await new Promise<ProcessorInfo>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.child.send({ t: 'head', id, file: head ? head.file : null } satisfies ToChild);
    });
    this.current = info;
  }

  // ------------------------------------------------------------ the job work the runner uses

  readonly jobWork: JobWork = {
    check: async (params: JobParams) => checkJobParams(params, this.current.model !== null),
    run: async (params: JobParams, ctx: JobContext) => {
      if (this.starting) await this.starting;
      const jobId = ctx.record.id;
      return new Promise<JobResult>((resolve, reject) => {
        this.jobs.set(jobId, { resolve, reject, ctx });
        const abort = () => this.child.send({ t: 'abort', jobId } satisfies ToChild);
        if (ctx.signal.aborted) abort();
        else ctx.signal.addEventListener('abort', abort, { once: true });
        this.child.send({ t: 'job', record: ctx.record, params } satisfies ToChild);
      });
    },
  };

  /** Stops the child (after what the doors had in flight: call it last). */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    const child = this.child;
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, 'exit');
    child.disconnect();
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }
}
