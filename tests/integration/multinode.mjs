// Several heavyd nodes on one PostgreSQL database (tests/integration/pg.mjs)
// behind HAProxy on loopback, as README's "Several nodes" shows it: what
// multinode.test.mjs and multinode-faults.test.mjs share.  Each node
// listens on a port of its own, kept across a kill and a restart, so that
// HAProxy's configuration names it for good.
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CallToolResultSchema, CreateTaskResultSchema } from '@modelcontextprotocol/sdk/types.js';

import {
	HANG, HEAVYD, IS_VALGRIND, REPO, TOOL, WORKER, apiKey, sanitizerEnv, tmpdir, waitFor,
} from './lib.mjs';

// For tests/bench/cluster.mjs, which cannot reach this directory's SDK.
export { CallToolResultSchema };

const run = promisify(execFile);
export const psql = async (url, sql) =>
	(await run('psql', ['-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', url, '-c', sql])).stdout.trim();

/* A port free now (a node or HAProxy binds it next). */
export function freePort() {
	return new Promise((resolve, reject) => {
		const s = net.createServer();
		s.once('error', reject);
		s.listen(0, '127.0.0.1', () => {
			const { port } = s.address();
			s.close(() => resolve(port));
		});
	});
}

/* The session key every node of a test shares (http.session_key_file). */
export function sessionKey(t) {
	const dir = tmpdir('key');
	const file = path.join(dir, 'session_key');
	fs.writeFileSync(file, `${'a1b2c3d4'.repeat(8)}\n`, { mode: 0o600 });
	t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
	return file;
}

/*
 * Node name on the database pg (null: SQLite in its state directory), its
 * LLM the mock: { name, port, url, proc, stderr(), start(), kill(),
 * readyz() }.  start() (again after kill()) waits until it listens.
 * opts: leaseMs, keyFile, env.  t: a test context, or anything with
 * after(fn).
 */
export async function startNode(t, pg, mock, name, opts = {}) {
	const port = await freePort();
	const state = tmpdir(name);
	let log = '', exited = null;
	const node = {
		name, port, proc: null, stderr: () => log,
		async start() {
			const proc = spawn(opts.heavyd ?? HEAVYD, ['--listen', `127.0.0.1:${port}`], {
				stdio: ['ignore', 'pipe', 'pipe'], cwd: REPO,
				env: {
					PATH: process.env.PATH, OPENROUTER_API_KEY: apiKey(), HEAVY_WORKER: WORKER,
					HEAVY_BASE_URL: mock.baseUrl, HEAVY_STATE_DIR: state,
					...(pg ? { HEAVY_STORE_URL: pg.url } : {}),
					HEAVY_NODE_ID: name,
					HEAVY_STORE_LEASE_TTL_MS: String(opts.leaseMs ?? (IS_VALGRIND ? 8000 : 2000)),
					// Waiters wake on notifications only: a poll on this one host
					// could find the killed node's pid gone and settle its task
					// first, by pid, before any lease expires.
					HEAVY_POLL_INTERVAL_MS: '600000',
					...(opts.keyFile ? { HEAVY_HTTP_SESSION_KEY_FILE: opts.keyFile } : {}),
					...sanitizerEnv(), ...(opts.env ?? {}),
				},
			});
			const from = log.length;
			node.proc = proc;
			proc.stderr.setEncoding('utf8');
			proc.stderr.on('data', (d) => { log += d; });
			proc.stdout.resume();
			exited = new Promise((r) => proc.once('close', r));
			await waitFor(() => {
				if (proc.exitCode !== null)
					throw new Error(`${name} exited: ${log.slice(from)}`);
				return log.slice(from).includes(`listening on http://127.0.0.1:${port}`);
			}, HANG, `${name} to listen`);
			return node;
		},
		async kill() {
			const p = node.proc;
			if (p !== null && p.exitCode === null && p.signalCode === null) {
				p.kill('SIGKILL');
				await exited;
			}
		},
		async readyz() {
			try {
				return (await fetch(`http://127.0.0.1:${port}/readyz`)).status;
			} catch {
				return 0;
			}
		},
		url: `http://127.0.0.1:${port}/mcp`,
	};
	t.after(() => node.kill());
	return node.start();
}

/*
 * HAProxy in front of nodes, as README's: health checks on /readyz
 * choose the node of a new session; a session's requests stay on its
 * node (stickiness on Mcp-Session-Id) even while /readyz says 503 there
 * (option persist: the node serves what it holds while its database is
 * away); only when its node cannot be reached does a request go to
 * another (option redispatch), which answers that the session is foreign.
 */
export async function startHaproxy(t, nodes) {
	const dir = tmpdir('haproxy');
	const port = await freePort();
	const cfg = path.join(dir, 'haproxy.cfg');
	fs.writeFileSync(cfg, [
		'global', '    maxconn 256',
		'defaults', '    mode http', '    timeout connect 5s', '    timeout client 120s',
		'    timeout server 120s', '    retries 3', '    option persist', '    option redispatch',
		'    retry-on conn-failure empty-response',
		// A node under valgrind on a loaded machine may take longer than
		// inter (the check's whole timeout by default) to answer /readyz;
		// a killed one still fails its check at once (connection refused).
		'    timeout check 10s',
		'frontend mcp', `    bind 127.0.0.1:${port}`, '    default_backend heavyd',
		// roundrobin rather than leastconn: new sessions go to each node in turn.
		'backend heavyd', '    balance roundrobin', '    option httpchk GET /readyz',
		'    http-check expect status 200',
		'    stick-table type string len 160 size 10k expire 30m',
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

/* An MCP session at url; client.sid() is its Mcp-Session-Id. */
export async function session(url) {
	const client = new Client({ name: 'multinode-test', version: '1.0.0' }, { capabilities: {} });
	const transport = new StreamableHTTPClientTransport(new URL(url));
	await client.connect(transport, { timeout: HANG });
	client.sid = () => transport.sessionId;
	return client;
}

export const startTask = async (client, query, agents = 1, more = {}) => (await client.request({ method: 'tools/call',
    params: { name: TOOL, arguments: { query, num_agents: agents, timeout: 60, ...more } } },
    CreateTaskResultSchema, { task: { ttl: 600000 }, timeout: HANG })).task.taskId;
