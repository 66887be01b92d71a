/**
 * The `catdog` command. Each subcommand lives in src/cli/ and returns an exit code.
 */
import 'dotenv/config';
import { predictCommand } from './cli/predict.ts';

const USAGE = `usage: catdog <command> [options]

commands:
  predict [--json] [--head FILE] <file|dir>...   probability that each photo shows a dog
`;

type Command = (argv: string[]) => Promise<number>;

const COMMANDS: Record<string, Command> = {
  predict: predictCommand,
};

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  const cmd = name ? COMMANDS[name] : undefined;
  if (!cmd) {
    process.stderr.write(USAGE);
    return name === undefined || name === 'help' || name === '--help' ? 0 : 2;
  }
  return cmd(rest);
}

const code = await main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`catdog: ${(err as Error)?.stack ?? String(err)}\n`);
  return 1;
});
process.exitCode = code;
