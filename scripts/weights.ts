/**
 * `npm run weights [-- --only inception_v3,xception] [--all] [--from <file-or-folder>] [--dir <folder>] [--base-url <url>]`
 *
 * Downloads Keras's official ImageNet no-top weights (InceptionV3 and Xception by default, ResNet50
 * with --all or --only) into models/weights/, checking each file's md5 before it takes its final
 * name; or verifies and copies files you already have (--from, or plain path arguments).
 * `--help` lists the options. Ctrl-C stops cleanly, leaving no partial file behind.
 */
import { weightsCommand } from '../src/model/weights/download.ts';

const ac = new AbortController();
process.once('SIGINT', () => ac.abort());
process.once('SIGTERM', () => ac.abort());

process.exitCode = await weightsCommand(process.argv.slice(2), { signal: ac.signal });
