/**
 * Child-process entry for the restart test: src/main.ts's main() with the REAL classifier, as
 * `npm start` runs it (the test kills it with SIGKILL in the middle of a job). The progress
 * interval comes from CATDOG_TEST_PROGRESS_MS so the test sees progress quickly.
 */
import { main } from '../../src/main.ts';

await main({ jobProgressIntervalMs: Number(process.env.CATDOG_TEST_PROGRESS_MS ?? 5000) });
