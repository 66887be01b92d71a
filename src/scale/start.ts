/** `npm run start:<role>`: `tsx src/scale/start.ts <role>` (or CATDOG_ROLE). Reads .env like npm start. */
import { ConfigError } from '../errors.ts';
import { runRole } from './roles.ts';

const dotenv = await import('dotenv');
dotenv.config({ quiet: true });
try {
  await runRole(process.argv[2]);
} catch (err) {
  if (err instanceof ConfigError) {
    process.stderr.write(`${err.message}\nSee .env.example for what each variable means.\n`);
    process.exit(2);
  }
  process.stderr.write(`catdog could not start: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
}
