/**
 * The `catdog` command. Each subcommand lives in src/cli/ and returns an exit code.
 */
import 'dotenv/config';
import { loadConfig, type Config } from './config.ts';
import { cleanCommand, dataCommand, featuresCommand, modelCommand, scoreCommand, trainCommand } from './cli/pipeline.ts';
import { predictCommand } from './cli/predict.ts';

const USAGE = `usage: catdog <command> [options]

commands:
  predict [--json] [--head FILE] <file|dir>...   probability that each photo shows a dog
  data inspect <source>...                       counts, sizes, unreadable files, a size scatter plot
  clean <source>... [--k 10]                     flag photos with no cat or dog in their ImageNet top-k
  features <source>... [--no-flip | --views V]  compute and cache backbone features (views: 224,224f,288,288f)
  train <source>... [--recipe auto|seed|logreg] [--promote [--force]]   train a head
  score <test source> [--out submission.csv] [--labels CSV] [--json]   Kaggle submission
  model list | use ID | promote ID | rollback    the model registry

A source is a Kaggle zip (train.zip, test.zip) or the same folder unpacked.
`;

type Command = (argv: string[], config: Config) => Promise<number>;

const COMMANDS: Record<string, Command> = {
  predict: predictCommand,
  data: dataCommand,
  clean: cleanCommand,
  features: featuresCommand,
  train: trainCommand,
  score: scoreCommand,
  model: modelCommand,
};

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  const cmd = name ? COMMANDS[name] : undefined;
  if (!cmd) {
    process.stderr.write(USAGE);
    return name === undefined || name === 'help' || name === '--help' ? 0 : 2;
  }
  return cmd(rest, loadConfig());
}

const code = await main(process.argv.slice(2)).catch((err: unknown) => {
  const e = err as NodeJS.ErrnoException;
  if (typeof e?.code === 'string' && e.code.startsWith('ERR_PARSE_ARGS')) {
    process.stderr.write(`catdog: ${e.message.split('. ')[0]}. See \`catdog help\`.\n`);
    return 2;
  }
  process.stderr.write(`catdog: ${e?.stack ?? String(err)}\n`);
  return 1;
});
process.exitCode = code;
