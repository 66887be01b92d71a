/** trainDataProblems: what stops a retrain on TRAIN_DATA on this machine, one sentence per source; checkJobParams refuses with them. */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkJobParams, trainDataProblems } from '../../src/jobs/work.ts';

const dir = mkdtempSync(join(tmpdir(), 'catdog-train-data-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('trainDataProblems', () => {
  const folder = join(dir, 'train');
  mkdirSync(folder);
  const zip = join(dir, 'train.zip');
  writeFileSync(zip, Buffer.from([0x50, 0x4b, 0x05, 0x06, ...new Array(18).fill(0)])); // an empty zip
  const pointer = join(dir, 'pointer.zip');
  writeFileSync(pointer, 'version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 1\n');
  const missing = join(dir, 'nowhere', 'train.zip');

  it('is empty when every source is a folder or a zip file', () => {
    expect(trainDataProblems([folder, zip])).toEqual([]);
  });

  it('names each source that is not there or not a zip file, and says when none is configured', () => {
    expect(trainDataProblems([folder, missing, pointer])).toEqual([`${missing} is not there`, `${pointer} is not a zip file`]);
    expect(trainDataProblems([])).toEqual([expect.stringMatching(/^No training data is configured: set TRAIN_DATA/)]);
    expect(trainDataProblems([join(zip, 'inside')])).toEqual([`${join(zip, 'inside')} is not there`]);
  });

  it('checkJobParams refuses a retrain with them', () => {
    expect(() => checkJobParams({ kind: 'retrain', sources: [zip, pointer] }, true)).toThrow(
      `The training data cannot be used: ${pointer} is not a zip file (TRAIN_DATA).`,
    );
    expect(() => checkJobParams({ kind: 'retrain', sources: [zip, folder] }, true)).not.toThrow();
  });
});
