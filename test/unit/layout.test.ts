/**
 * The layout's rules, read from the source: imports between the folders under src/ flow one way
 * (no two folders import each other, directly or round a loop), the domain never imports a door,
 * and only src/config.ts reads the environment.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../helpers/shared.ts';

const SRC = join(repoRoot, 'src');

function tsFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? tsFiles(p) : p.endsWith('.ts') ? [p] : [];
  });
}

/** The top folder under src/ of a file there ('' for a file directly in src/). */
function folderOf(file: string): string {
  const parts = relative(SRC, file).split(sep);
  return parts.length > 1 ? parts[0]! : '';
}

/** Relative imports of a file (static, dynamic and type-only), as absolute paths. */
function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const specs = [...text.matchAll(/(?:from\s+|import\s*\(\s*|import\s+)'(\.{1,2}\/[^']+)'/g)].map((m) => m[1]!);
  return specs.map((s) => resolve(dirname(file), s));
}

/** folder → the folders it imports (files directly in src/ are no folder and are left out). */
function folderGraph(): Map<string, Set<string>> {
  const graph = new Map<string, Set<string>>();
  for (const file of tsFiles(SRC)) {
    const from = folderOf(file);
    if (!from) continue;
    for (const target of importsOf(file)) {
      if (!target.startsWith(SRC + sep)) continue;
      const to = folderOf(target);
      if (!to || to === from) continue;
      if (!graph.has(from)) graph.set(from, new Set());
      graph.get(from)!.add(to);
    }
  }
  return graph;
}

describe('layout', () => {
  it('no two folders under src/ import each other, directly or round a loop', () => {
    const graph = folderGraph();
    const loops: string[] = [];
    const walk = (start: string, at: string, path: string[]) => {
      for (const next of graph.get(at) ?? []) {
        if (next === start) loops.push([...path, next].join(' → '));
        else if (!path.includes(next)) walk(start, next, [...path, next]);
      }
    };
    for (const start of graph.keys()) walk(start, start, [start]);
    expect(loops).toEqual([]);
  });

  it('the domain (vision, model, train, store) imports no door (bot, web, cli) and no discord.js', () => {
    const wrong: string[] = [];
    for (const file of tsFiles(SRC)) {
      if (!['vision', 'model', 'train', 'store'].includes(folderOf(file))) continue;
      for (const target of importsOf(file)) {
        if (['bot', 'web', 'cli'].includes(folderOf(target))) wrong.push(`${relative(repoRoot, file)} imports ${relative(repoRoot, target)}`);
      }
      if (/from\s+'discord\.js'/.test(readFileSync(file, 'utf8'))) wrong.push(`${relative(repoRoot, file)} imports discord.js`);
    }
    expect(wrong).toEqual([]);
  });

  it('only src/config.ts reads process.env (scripts and commands too go through it)', () => {
    const dirs = ['src', 'scripts', 'commands'].map((d) => join(repoRoot, d));
    const readers = dirs
      .flatMap(tsFiles)
      .filter((f) => /process\.env\b/.test(readFileSync(f, 'utf8')))
      .map((f) => relative(repoRoot, f));
    expect(readers).toEqual(['src/config.ts']);
  });
});
