// A throw-away PostgreSQL cluster for an integration test, by
// scripts/pg-cluster: in a folder of the test file's own directory
// (tmpdir()), on 127.0.0.1, removed after the test.  If the test process
// dies first, the script's guard (PG_OWNER_PID) stops the server.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';

import { HANG, REPO, tmpdir } from './lib.mjs';

export const PG_CLUSTER = path.join(REPO, 'scripts', 'pg-cluster');
const run = promisify(execFile);

async function cluster(verb, dir) {
	// The script bounds its own waits (PG_HANG); this only catches a hang.
	const { stdout } = await run(PG_CLUSTER, [verb, dir], {
		env: { ...process.env, PG_OWNER_PID: String(process.pid) },
		timeout: 2 * HANG,
	});
	return stdout.trim();
}

/*
 * A fresh cluster with the database "heavyd", accepting connections:
 * { dir, url, port, stop(), start(), destroy() }.  stop() and start()
 * take the server down and up on the same port, its data kept; with a
 * test context t, destroy() runs after the test.
 */
export async function startPg(t, tag = 'pg') {
	const dir = tmpdir(tag);
	const url = await cluster('init', dir);
	let gone = false;
	const pg = {
		dir,
		url,
		port: Number(new URL(url).port),
		stop: () => cluster('stop', dir),
		start: () => cluster('start', dir),
		async destroy() {
			if (gone)
				return;
			gone = true;
			await cluster('destroy', dir);
			fs.rmSync(dir, { recursive: true, force: true });
		},
	};
	t?.after(() => pg.destroy());
	return pg;
}
