// Three heavyd nodes on one PostgreSQL database (a throw-away cluster)
// behind HAProxy on loopback, as README's "Several nodes" shows it:
// sessions spread over the nodes and stay on theirs; a task created
// through one node is read and awaited through another; kill -9 of the
// node that runs a task, and the client's tasks/result through the
// balancer gets it marked interrupted by a node that took its lease over.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CallToolResultSchema, CreateTaskResultSchema } from '@modelcontextprotocol/sdk/types.js';

import {
	HANG, HEAVYD, IS_VALGRIND, REPO, TEST_TIMEOUT, TOOL, WORKER, apiKey, sanitizerEnv,
	startMock, tmpdir, waitFor,
} from './lib.mjs';
import { startPg } from './pg.mjs';

const run = promisify(execFile);
const psql = async (url, sql) =>
	(await run('psql', ['-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', url, '-c', sql])).stdout.trim();

/* A port free now (HAProxy binds it next). */
function freePort() {
	return new Promise((resolve, reject) => {
		const s = net.createServer();
		s.once('error', reject);
		s.listen(0, '127.0.0.1', () => {
			const { port } = s.address();
			s.close(() => resolve(port));
		});
	});
}

function startNode(t, pg, mock, name) {
	const proc = spawn(HEAVYD, ['--listen', '127.0.0.1:0'], {
		stdio: ['ignore', 'pipe', 'pipe'], cwd: REPO,
		env: {
			PATH: process.env.PATH, OPENROUTER_API_KEY: apiKey(), HEAVY_WORKER: WORKER,
			HEAVY_BASE_URL: mock.baseUrl, HEAVY_STATE_DIR: tmpdir(name), HEAVY_STORE_URL: pg.url,
			HEAVY_NODE_ID: name, HEAVY_STORE_LEASE_TTL_MS: IS_VALGRIND ? '8000' : '2000',
			// Waiters wake on notifications only: a poll on this one host
			// could find the killed node's pid gone and settle its task
			// first, by pid, before any lease expires.
			HEAVY_POLL_INTERVAL_MS: '600000',
			...sanitizerEnv(),
		},
	});
	let stderr = '';
	proc.stderr.setEncoding('utf8');
	proc.stderr.on('data', (d) => { stderr += d; });
	proc.stdout.resume();
	const exited = new Promise((r) => proc.once('close', r));
	t.after(async () => {
		if (proc.exitCode === null && proc.signalCode === null) {
			proc.kill('SIGKILL');
			await exited;
		}
	});
	return waitFor(() => {
		if (proc.exitCode !== null)
			throw new Error(`${name} exited: ${stderr}`);
		const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(stderr);
		return m && { name, proc, port: Number(m[1]), stderr: () => stderr };
	}, HANG, `${name} to listen`);
}

async function startHaproxy(t, nodes) {
	const dir = tmpdir('haproxy');
	const port = await freePort();
	const cfg = path.join(dir, 'haproxy.cfg');
	fs.writeFileSync(cfg, [
		'global', '    maxconn 256',
		'defaults', '    mode http', '    timeout connect 5s', '    timeout client 120s',
		'    timeout server 120s',
		'frontend mcp', `    bind 127.0.0.1:${port}`, '    default_backend heavyd',
		// roundrobin rather than leastconn: new sessions go to each node in turn.
		'backend heavyd', '    balance roundrobin', '    option httpchk GET /readyz',
		'    http-check expect status 200',
		'    stick-table type string len 64 size 10k expire 30m',
		'    stick on req.hdr(mcp-session-id)',
		'    stick store-response res.hdr(mcp-session-id)',
		...nodes.map((n) => `    server ${n.name} 127.0.0.1:${n.port} check inter 200ms fall 2 rise 1`),
		'',
	].join('\n'));
	const proc = spawn('haproxy', ['-db', '-f', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
	let out = '';
	proc.stdout.on('data', (d) => { out += d; });
	proc.stderr.on('data', (d) => { out += d; });
	const exited = new Promise((r) => proc.once('close', r));
	t.after(async () => {
		proc.kill('SIGKILL');
		await exited;
		fs.rmSync(dir, { recursive: true, force: true });
	});
	const base = `http://127.0.0.1:${port}`;
	await waitFor(async () => {
		if (proc.exitCode !== null)
			throw new Error(`haproxy exited: ${out}`);
		try {
			return (await fetch(`${base}/readyz`)).status === 200;
		} catch {
			return false;
		}
	}, HANG, 'haproxy to serve');
	return { url: `${base}/mcp`, out: () => out };
}

async function session(url) {
	const client = new Client({ name: 'multinode-test', version: '1.0.0' }, { capabilities: {} });
	await client.connect(new StreamableHTTPClientTransport(new URL(url)), { timeout: HANG });
	return client;
}

const startTask = async (client, query) => (await client.request({ method: 'tools/call',
    params: { name: TOOL, arguments: { query, num_agents: 1, timeout: 60 } } },
    CreateTaskResultSchema, { task: { ttl: 600000 }, timeout: HANG })).task.taskId;

test('three nodes behind HAProxy: a task read and awaited through another node; kill -9 of its node and the balancer still answers',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const pg = await startPg(t);
	const mock = await startMock();
	t.after(() => mock.stop());
	const nodes = [];
	for (const name of ['node-1', 'node-2', 'node-3'])
		nodes.push(await startNode(t, pg, mock, name));
	const lb = await startHaproxy(t, nodes);
	const nodeOf = async (id) => psql(pg.url, `SELECT node_id FROM tasks WHERE id = '${id}'`);

	// Sessions until two run on different nodes (each its own, by its id).
	const clients = [], on = [];
	t.after(() => Promise.all(clients.map((c) => c.close().catch(() => {}))));
	for (let i = 0; i < 6 && new Set(on).size < 2; i++) {
		const c = await session(lb.url);
		clients.push(c);
		on.push(await nodeOf(await startTask(c, `Where am I ${i}`)));
		// The session's next task runs on the same node.
		assert.equal(await nodeOf(await startTask(c, `Still here ${i}`)), on.at(-1));
	}
	const j = on.findIndex((n) => n !== on[0]);
	assert.ok(j > 0, `sessions on ${on}`);
	const [c1, c2] = [clients[0], clients[j]];

	// Created through node on[0], read and awaited through node on[j].
	const held = await startTask(c1, 'Held [[agent:gate]]');
	assert.equal(await nodeOf(held), on[0]);
	assert.equal((await c2.experimental.tasks.getTask(held)).status, 'working');
	const waiting = c2.experimental.tasks.getTaskResult(held, CallToolResultSchema, { timeout: HANG });
	await mock.open();
	const r = await waiting;
	assert.notEqual(r.isError, true, JSON.stringify(r.content));

	// kill -9 of the node that runs a task: another takes its lease over,
	// and the client on another node hears it through the balancer.
	const doomed = await startTask(c1, 'Doomed [[agent:hang]]');
	const victim = nodes.find((n) => n.name === on[0]);
	const seen = c2.experimental.tasks.getTaskResult(doomed, CallToolResultSchema, { timeout: HANG });
	assert.equal((await c2.experimental.tasks.getTask(doomed)).status, 'working');
	victim.proc.kill('SIGKILL');
	const r2 = await seen;
	assert.equal(r2.isError, true);
	assert.match(r2.content[0].text, /interrupted: its node stopped renewing its lease/);
	assert.notEqual(await nodeOf(doomed), on[0], 'the node that took it over');
	// The balancer takes the dead node out: new sessions are served.
	const c3 = await session(lb.url);
	clients.push(c3);
	assert.notEqual(await nodeOf(await startTask(c3, 'After the kill')), on[0]);
});
