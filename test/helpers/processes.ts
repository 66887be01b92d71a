/**
 * Processes for multi-process tests: a TypeScript entry run with tsx's loader (its output kept by
 * line, waits bounded in time), and a redis-server of our own on a free loopback port (never the
 * shared default one), with AOF so a restart keeps what was written.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { repoRoot } from './shared.ts';

export interface Proc {
  proc: ChildProcess;
  out: string[];
  /** Resolves with the first output line matching `re` (already seen or to come); rejects after timeoutMs or when the process exits. */
  line(re: RegExp, timeoutMs?: number): Promise<string>;
  exit: Promise<number | null>;
}

const tsx = () => pathToFileURL(join(repoRoot, 'node_modules', 'tsx', 'dist', 'loader.mjs')).href;

/**
 * Runs the TypeScript file `script` (relative to the repository) with tsx's loader, in `cwd` (a
 * temporary folder: no .env is read), with only PATH, HOME and `env` in its environment. Its
 * stdout and stderr are kept by line in `out`; `line()` waits at most `lineTimeoutMs` unless told
 * (default 60 s) and fails at once when the process has exited without printing the line.
 */
export function runTs(script: string, args: string[], env: Record<string, string>, cwd: string, o: { lineTimeoutMs?: number } = {}): Proc {
  const proc = spawn(process.execPath, ['--import', tsx(), join(repoRoot, script), ...args], {
    cwd,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? cwd, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const out: string[] = [];
  let partial = '';
  const onData = (chunk: Buffer) => {
    partial += chunk.toString('utf8');
    const lines = partial.split('\n');
    partial = lines.pop()!;
    out.push(...lines);
    proc.emit('lines');
  };
  proc.stdout!.on('data', onData);
  proc.stderr!.on('data', onData);
  const exit = once(proc, 'exit').then(([code]) => code as number | null);
  const exited = () => proc.exitCode !== null || proc.signalCode !== null;
  return {
    proc,
    out,
    exit,
    line: (re, timeoutMs = o.lineTimeoutMs ?? 60_000) =>
      new Promise((resolve, reject) => {
        const check = () => {
          const l = out.find((x) => re.test(x));
          if (l) {
            done();
            resolve(l);
          }
        };
        const onExit = () => {
          done();
          reject(new Error(`exited (${proc.exitCode ?? proc.signalCode}) before a line matching ${re}; output:\n${out.slice(-40).join('\n')}`));
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`no line matching ${re} in ${timeoutMs} ms; output:\n${out.slice(-40).join('\n')}`));
        }, timeoutMs);
        const done = () => {
          clearTimeout(timer);
          proc.off('lines', check);
          proc.off('exit', onExit);
        };
        proc.on('lines', check);
        proc.once('exit', onExit);
        check();
        // Already gone (and the line not among what it printed): no line will come.
        if (exited() && !out.some((x) => re.test(x))) onExit();
      }),
  };
}

export const redisServerBin = spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' }).stdout.trim();

export async function freePort(): Promise<number> {
  const probe = createServer().listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const port = (probe.address() as AddressInfo).port;
  await new Promise((r) => probe.close(r));
  return port;
}

/**
 * A redis-server on 127.0.0.1:`port` with AOF in `dir` and noeviction, as README "Scaling" asks. `appendfsync` is `always` for tests (a killed Redis
 * loses nothing they check); benchmarks pass `everysec`, compose.yaml's setting, since `always`
 * adds an fsync to every job step.
 */
export async function startRedis(port: number, dir: string, appendfsync: 'always' | 'everysec' = 'always'): Promise<ChildProcess> {
  const redis = spawn(
    redisServerBin,
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--dir',
      dir,
      '--save',
      '',
      '--appendonly',
      'yes',
      '--appendfsync',
      appendfsync,
      '--maxmemory-policy',
      'noeviction',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let seen = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`redis-server did not start: ${seen}`)), 15_000);
    redis.stdout!.on('data', (d: Buffer) => {
      seen += d.toString();
      if (/Ready to accept connections/.test(seen)) {
        clearTimeout(timer);
        resolve();
      }
    });
    redis.once('exit', (code) => reject(new Error(`redis-server exited (${code}): ${seen}`)));
  });
  return redis;
}

export async function stopProcess(p: ChildProcess, signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 20_000): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const gone = once(p, 'exit');
  p.kill(signal);
  const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
  await gone;
  clearTimeout(timer);
}
