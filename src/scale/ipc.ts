/** The embedded child's messages (src/scale/child.ts ⇄ src/scale/embedded.ts), over Node's IPC with the 'advanced' serialization (bytes travel as they are). */
import type { ProgressUpdate } from '../jobs/runner.ts';
import type { JobParams, JobRecord, JobResult } from '../jobs/types.ts';
import type { HeadFile } from '../model/head.ts';
import type { Prediction } from '../model/types.ts';
import type { ProcessorInfo } from './processor.ts';
import type { WireError } from './wire.ts';

export type ToChild =
  | { t: 'classify'; id: number; bytes: Uint8Array }
  | { t: 'head'; id: number; file: HeadFile | null }
  | { t: 'job'; record: JobRecord; params: JobParams }
  | { t: 'abort'; jobId: string };

export type FromChild =
  | { t: 'ready'; info: ProcessorInfo }
  | { t: 'loadFailed'; error: WireError }
  | { t: 'answer'; id: number; ok: true; value: Prediction | ProcessorInfo }
  | { t: 'answer'; id: number; ok: false; error: WireError }
  | { t: 'progress'; jobId: string; update: ProgressUpdate }
  | { t: 'jobEnd'; jobId: string; ok: true; result: JobResult }
  | { t: 'jobEnd'; jobId: string; ok: false; error: WireError };
