/** `npm run start:<role>`: `tsx src/scale/start.ts <role>` (or CATDOG_ROLE). Reads .env like npm start. */
import { runEntry } from './roles.ts';

await runEntry(process.argv[2]);
