// Helpers for heavyd's integration tests: the mock LLM, an MCP client
// connected to a fresh server, a raw JSON-RPC line client, /proc process
// trees, and polling.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { CallToolResultSchema } from '@modelcontextprotocol/sdk/types.js';

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(here, '..', '..');
export const BUILD = path.resolve(REPO, process.env.HEAVYD_BUILD || 'build');
export const HEAVYD = path.join(BUILD, 'heavyd');
export const WORKER = path.join(BUILD, 'heavyd-worker');
export const TEST_WORKER = path.join(BUILD, 'test', 'heavyd-worker');
export const MOCKLLM = path.join(BUILD, 'mockllm');
export const IS_ASAN = BUILD.includes('asan');
/*
 * heavyd runs under valgrind (scripts/valgrind-integration sets
 * HEAVYD_VALGRIND=1; its heavyd is a shell script that execs valgrind).
 */
export const IS_VALGRIND = process.env.HEAVYD_VALGRIND === '1' || (() => {
	try {
		return /^#!.*\n[\s\S]*\bvalgrind\b/.test(fs.readFileSync(HEAVYD, 'latin1').slice(0, 4096));
	} catch {
		return false;
	}
})();
/* The heavyd binary itself (under valgrind, the one the wrapper runs). */
export const REAL_HEAVYD = (IS_VALGRIND && (() => {
	try {
		return /"([^"]*\/heavyd)"/.exec(fs.readFileSync(HEAVYD, 'latin1'))?.[1];
	} catch {
		return undefined;
	}
})()) || HEAVYD;
export const TOOL = 'heavy_orchestrate';

/*
 * No test depends on how fast the machine is: it waits for the event
 * itself.  HANG bounds a wait only to catch a hang (a call, a poll, a
 * process that should exit); TEST_TIMEOUT, larger, bounds a whole test.
 * Both are far above what any test needs under valgrind or ASan on a loaded
 * machine, so they only ever fire on a real hang.
 */
export const HANG = 60000;
export const TEST_TIMEOUT = 300000;
/*
 * "At once" (workers gone after a cancel, a kill, a budget): sooner than
 * the deadline that would otherwise end them (45 s for a 60 s task), with
 * room for any slow machine.
 */
export const SOON = 20000;
/*
 * A check that something does NOT happen waits this long (a grace period:
 * on a slow machine it proves less, but never fails wrongly).
 */
export const GRACE = 300;

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
/* Resolves to null after ms, for Promise.race; does not hold the process up. */
export const expire = (ms) => new Promise((r) => setTimeout(r, ms, null).unref());

/* The JSON-RPC error a request ends with; fails the test if it succeeds. */
export async function rpcError(p) {
	try {
		await p;
	} catch (e) {
		return e;
	}
	assert.fail('expected a JSON-RPC error');
}

/*
 * Polls fn until it returns a truthy value; returns it, or throws after ms
 * (default HANG: pass a shorter ms only where a later event would prove
 * the test wrong, never as a guess of how fast the machine is).
 */
export async function waitFor(fn, ms = HANG, what = 'condition', every = 25) {
	const end = Date.now() + ms;
	let last;
	for (;;) {
		last = await fn();
		if (last)
			return last;
		if (Date.now() >= end)
			throw new Error(`timed out after ${ms} ms waiting for ${what}`);
		await sleep(every);
	}
}

/*
 * Everything a test file writes is under one directory of its own, removed
 * when the process exits, whatever the tests' outcome: folders from
 * tmpdir(), the state directory, the mock's port files, and HOME and
 * XDG_* of every process it starts (nothing reaches the user's home).
 */
const RUN_DIR = fs.mkdtempSync(path.join(os.tmpdir(), `heavyd-it-${process.pid}-`));
// Others may pass (not list): one test runs a heavyd as another user.
fs.chmodSync(RUN_DIR, 0o711);
// (Removed after the children are killed: see track() below.)
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'])
	process.once(sig, () => process.exit(128 + os.constants.signals[sig]));
process.env.HOME = path.join(RUN_DIR, 'home');
process.env.XDG_CONFIG_HOME = path.join(RUN_DIR, 'home', '.config');
process.env.XDG_STATE_HOME = path.join(RUN_DIR, 'home', '.local', 'state');
process.env.XDG_CACHE_HOME = path.join(RUN_DIR, 'home', '.cache');
process.env.XDG_DATA_HOME = path.join(RUN_DIR, 'home', '.local', 'share');
delete process.env.XDG_RUNTIME_DIR;
fs.mkdirSync(process.env.HOME, { mode: 0o700 });

export function tmpdir(tag) {
	return fs.mkdtempSync(path.join(RUN_DIR, `${tag}-`));
}

/*
 * A tmpfs of `size` (mount's size=) at a fresh folder, unmounted after the
 * test: { dir }, or { why } when it cannot be mounted (it needs root).
 */
export function mountTmpfs(t, tag, size) {
	const dir = tmpdir(tag);
	try {
		execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0711`, 'tmpfs', dir],
		    { stdio: 'pipe' });
	} catch (e) {
		fs.rmSync(dir, { recursive: true, force: true });
		return { why: `cannot mount a tmpfs (it needs root): ${String(e.stderr || e.message).trim()}` };
	}
	t.after(() => {
		try { execFileSync('umount', ['-l', dir], { stdio: 'pipe' }); } catch { /* gone */ }
		fs.rmSync(dir, { recursive: true, force: true });
	});
	return { dir };
}

/* Servers keep their task workspaces here, not in the user's ~/.local/state. */
export const STATE_DIR = tmpdir('state');

/*
 * With HEAVY_TEST_PG_ADMIN (a PostgreSQL URL: scripts/pg-integration sets
 * it), every heavyd a test starts keeps its tasks in PostgreSQL, on a fresh
 * database per state directory: the servers of one state directory share
 * their tasks, as they do in its SQLite file, and nothing else does.  The
 * databases go with the cluster.
 */
export const PG_ADMIN = process.env.HEAVY_TEST_PG_ADMIN || null;
const pgDatabases = new Map();	// state directory -> store URL

/* { HEAVY_STORE_URL } for a server with this environment, or {}. */
export function storeEnv(env = {}) {
	if (!PG_ADMIN || env.HEAVY_STORE_URL !== undefined)
		return {};
	const dir = env.HEAVY_STATE_DIR ?? STATE_DIR;
	if (!pgDatabases.has(dir)) {
		const name = `it_${process.pid}_${pgDatabases.size}`;
		execFileSync('psql', ['-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', PG_ADMIN,
		    '-c', `CREATE DATABASE ${name}`], { stdio: 'pipe' });
		const url = new URL(PG_ADMIN);
		url.pathname = `/${name}`;
		pgDatabases.set(dir, url.href);
	}
	return { HEAVY_STORE_URL: pgDatabases.get(dir) };
}

/* Environment for the sanitizers, when the binaries are an ASan build. */
export function sanitizerEnv(extra = '') {
	if (!IS_ASAN)
		return {};
	return {
		ASAN_OPTIONS: 'detect_leaks=1:abort_on_error=0' + extra,
		UBSAN_OPTIONS: 'print_stacktrace=1',
	};
}

export function assertNoSanitizerReport(text, who) {
	assert.doesNotMatch(text, /Sanitizer/, `${who} stderr has a sanitizer report:\n${text}`);
}

/* ---------------------------------------------------------------- /proc */

/* One /proc/PID/stat, parsed; null when the process is gone. */
export function readStat(pid) {
	let s;
	try {
		s = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
	} catch {
		return null;
	}
	const open = s.indexOf('('), close = s.lastIndexOf(')');
	const rest = s.slice(close + 2).split(' ');
	// rest[0] is field 3 (state); field 4 is ppid, field 22 starttime.
	return {
		pid: Number(pid),
		comm: s.slice(open + 1, close),
		state: rest[0],
		ppid: Number(rest[1]),
		pgrp: Number(rest[2]),
		starttime: rest[19],
	};
}

export function allProcs() {
	const out = [];
	for (const name of fs.readdirSync('/proc')) {
		if (!/^\d+$/.test(name))
			continue;
		const st = readStat(name);
		if (st)
			out.push(st);
	}
	return out;
}

/* Every descendant of root (not root itself), by the ppid fields. */
export function descendants(root) {
	const byParent = new Map();
	for (const p of allProcs()) {
		if (!byParent.has(p.ppid))
			byParent.set(p.ppid, []);
		byParent.get(p.ppid).push(p);
	}
	const out = [];
	const todo = [Number(root)];
	while (todo.length) {
		for (const c of byParent.get(todo.pop()) || []) {
			out.push(c);
			todo.push(c.pid);
		}
	}
	return out;
}

export const workersOf = (root) =>
	descendants(root).filter((p) => p.comm === 'heavyd-worker');

/*
 * Those of the given processes (same pid and start time) still present.
 * A zombie counts as gone: it is dead, and reaping an orphan is init's job.
 */
export function stillAlive(procs) {
	return procs.filter((p) => {
		const now = readStat(p.pid);
		return now && now.starttime === p.starttime && now.state !== 'Z';
	});
}

/* Children this process started: killed if it exits before cleaning up. */
const children = new Set();
function track(proc) {
	children.add(proc);
	proc.once('exit', () => children.delete(proc));
}
process.on('exit', () => {
	for (const c of children) {
		try { c.kill('SIGKILL'); } catch { /* gone */ }
	}
	fs.rmSync(RUN_DIR, { recursive: true, force: true });
});

/*
 * Those of the given workers (from workers()) still running a job: a spare
 * of the zygote is named heavyd-worker for an instant after its fork, and
 * one renamed since ran no job (it stays, for the next one).
 */
export function jobsAlive(procs) {
	return stillAlive(procs).filter((p) => readStat(p.pid)?.comm === 'heavyd-worker');
}

export function describe(procs) {
	return procs.map((p) => `${p.pid}(${p.comm},${p.state},ppid ${p.ppid})`).join(' ');
}

function killAll(procs) {
	for (const p of stillAlive(procs)) {
		try {
			process.kill(p.pid, 'SIGKILL');
		} catch { /* gone */ }
	}
}

/* ------------------------------------------------------------- the mock */

export async function startMock(tag = 'mock', args = []) {
	const dir = tmpdir(tag);
	const portFile = path.join(dir, 'port');
	const proc = spawn(MOCKLLM, ['-p', '0', '-f', portFile, ...args], {
		stdio: ['ignore', 'pipe', 'pipe'],
		env: { PATH: process.env.PATH, ...sanitizerEnv() },
	});
	track(proc);
	let stderr = '';
	proc.stdout.on('data', () => {});
	proc.stderr.setEncoding('utf8');
	proc.stderr.on('data', (d) => { stderr += d; });
	const exited = new Promise((r) => proc.once('exit', (code, signal) => r({ code, signal })));
	let exit = null;
	exited.then((e) => { exit = e; });
	let spawnError = null;
	proc.once('error', (e) => { spawnError = e; });

	let port;
	try {
		port = await waitFor(() => {
			if (spawnError)
				throw new Error(`cannot run ${MOCKLLM}: ${spawnError.message}`);
			if (exit)
				throw new Error(`mockllm exited early (${JSON.stringify(exit)}): ${stderr}`);
			try {
				const s = fs.readFileSync(portFile, 'utf8');
				return /^\d+\n$/.test(s) ? Number(s) : null;
			} catch {
				return null;
			}
		}, HANG, 'the mock port file');
	} catch (e) {
		proc.kill('SIGKILL');
		fs.rmSync(dir, { recursive: true, force: true });
		throw e;
	}
	const base = `http://127.0.0.1:${port}`;
	return {
		port,
		proc,
		baseUrl: `${base}/v1`,
		stderr: () => stderr,
		async stats() {
			const r = await fetch(`${base}/stats`);
			assert.equal(r.status, 200, 'GET /stats');
			return r.json();
		},
		/* Lets the replies held by [[gate]] go (and later ones through). */
		async open() {
			const r = await fetch(`${base}/open`, { method: 'POST' });
			assert.equal(r.status, 200, 'POST /open');
		},
		/* Lets the replies held by [[gate:name]] go (and later ones). */
		async openGate(name) {
			const r = await fetch(`${base}/open/${name}`, { method: 'POST' });
			assert.equal(r.status, 200, `POST /open/${name}`);
		},
		/* Lets the replies held now go; later gated ones are held. */
		async release() {
			const r = await fetch(`${base}/release`, { method: 'POST' });
			assert.equal(r.status, 200, 'POST /release');
		},
		async stop() {
			if (!exit) {
				proc.kill('SIGTERM');
				const t = setTimeout(() => proc.kill('SIGKILL'), HANG);
				await exited;
				clearTimeout(t);
			}
			fs.rmSync(dir, { recursive: true, force: true });
			if (IS_ASAN)
				assertNoSanitizerReport(stderr, 'mockllm');
		},
	};
}

/* -------------------------------------------- systemd's sockets, faked */

export const DGRAMSINK = path.join(BUILD, 'dgramsink');

/*
 * A unix datagram socket standing for systemd's notify socket (or
 * journald's): build/dgramsink, one line per datagram.  Returns { path,
 * messages(), wait(re, from) }: wait resolves to the index of the first
 * message from index `from` on that matches re.
 */
export async function startSink(t, tag = 'sink') {
	const dir = tmpdir(tag);
	const sock = path.join(dir, 'notify');
	const proc = spawn(DGRAMSINK, [sock], { stdio: ['pipe', 'pipe', 'pipe'] });
	track(proc);
	const messages = [];
	let pending = '', stderr = '';
	proc.stdout.setEncoding('utf8');
	proc.stdout.on('data', (d) => {
		pending += d;
		let i;
		while ((i = pending.indexOf('\n')) >= 0) {
			messages.push(JSON.parse(pending.slice(0, i)));
			pending = pending.slice(i + 1);
		}
	});
	proc.stderr.setEncoding('utf8');
	proc.stderr.on('data', (d) => { stderr += d; });
	const exited = new Promise((r) => proc.once('exit', r));
	t.after(async () => {
		proc.stdin.end();
		await Promise.race([exited, expire(HANG)]);
		fs.rmSync(dir, { recursive: true, force: true });
	});
	await waitFor(() => fs.existsSync(sock) || stderr, HANG, 'the sink\'s socket');
	assert.equal(stderr, '', 'dgramsink');
	return {
		path: sock,
		messages: () => messages,
		async wait(re, from = 0, what = String(re)) {
			const found = await waitFor(() => {
				const i = messages.findIndex((m, k) => k >= from && re.test(m));
				return i >= 0 ? i + 1 : 0;
			}, HANG, `a datagram ${what}; got ${JSON.stringify(messages.slice(-5))}`);
			return found - 1;
		},
	};
}

/* ------------------------------------------------------ the MCP server */

export function apiKey() {
	return `sk-or-it-${randomBytes(12).toString('hex')}`;
}

/*
 * Starts build/heavyd through the SDK's stdio transport and connects a
 * client.  opts.worker: 'prod' (build/heavyd-worker), 'test' (the one with
 * test tools) or null (leave HEAVY_WORKER unset).  opts.env overrides.
 * opts.command: [program, ...args] to run instead of heavyd (a wrapper
 * such as setpriv that execs it).
 */
export async function startServer(opts = {}) {
	const { mock, worker = 'prod', env = {}, listTools = true, extraAsan = '' } = opts;
	const [command, ...args] = opts.command ?? [HEAVYD];
	const key = opts.key ?? apiKey();
	const fullEnv = {
		OPENROUTER_API_KEY: key,
		HEAVY_HEARTBEAT: '1',
		HEAVY_RETRY_BASE_MS: '50',
		HEAVY_STATE_DIR: STATE_DIR,
		...(mock ? { HEAVY_BASE_URL: mock.baseUrl } : {}),
		...(worker === 'prod' ? { HEAVY_WORKER: WORKER } : {}),
		...(worker === 'test' ? { HEAVY_WORKER: TEST_WORKER } : {}),
		...sanitizerEnv(extraAsan),
		...storeEnv({ HEAVY_STATE_DIR: STATE_DIR, ...env }),
		...env,
	};
	for (const k of Object.keys(fullEnv))
		if (fullEnv[k] === undefined)
			delete fullEnv[k];

	const transport = new StdioClientTransport({
		command, args, env: fullEnv, stderr: 'pipe', cwd: REPO,
	});
	let stderr = '';
	transport.stderr.setEncoding('utf8');
	transport.stderr.on('data', (d) => { stderr += d; });
	const stderrEnd = new Promise((r) => transport.stderr.once('end', r));

	const client = new Client({ name: 'heavyd-integration', version: '1.0.0' }, { capabilities: {} });
	const errors = []; // { error, at }: protocol errors the client noticed
	client.onerror = (e) => errors.push({ error: e, at: Date.now() });

	try {
		await client.connect(transport, { timeout: HANG });
	} catch (e) {
		await Promise.race([new Promise((r) => transport.stderr.once('end', r)), expire(1000)]);
		e.message += `\n--- heavyd stderr:\n${stderr.slice(-3000)}`;
		await client.close().catch(() => {});
		throw e;
	}
	const pid = transport.pid;

	// Log every message both ways.  The SDK runs notification handlers on a
	// microtask but response handlers at once, so a progress notification
	// read in the same chunk as its response reaches neither onprogress nor
	// anyone else ("unknown token"); the log sees the true order.
	const wire = []; // { dir: 'in' | 'out', m, at }
	const onmessage = transport.onmessage;
	transport.onmessage = (m, extra) => {
		wire.push({ dir: 'in', m, at: Date.now() });
		onmessage?.(m, extra);
	};
	const send = transport.send.bind(transport);
	transport.send = (m, opts) => {
		wire.push({ dir: 'out', m, at: Date.now() });
		return send(m, opts);
	};
	// The transport forgets its child on close(); keep it to learn the exit status.
	const child = transport._process;
	track(child);
	const exited = new Promise((r) => {
		if (child.exitCode !== null || child.signalCode !== null)
			r({ code: child.exitCode, signal: child.signalCode });
		else
			child.once('exit', (code, signal) => r({ code, signal }));
	});

	// Remember every process seen under the server, to prove later that
	// none outlives it (even one reparented away from the tree).
	const seen = new Map();
	const sample = () => {
		for (const p of descendants(pid)) {
			const k = `${p.pid}:${p.starttime}`;
			if (!seen.has(k))
				seen.set(k, p);
		}
	};
	sample();
	const sampler = setInterval(sample, 100);
	exited.then(() => clearInterval(sampler));

	if (listTools)
		await client.listTools(); // lets the SDK validate structuredContent

	const srv = {
		client, transport, pid, key, errors,
		stderr: () => stderr,
		exited,
		seen: () => { sample(); return [...seen.values()]; },
		descendants: () => descendants(pid),
		workers: () => workersOf(pid),
		/*
		 * Calls heavy_orchestrate; returns the result, its progress
		 * notifications (from the wire log, with arrival times t since the
		 * call) and the elapsed ms.  o.onprogress sees them as they come.
		 */
		async orchestrate(args, o = {}) {
			const from = wire.length;
			const t0 = Date.now();
			let result;
			try {
				result = await client.callTool({ name: TOOL, arguments: args },
				    CallToolResultSchema, {
					timeout: o.timeout ?? HANG,
					signal: o.signal,
					onprogress: (p) => o.onprogress?.(p),
				});
			} catch (e) {
				if (!o.signal?.aborted)
					e.message += `\n--- last messages:\n${wire.slice(-8).map((w) =>
					    `${w.dir} ${JSON.stringify(w.m).slice(0, 300)}`).join('\n')}` +
					    `\n--- processes: ${describe(descendants(pid))}` +
					    `\n--- heavyd stderr:\n${stderr.slice(-3000)}`;
				throw e;
			}
			const elapsed = Date.now() - t0;
			const req = wire.slice(from).find((w) => w.dir === 'out' &&
			    w.m.method === 'tools/call' && w.m.params?.name === TOOL);
			const token = req.m.params._meta.progressToken;
			const progress = wire.filter((w) => w.dir === 'in' &&
			    w.m.method === 'notifications/progress' &&
			    w.m.params?.progressToken === token)
			    .map((w) => ({ ...w.m.params, t: w.at - t0 }));
			return { result, progress, elapsed, sc: result.structuredContent };
		},
		wire,
		/*
		 * Clean shutdown by closing stdin: asserts exit 0, that no process
		 * ever seen under the server remains, no sanitizer report, and no
		 * stray messages (see checkWire).
		 */
		async shutdown() {
			sample();
			clearInterval(sampler);
			// A last round trip: whatever heavyd sends after its answer
			// was sent after it had read every earlier message (checkWire).
			await client.ping({ timeout: HANG });
			await client.close();
			const ex = await Promise.race([exited, expire(HANG)]);
			assert.ok(ex, `server did not exit within ${HANG / 1000} s of stdin EOF`);
			const procs = [...seen.values()];
			let left = [];
			try {
				await waitFor(() => (left = stillAlive(procs)).length === 0, HANG,
				    'descendants to exit');
			} catch {
				killAll(left);
				assert.fail(`processes outlived the server: ${describe(left)}`);
			}
			await Promise.race([stderrEnd, expire(HANG)]); // all of it
			assert.deepEqual(ex, { code: 0, signal: null },
			    `server exit status on stdin EOF; stderr:\n${stderr}`);
			if (IS_ASAN)
				assertNoSanitizerReport(stderr, 'heavyd');
			checkWire(wire);
			const bad = errors.filter((x) => !/progress notification for an unknown token/
			    .test(String(x.error)));
			assert.deepEqual(bad.map((x) => String(x.error)), [], 'client saw protocol errors');
		},
		/* Last-resort cleanup (idempotent). */
		async kill() {
			clearInterval(sampler);
			sample();
			if (child.exitCode === null && child.signalCode === null) {
				try { child.kill('SIGKILL'); } catch { /* gone */ }
			}
			await Promise.race([exited, expire(HANG)]);
			killAll([...seen.values()]);
			try { await client.close(); } catch { /* closed */ }
		},
	};
	return srv;
}

/*
 * For every request sent with a progress token: no progress notification
 * after its response; if it was cancelled, no response at all and no
 * progress after heavyd has read the cancellation, that is after the
 * response to any request sent after it (srv.shutdown() ends with a ping;
 * heavyd reads its input in order and writes its output in order, so this
 * does not depend on how fast either side is).  A
 * task-augmented request (its response a CreateTaskResult) keeps its token
 * until its task's terminal notifications/tasks/status, as MCP Tasks say.
 */
export function checkWire(wire) {
	const show = (w) => JSON.stringify(w.m).slice(0, 300);
	wire.forEach((w, i) => {
		const token = w.dir === 'out' && w.m.id !== undefined ?
		    w.m.params?._meta?.progressToken : undefined;
		if (token === undefined)
			return;
		const later = wire.slice(i + 1);
		const progressAt = (w2) => w2.dir === 'in' &&
		    w2.m.method === 'notifications/progress' && w2.m.params?.progressToken === token;
		const r = later.findIndex((w2) => w2.dir === 'in' && w2.m.method === undefined &&
		    w2.m.id === w.m.id);
		const c = later.find((w2) => w2.dir === 'out' &&
		    w2.m.method === 'notifications/cancelled' && w2.m.params?.requestId === w.m.id);
		if (c) {
			assert.ok(r < 0, `a response to cancelled request ${w.m.id}: ${r >= 0 && show(later[r])}`);
			const ci = later.indexOf(c);
			const acked = later.findIndex((w2, k) => k > ci && w2.dir === 'in' &&
			    w2.m.method === undefined && later.slice(ci + 1, k).some((w3) =>
			    w3.dir === 'out' && w3.m.id !== undefined && w3.m.id === w2.m.id &&
			    w3.m.method !== undefined));
			const late = acked < 0 ? [] : later.slice(acked + 1).filter(progressAt);
			assert.deepEqual(late.map(show), [], `progress long after cancelling request ${w.m.id}`);
		} else if (r >= 0) {
			let rest = later.slice(r + 1);
			const taskId = later[r].m.result?.task?.taskId;
			if (taskId !== undefined) {
				const end = rest.findIndex((w2) => w2.dir === 'in' &&
				    w2.m.method === 'notifications/tasks/status' &&
				    w2.m.params?.taskId === taskId &&
				    ['completed', 'failed', 'cancelled'].includes(w2.m.params.status));
				rest = end < 0 ? [] : rest.slice(end + 1);
			}
			const after = rest.filter(progressAt);
			assert.deepEqual(after.map(show), [], `progress after the response to request ${w.m.id}`);
		}
	});
}

/*
 * One mock and one server for a test, torn down in t.after whatever
 * happens.  Returns { mock, srv }.
 */
export async function setup(t, opts = {}) {
	const mock = opts.noMock ? null : await startMock('mock', opts.mockArgs);
	let srv = null;
	t.after(async () => {
		if (srv)
			await srv.kill();
		if (mock)
			await mock.stop();
	});
	srv = await startServer({ ...opts, mock });
	return { mock, srv };
}

/* ---------------------------------------------------- raw JSON-RPC lines */

/* Spawns heavyd with plain pipes, for what the SDK will not send. */
export function spawnRaw(env) {
	const proc = spawn(HEAVYD, [], {
		stdio: ['pipe', 'pipe', 'pipe'],
		env: { PATH: process.env.PATH, HEAVY_STATE_DIR: STATE_DIR, ...sanitizerEnv(),
		    ...storeEnv(env), ...env },
		cwd: REPO,
	});
	track(proc);
	let stderr = '', pending = Buffer.alloc(0);
	const lines = [];
	const notUtf8 = []; // lines of stdout that are not UTF-8, as hex
	const utf8 = new TextDecoder('utf-8', { fatal: true });
	let wake = null;
	proc.stdout.on('data', (d) => {
		pending = Buffer.concat([pending, d]);
		let i;
		while ((i = pending.indexOf(0x0a)) >= 0) {
			const b = pending.subarray(0, i);
			try {
				lines.push(utf8.decode(b));
			} catch {
				notUtf8.push(b.toString('hex'));
				lines.push(b.toString('latin1'));
			}
			pending = pending.subarray(i + 1);
		}
		wake?.();
	});
	proc.stderr.setEncoding('utf8');
	proc.stderr.on('data', (d) => { stderr += d; });
	proc.stdin.on('error', () => {});
	// 'close': exited, and everything it wrote to stdout and stderr read.
	const exited = new Promise((r) => {
		proc.once('close', (code, signal) => r({ code, signal }));
		proc.once('error', (e) => { stderr += `spawn failed: ${e.message}\n`; r({ code: null, signal: null, error: e.message }); });
	});
	let exit = null;
	exited.then((e) => { exit = e; wake?.(); });
	return {
		proc,
		pid: proc.pid,
		stderr: () => stderr,
		exited,
		lines,
		notUtf8,
		/* What stdout holds after its last newline: a cut line. */
		tail: () => pending.toString('latin1'),
		write(s) { proc.stdin.write(s); },
		send(obj) { proc.stdin.write((typeof obj === 'string' ? obj : JSON.stringify(obj)) + '\n'); },
		/* The next line on stdout, parsed. */
		async next(ms = HANG) {
			const end = Date.now() + ms;
			while (!lines.length) {
				if (exit)
					throw new Error(`heavyd exited (${JSON.stringify(exit)}); stderr:\n${stderr}`);
				const left = end - Date.now();
				if (left <= 0)
					throw new Error(`no line from heavyd within ${ms} ms; stderr:\n${stderr}`);
				await new Promise((r) => {
					const tm = setTimeout(r, left);
					wake = () => { clearTimeout(tm); r(); };
				});
				wake = null;
			}
			const line = lines.shift();
			if (notUtf8.length)
				throw new Error(`heavyd wrote bytes that are not UTF-8: ${notUtf8[0]}`);
			try {
				return JSON.parse(line);
			} catch {
				throw new Error(`heavyd wrote a line that is not JSON: ${line}`);
			}
		},
		/* Sends a request and returns the next message. */
		async call(obj, ms) {
			this.send(obj);
			return this.next(ms);
		},
		kill() {
			if (!exit)
				proc.kill('SIGKILL');
		},
	};
}

/*
 * heavyd with these arguments (--listen ...) and environment (beside PATH
 * and the sanitizers'), for test t.  Resolves once it listens: its MCP
 * url, and the host it named.  After the test it is SIGKILLed if still
 * running, then cleanup() runs; stop() asks it to go (SIGTERM) and asserts
 * a clean exit and, under ASan, no report.
 */
export async function startListener(t, args, env, cleanup = async () => {}) {
	const proc = spawn(HEAVYD, args, {
		stdio: ['ignore', 'pipe', 'pipe'], cwd: REPO,
		env: { PATH: process.env.PATH, ...sanitizerEnv(), ...env },
	});
	let stderr = '';
	proc.stderr.setEncoding('utf8');
	proc.stderr.on('data', (d) => { stderr += d; });
	const exited = new Promise((r) => proc.once('close', (code, signal) => r({ code, signal })));
	let exit = null;
	exited.then((e) => { exit = e; });
	t.after(async () => {
		if (exit === null) {
			proc.kill('SIGKILL');
			await exited;
		}
		await cleanup();
	});
	const m = await waitFor(() => {
		if (exit)
			throw new Error(`heavyd exited: ${JSON.stringify(exit)}\n${stderr}`);
		return /listening on http:\/\/(\S+):(\d+)(\/mcp)/.exec(stderr);
	}, HANG, 'heavyd to listen');
	return {
		proc, host: m[1], base: `http://127.0.0.1:${m[2]}`,
		url: `http://127.0.0.1:${m[2]}${m[3]}`, stderr: () => stderr,
		async stop() {
			proc.kill('SIGTERM');
			const ex = await Promise.race([exited, expire(HANG)]);
			assert.deepEqual(ex, { code: 0, signal: null }, `exit; stderr:\n${stderr}`);
			if (IS_ASAN)
				assertNoSanitizerReport(stderr, 'heavyd');
		},
	};
}
