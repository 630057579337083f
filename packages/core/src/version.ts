import { readFileSync } from 'node:fs';

/** This package's version, as $SYS/broker/version and starling_build_info report it. */
export const STARLING_VERSION: string = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
