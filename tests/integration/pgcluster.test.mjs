// The throw-away PostgreSQL cluster the store's tests stand on
// (tests/integration/pg.mjs, scripts/pg-cluster): it serves on loopback,
// goes down and comes back on its port with its data, and leaves nothing.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import test from 'node:test';
import { promisify } from 'node:util';

import { TEST_TIMEOUT, readStat } from './lib.mjs';
import { startPg } from './pg.mjs';

const run = promisify(execFile);
const psql = (url, sql) => run('psql', ['-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', url, '-c', sql]);

test('a cluster serves, restarts with its data, and is removed', { timeout: TEST_TIMEOUT }, async (t) => {
	const pg = await startPg(t);
	assert.match(pg.url, /^postgresql:\/\/heavyd@127\.0\.0\.1:\d+\/heavyd$/);
	await psql(pg.url, 'CREATE TABLE kept (n int); INSERT INTO kept VALUES (42)');

	await pg.stop();
	await assert.rejects(psql(pg.url, 'SELECT 1'), /Connection refused|could not connect/);
	await pg.start();
	assert.equal((await psql(pg.url, 'SELECT n FROM kept')).stdout.trim(), '42');

	const pid = Number(fs.readFileSync(`${pg.dir}/data/postmaster.pid`, 'utf8').split('\n')[0]);
	await pg.destroy();
	assert.equal(fs.existsSync(pg.dir), false, 'the folder is gone');
	// Gone, or a zombie its new parent (init) has yet to reap.
	const st = readStat(pid);
	assert.ok(st === null || st.state === 'Z', `the server is gone (${st?.state})`);
});
