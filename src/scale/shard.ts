/** One gateway shard process, started by the ShardingManager of src/scale/roles.ts (discord.js passes SHARDS and SHARD_COUNT). */
import { loadConfig, processEnv } from '../config.ts';
import { startGateway } from './doors.ts';

const env = processEnv();
const config = loadConfig({ ...env, CATDOG_ROLE: 'gateway' });
// discord.js's ShardingManager tells each shard process its ids in SHARDS.
const shardIds = env.SHARDS ?? '?';
const log = (l: string) => process.stdout.write(`${new Date().toISOString()} [gateway shard ${shardIds}] ${l}\n`);
try {
  const running = await startGateway(config, log);
  log('catdog gateway shard is ready');
  process.once('SIGTERM', () => {
    log('SIGTERM: finishing what is in flight');
    void running.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  });
} catch (err) {
  log(`could not start: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  process.exit(1);
}
