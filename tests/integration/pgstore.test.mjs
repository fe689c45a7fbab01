// heavyd on a PostgreSQL task store that goes away mid-run (its own
// throw-away cluster, tests/integration/pg.mjs): /readyz says 503 and the
// metrics say why while the server is away, new work is refused with the
// store's reason once the queue of writes is full, and once the server is
// back every task a client was given is there with its end.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { test } from 'node:test';
import { promisify } from 'node:util';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CallToolResultSchema, CreateTaskResultSchema } from '@modelcontextprotocol/sdk/types.js';

import {
	GRACE, HANG, HEAVYD, IS_ASAN, REPO, TEST_TIMEOUT, TOOL, WORKER, apiKey,
	assertNoSanitizerReport, expire, sanitizerEnv, sleep, startMock, tmpdir, waitFor,
} from './lib.mjs';
import { startPg } from './pg.mjs';

const run = promisify(execFile);
const psql = async (url, sql) =>
	(await run('psql', ['-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', url, '-c', sql])).stdout.trim();
const QUEUE_FULL = /the task store cannot write: the task store's queue is full/;

/* heavyd --listen 127.0.0.1:0 on the store at url; killed after the test. */
async function startHttp(t, mock, env) {
	const proc = spawn(HEAVYD, ['--listen', '127.0.0.1:0'], {
		stdio: ['ignore', 'pipe', 'pipe'], cwd: REPO,
		env: {
			PATH: process.env.PATH, OPENROUTER_API_KEY: apiKey(), HEAVY_WORKER: WORKER,
			HEAVY_BASE_URL: mock.baseUrl, HEAVY_STATE_DIR: tmpdir('state'),
			...sanitizerEnv(), ...env,
		},
	});
	let stderr = '';
	proc.stderr.setEncoding('utf8');
	proc.stderr.on('data', (d) => { stderr += d; });
	proc.stdout.resume();
	const exited = new Promise((r) => proc.once('close', (code, signal) => r({ code, signal })));
	let exit = null;
	exited.then((e) => { exit = e; });
	t.after(async () => {
		if (exit === null) {
			proc.kill('SIGKILL');
			await exited;
		}
	});
	const m = await waitFor(() => {
		if (exit)
			throw new Error(`heavyd exited: ${JSON.stringify(exit)}\n${stderr}`);
		return /listening on (http:\/\/\S+)/.exec(stderr);
	}, HANG, 'heavyd to listen');
	const base = m[1].replace(/\/mcp$/, '');
	return {
		url: m[1], proc, exited, stderr: () => stderr,
		readyz: async () => (await fetch(`${base}/readyz`)).status,
		async metric(name) {
			const text = await (await fetch(`${base}/metrics`)).text();
			const line = text.split('\n').find((l) => l.startsWith(`${name} `));
			return line === undefined ? undefined : Number(line.split(' ')[1]);
		},
	};
}

async function connect(srv) {
	const client = new Client({ name: 'pgstore-test', version: '1.0.0' }, { capabilities: {} });
	await client.connect(new StreamableHTTPClientTransport(new URL(srv.url)), { timeout: HANG });
	return client;
}

/* A task-augmented call: its id once heavyd gave it, or the error that
 * refused it. */
async function startTask(client, query) {
	try {
		const r = await client.request({ method: 'tools/call',
		    params: { name: TOOL, arguments: { query, num_agents: 1 } } },
		    CreateTaskResultSchema, { task: { ttl: 600000 }, timeout: HANG });
		return { id: r.task.taskId };
	} catch (e) {
		return { refused: e };
	}
}

test('the database goes away: /readyz 503, new work refused once the queue is full, nothing acknowledged lost',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const pg = await startPg(t);
	const mock = await startMock();
	t.after(() => mock.stop());
	const srv = await startHttp(t, mock, {
		HEAVY_STORE_URL: pg.url, HEAVY_STORE_MAX_QUEUE: '6', HEAVY_STORE_RETRY_MAX_MS: '200',
		HEAVY_STORE_SWEEP: '1',
	});
	await waitFor(async () => await srv.readyz() === 200, HANG, '/readyz 200');
	assert.equal(await srv.metric('heavyd_store_connected'), 1);
	const client = await connect(srv);
	t.after(() => client.close().catch(() => {}));

	// A task is given out (its row written), then held at the mock's gate.
	const held = await startTask(client, 'Held across the outage [[gate]]');
	assert.ok(held.id, JSON.stringify(held.refused));
	assert.equal(await psql(pg.url, `SELECT status FROM tasks WHERE id = '${held.id}'`), 'working');

	await pg.stop();
	await waitFor(async () => await srv.readyz() === 503, HANG, '/readyz 503 with the database away');
	assert.equal(await srv.metric('heavyd_store_connected'), 0);
	await waitFor(() => /task store: not ready: PostgreSQL is/.test(srv.stderr()), HANG, 'the log line');

	// It ends meanwhile; its end waits in the queue (or in memory).
	await mock.open();
	// New work: its first write waits in the queue until the queue is
	// full; then a call is refused at once with the store's reason.
	const calls = [];
	let refused;
	for (let i = 0; i < 40 && !refused; i++) {
		const p = startTask(client, `During the outage ${i}`);
		calls.push(p);
		refused = await Promise.race([p.then((r) => r.refused), sleep(GRACE)]);
	}
	assert.ok(refused, 'a call was refused once the queue was full');
	assert.match(refused.message, QUEUE_FULL);
	assert.equal(await srv.readyz(), 503);

	await pg.start();
	await waitFor(async () => await srv.readyz() === 200, HANG, '/readyz 200 again');
	await waitFor(() => /task store: ready again/.test(srv.stderr()), HANG, 'the log line');
	const outcomes = await Promise.all(calls);
	const given = [held.id, ...outcomes.filter((o) => o.id).map((o) => o.id)];
	for (const o of outcomes.filter((x) => x.refused))
		assert.match(o.refused.message, QUEUE_FULL);
	// Every task a client was given ends, and its end is in the database.
	for (const id of given) {
		const r = await client.experimental.tasks.getTaskResult(id, CallToolResultSchema, { timeout: HANG });
		assert.notEqual(r.isError, true, `task ${id}: ${JSON.stringify(r.content)}`);
	}
	await waitFor(async () => {
		const rows = await psql(pg.url, `SELECT count(*) FROM tasks WHERE status = 'completed' ` +
		    `AND result IS NOT NULL AND id IN (${given.map((id) => `'${id}'`).join(',')})`);
		return Number(rows) === given.length;
	}, HANG, `the ${given.length} ends in the database`);
	await waitFor(async () => await srv.metric('heavyd_store_queued') === 0, HANG, 'the queue emptied');

	await client.close();
	srv.proc.kill('SIGTERM');
	const ex = await Promise.race([srv.exited, expire(HANG)]);
	assert.deepEqual(ex, { code: 0, signal: null }, srv.stderr());
	if (IS_ASAN)
		assertNoSanitizerReport(srv.stderr(), 'heavyd');
});
