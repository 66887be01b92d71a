/**
 * trainDataProblems: what stops a retrain on TRAIN_DATA on this machine, one sentence per source; checkJobParams refuses with them.
 * jobParams / jobDataProblems: a request (what a person asked for) resolved with the running machine's data; the same check for /score (TEST_DATA, TEST_LABELS).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkJobParams, jobDataProblems, jobParams, trainDataProblems } from '../../src/jobs/data.ts';

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

describe('a request resolved on the machine that runs it', () => {
  const folder = join(dir, 'test');
  mkdirSync(folder, { recursive: true });
  const labels = join(dir, 'labels.csv');
  writeFileSync(labels, 'id,label\n');
  const missing = join(dir, 'nowhere', 'test.zip');
  const none = { train: [], test: null, testLabels: null };

  it('what the request names wins; the rest is the data configured here', () => {
    const here = { train: ['/jobs/train.zip'], test: '/jobs/test.zip', testLabels: '/jobs/labels.csv' };
    expect(jobParams({ kind: 'retrain' }, here)).toEqual({ kind: 'retrain', sources: ['/jobs/train.zip'] });
    expect(jobParams({ kind: 'retrain', sources: ['/asked'] }, here)).toEqual({ kind: 'retrain', sources: ['/asked'] });
    expect(jobParams({ kind: 'score' }, here)).toEqual({ kind: 'score', source: '/jobs/test.zip', labels: '/jobs/labels.csv' });
    // A test set named in the request does not take this machine's labels (they belong to its own test set).
    expect(jobParams({ kind: 'score', source: '/asked' }, here)).toEqual({ kind: 'score', source: '/asked', labels: null });
    // A resolved record resolves to itself (a job handed over again).
    const resolved = jobParams({ kind: 'score' }, here);
    expect(jobParams(resolved, none)).toEqual(resolved);
  });

  it('jobDataProblems says what stops /score here, like /retrain: none configured, test data or labels not there', () => {
    expect(jobDataProblems({ kind: 'score' }, { ...none, test: folder, testLabels: labels })).toEqual([]);
    expect(jobDataProblems({ kind: 'score' }, none)).toEqual([expect.stringMatching(/^No test data is configured: set TEST_DATA/)]);
    expect(jobDataProblems({ kind: 'score' }, { ...none, test: missing, testLabels: join(dir, 'no-labels.csv') })).toEqual([
      `${missing} is not there`,
      `the labels ${join(dir, 'no-labels.csv')} are not there`,
    ]);
    expect(jobDataProblems({ kind: 'retrain' }, { ...none, train: [missing] })).toEqual([`${missing} is not there`]);
    expect(() => checkJobParams({ kind: 'score', source: missing, labels: null }, true)).toThrow(
      `The test data cannot be used: ${missing} is not there (TEST_DATA, TEST_LABELS).`,
    );
  });
});
