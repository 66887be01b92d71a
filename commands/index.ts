/** Every Discord command, in the order they are registered. */
import type { Command } from '../src/bot/command.ts';
import { catOrDog } from './cat-or-dog.ts';
import { catdog } from './catdog.ts';
import { catdogSettings } from './catdog-settings.ts';
import { catdogStats } from './catdog-stats.ts';
import { jobs } from './jobs.ts';
import { model } from './model.ts';
import { retrain } from './retrain.ts';
import { score } from './score.ts';

export const commands: readonly Command[] = [catdog, catOrDog, catdogSettings, catdogStats, retrain, score, model, jobs];
