#!/usr/bin/env node
// Manages Starling's password file.
//   node packages/core/src/bin/starling-passwd.ts add <file> <user> [--password PW] [--cost N]
//   node packages/core/src/bin/starling-passwd.ts delete <file> <user>
// Without --password the password is read from standard input (first line), so it stays out of the
// shell history and the process list. A running broker picks the change up (file watch, or SIGHUP).
import { DEFAULT_PARAMS, hashPassword, PasswordFileError, removeUser, upsertUser, validUsername } from '../auth/password-file.ts';

function usage(): never {
  process.stderr.write(
    'usage: starling-passwd add <file> <user> [--password PW] [--cost N]\n' +
      '       starling-passwd delete <file> <user>\n' +
      '  --cost N   scrypt N (a power of two; default 16384)\n',
  );
  process.exit(2);
}

async function readStdinLine(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) {
    chunks.push(chunk as Buffer);
    if (Buffer.concat(chunks).includes(0x0a)) break;
  }
  return Buffer.concat(chunks).toString('utf8').split(/\r?\n/)[0] ?? '';
}

async function main(argv: string[]): Promise<void> {
  const positional: string[] = [];
  let password: string | undefined;
  let cost: number = DEFAULT_PARAMS.N;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') continue;
    if (a === '--password') password = argv[++i] ?? usage();
    else if (a.startsWith('--password=')) password = a.slice(11);
    else if (a === '--cost') cost = Number(argv[++i] ?? usage());
    else if (a.startsWith('--cost=')) cost = Number(a.slice(7));
    else if (a.startsWith('--')) usage();
    else positional.push(a);
  }
  const [command, file, user] = positional;
  if (!command || !file || !user || positional.length > 3) usage();
  if (!validUsername(user)) throw new PasswordFileError(`invalid username ${JSON.stringify(user)} (no ':' or line breaks)`);
  if (command === 'add') {
    if (!Number.isInteger(cost) || cost < 2 || (cost & (cost - 1)) !== 0 || cost > 2 ** 22) throw new PasswordFileError('--cost must be a power of two up to 4194304');
    if (password === undefined) {
      if (process.stdin.isTTY) process.stderr.write('password: ');
      password = await readStdinLine();
    }
    if (password === '') throw new PasswordFileError('empty password refused');
    const hash = await hashPassword(password, { N: cost, r: DEFAULT_PARAMS.r, p: DEFAULT_PARAMS.p });
    const outcome = await upsertUser(file, user, hash);
    process.stdout.write(`${outcome} ${user} in ${file}\n`);
  } else if (command === 'delete') {
    const removed = await removeUser(file, user);
    process.stdout.write(removed ? `deleted ${user} from ${file}\n` : `${user} not in ${file}\n`);
    if (!removed) process.exitCode = 1;
  } else usage();
}

main(process.argv.slice(2)).catch((err: Error) => {
  process.stderr.write(`starling-passwd: ${err.message}\n`);
  process.exit(1);
});
