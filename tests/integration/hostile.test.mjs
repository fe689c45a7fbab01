// Hostile workers: an agent steered into a fork bomb, a memory or descriptor
// hog, a CPU spin, a block, a write outside its workspace, a shell, or a
// connection to a port no endpoint uses.  For each, the sandbox stops it,
// the task reports that agent's failure with its cause, no process of it
// survives, and the server keeps serving a concurrent normal call.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { test } from 'node:test';

import { checkOk, checkShape } from './checks.mjs';
import {
	HEAVYD, IS_ASAN, IS_VALGRIND, REAL_HEAVYD, STATE_DIR, describe, mountTmpfs, readStat, setup, stillAlive,
	tmpdir, waitFor,
} from './lib.mjs';
import { HANG, SOON, TEST_TIMEOUT } from './lib.mjs';

const MEMORY = 256 << 20;
const LIMITS = { HEAVY_WORKER_MEMORY: String(MEMORY), HEAVY_WORKER_NOFILE: '64' };

/* What this host gives workers, as --check-config prints it. */
function features(env = {}, heavyd = HEAVYD) {
	const out = execFileSync(heavyd, ['--check-config'], {
		env: { PATH: process.env.PATH, HEAVY_STATE_DIR: STATE_DIR, OPENROUTER_API_KEY: 'k', ...env }, encoding: 'utf8',
	});
	const f = {};
	for (const m of out.matchAll(/^sandbox\.(\w+): (.*)$/gm))
		f[m[1]] = m[2].startsWith('"') ? JSON.parse(m[2]) : m[2];	// YAML-quoted
	return f;
}
const FEATURES = features();
const LANDLOCK = /^Landlock ABI (\d+)/.exec(FEATURES.filesystem);
const TCP_RULES = /^no TCP connect or bind/.test(FEATURES.network);
/*
 * Under valgrind heavyd sees no Landlock even when the kernel has it:
 * valgrind does not know the Landlock system calls, so they fail and heavyd
 * falls back.  A skip says so, with what the kernel has (heavyd itself,
 * run without valgrind).
 */
function whyNot(what, detail) {
	if (!IS_VALGRIND || REAL_HEAVYD === HEAVYD)
		return `no ${what} here: ${detail}`;
	const kernel = features({}, REAL_HEAVYD).filesystem;
	const abi = /^(Landlock ABI \d+)/.exec(kernel)?.[1] ?? `no Landlock either: ${kernel}`;
	return `heavyd runs under valgrind, which does not know the Landlock system calls, so heavyd ` +
	    `falls back ("${detail}"); without valgrind: ${abi} (tested in the other stages)`;
}
const NO_LANDLOCK = LANDLOCK ? false : whyNot('Landlock', FEATURES.filesystem);
const NO_CGROUP = /^off/.test(FEATURES.cgroup) ? FEATURES.cgroup : false;

async function normalCall(srv) {
	const { result } = await srv.orchestrate({ query: 'A normal call alongside', num_agents: 2 });
	assert.notEqual(result.isError, true, JSON.stringify(result));
	const sc = checkShape(result, 2);
	sc.agents.forEach(checkOk);
	assert.equal(sc.synthesized, true);
}

/*
 * Agent 1 calls tool with args; agent 2 (unless o.alone) behaves; a normal
 * call runs at the same time and must complete.  Returns agent 1 and the
 * result; alone, the result's answer is agent 1's own, tool results and
 * all.  Afterwards every worker process seen is gone.
 */
async function hostile(srv, tool, args = {}, o = {}) {
	const q = `Misbehave [[a1:tool:${tool}:${JSON.stringify(args)}]]`;
	const n = o.alone ? 1 : 2;
	const [{ result }] = await Promise.all([
		srv.orchestrate({ query: q, num_agents: n, timeout: o.timeout ?? 60 },
		    { timeout: HANG }),
		normalCall(srv),
	]);
	const sc = checkShape(result, n);
	if (!o.alone) {
		assert.notEqual(result.isError, true, JSON.stringify(result));
		checkOk(sc.agents[1]);
	}
	// The zygote and its spares are named heavyd-worker for an instant
	// after their exec or fork; those renamed since ran no job.
	const workers = srv.seen().filter((p) => p.comm === 'heavyd-worker');
	const running = () => stillAlive(workers).filter((p) =>
	    readStat(p.pid)?.comm === 'heavyd-worker');
	let left = [];
	try {
		await waitFor(() => (left = running()).length === 0, SOON,
		    'the workers to be gone');
	} catch {
		assert.fail(`processes survived ${tool}: ${describe(left)}`);
	}
	assert.deepEqual(await srv.client.ping(), {});
	return { a1: sc.agents[0], sc };
}

test('a fork bomb dies of SIGSYS at its first fork', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv } = await setup(t, { worker: 'test', env: LIMITS });
	const { a1 } = await hostile(srv, 'test_fork_bomb');
	assert.equal(a1.status, 'killed', JSON.stringify(a1));
	assert.equal(a1.signal, 'SIGSYS', JSON.stringify(a1));
	assert.match(a1.error, /SIGSYS: a forbidden system call \(seccomp\)/);
	await srv.shutdown();
});

test('exec of a shell dies of SIGSYS and runs nothing', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv } = await setup(t, { worker: 'test', env: LIMITS });
	const dir = tmpdir('exec');
	t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
	const marker = path.join(dir, 'shell-ran');
	const { a1 } = await hostile(srv, 'test_exec_shell', { path: marker });
	assert.equal(a1.status, 'killed', JSON.stringify(a1));
	assert.equal(a1.signal, 'SIGSYS', JSON.stringify(a1));
	assert.match(a1.error, /seccomp/);
	assert.equal(fs.existsSync(marker), false, 'the shell ran');
	await srv.shutdown();
});

test('a memory hog fails out of memory at its limit', {
	timeout: TEST_TIMEOUT,
	skip: IS_ASAN && NO_CGROUP ? 'ASan build: RLIMIT_AS is not applied (the sanitizer ' +
	    'reserves terabytes of address space) and there is no cgroup memory.max here ' +
	    `(${NO_CGROUP})` : false,
}, async (t) => {
	const { srv } = await setup(t, { worker: 'test', env: LIMITS });
	const { a1 } = await hostile(srv, 'test_memory_hog');
	assert.notEqual(a1.status, 'ok', JSON.stringify(a1));
	assert.match(a1.error, /out of memory/, JSON.stringify(a1));
	assert.match(a1.error, /256 MiB/);
	await srv.shutdown();
});

test('a CPU spinner is stopped by its CPU limit (SIGXCPU)', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv } = await setup(t, { worker: 'test', env: { ...LIMITS, HEAVY_WORKER_CPU: '1' } });
	const { a1 } = await hostile(srv, 'test_spin');
	assert.equal(a1.status, 'killed', JSON.stringify(a1));
	assert.equal(a1.signal, 'SIGXCPU', JSON.stringify(a1));
	assert.match(a1.error, /CPU limit reached.*1 s of CPU time \(RLIMIT_CPU\)/);
	// RLIMIT_CPU counts CPU ticks (a whole tick to the task running when
	// it fires), so a second of CPU may take a few ms less than a second.
	assert.ok(a1.elapsed_ms >= 950, `killed after ${a1.elapsed_ms} ms`);
	await srv.shutdown();
});

test('an agent blocked forever gets SIGKILL at its deadline', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv } = await setup(t, { worker: 'test', env: LIMITS });
	const { a1 } = await hostile(srv, 'test_block', {}, { timeout: 8 });
	assert.equal(a1.status, 'timed_out', JSON.stringify(a1));
	assert.equal(a1.signal, 'SIGKILL', JSON.stringify(a1));
	assert.match(a1.error, /deadline/);
	await srv.shutdown();
});

test('descriptor exhaustion stops at RLIMIT_NOFILE with EMFILE', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv } = await setup(t, { worker: 'test', env: LIMITS });
	const { a1, sc } = await hostile(srv, 'test_fd_hog', {}, { alone: true });
	const text = `${sc.answer} ${a1.error}`;
	assert.match(text, /dup: EMFILE/, JSON.stringify(sc));
	const n = Number(/opened (\d+) descriptors/.exec(text)?.[1]);
	assert.ok(n > 0 && n < 64, `opened ${n} descriptors under a limit of 64: ${text}`);
	await srv.shutdown();
});

test('a write outside the workspace is refused by Landlock (EACCES)', {
	timeout: TEST_TIMEOUT, skip: NO_LANDLOCK,
}, async (t) => {
	const { srv } = await setup(t, { worker: 'test', env: LIMITS });
	const dir = tmpdir('outside');
	t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
	const target = path.join(dir, 'escaped');
	const { a1, sc } = await hostile(srv, 'test_write_outside', { path: target }, { alone: true });
	checkOk(a1);
	assert.equal(fs.existsSync(target), false, 'the file was written');
	assert.ok(sc.answer.includes(`${target}: EACCES`), sc.answer);
	await srv.shutdown();
});

/*
 * A worker has no network of its own: heavyd-egress makes its requests.
 * socket() fails with EACCES (seccomp), whatever the port: one no endpoint
 * uses, and the LLM endpoint's own, which workers reached directly before.
 */
test('a worker can open no socket and connect nowhere, not even to the LLM endpoint (EACCES)', {
	timeout: TEST_TIMEOUT,
}, async (t) => {
	const accepted = [];
	const listener = net.createServer((s) => { accepted.push(s.remotePort); s.destroy(); });
	await new Promise((r) => listener.listen(0, '127.0.0.1', r));
	t.after(() => listener.close());
	const { port } = listener.address();
	const { srv, mock } = await setup(t, { worker: 'test', env: LIMITS });
	const q = `Misbehave [[a1:tool:test_connect:${JSON.stringify({ port })}]]` +
	    ` [[a1:tool:test_connect:${JSON.stringify({ port: mock.port })}]]` +
	    ' [[a1:tool:test_unix:{"path":"/run/heavyd-none.sock"}]]';
	const { result } = await srv.orchestrate({ query: q, num_agents: 1, timeout: 60 },
	    { timeout: HANG });
	const sc = checkShape(result, 1);
	checkOk(sc.agents[0]);
	const denied = sc.answer.match(/socket: EACCES/g) ?? [];
	assert.equal(denied.length, 3, `three sockets refused: ${sc.answer}`);
	assert.doesNotMatch(sc.answer, /connected to/);
	assert.deepEqual(accepted, [], 'the worker reached the listener');
	await srv.shutdown();
});

/* Starts a call whose agent 1 blocks; resolves to its worker's pid once
 * that worker is inside its sandbox and has called the tool. */
async function blockedWorker(srv, t) {
	const ac = new AbortController();
	let called = false;
	const call = srv.orchestrate({ query: 'Block [[a1:tool:test_block:{}]]', num_agents: 1,
	    timeout: 30 }, {
		signal: ac.signal, timeout: HANG,
		onprogress: (p) => { called ||= /test_block/.test(p.message ?? ''); },
	});
	call.catch(() => {});
	t.after(() => ac.abort());
	await waitFor(() => called, undefined, 'agent 1 to call test_block');
	// Only a worker with a job has both filters (a fresh spare, with the
	// first, may be named heavyd-worker for an instant).
	const procs = srv.workers().filter((p) => {
		try {
			return /^Seccomp_filters:\s+2$/m.test(fs.readFileSync(`/proc/${p.pid}/status`, 'utf8'));
		} catch {
			return false;
		}
	});
	assert.equal(procs.length, 1, `one worker running: ${describe(srv.workers())}`);
	return { pid: procs[0].pid, cancel: () => ac.abort() };
}

test('a worker runs confined: no_new_privs, seccomp, no capabilities, its limits', { timeout: TEST_TIMEOUT }, async (t) => {
	const env = { ...LIMITS, HEAVY_WORKER_CPU: '100', HEAVY_WORKER_FSIZE: String(1 << 20) };
	const { srv } = await setup(t, { worker: 'test', env });
	const { pid, cancel } = await blockedWorker(srv, t);
	const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
	assert.match(status, /^NoNewPrivs:\s+1$/m);
	assert.match(status, /^Seccomp:\s+2$/m);
	assert.match(status, /^Seccomp_filters:\s+2$/m, 'the allowlist and the way in closed');
	for (const set of ['CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb'])
		assert.match(status, new RegExp(`^${set}:\\s+0{16}$`, 'm'), `${set}:\n${status}`);
	const limits = fs.readFileSync(`/proc/${pid}/limits`, 'utf8');
	const limit = (name) => new RegExp(`^${name}\\s+(\\S+)\\s+(\\S+)`, 'm').exec(limits)?.slice(1, 3);
	assert.deepEqual(limit('Max address space'),
	    IS_ASAN ? ['unlimited', 'unlimited'] : [String(MEMORY), String(MEMORY)], limits);
	assert.deepEqual(limit('Max cpu time'), ['100', '101'], limits);
	assert.deepEqual(limit('Max open files'), ['64', '64'], limits);
	assert.deepEqual(limit('Max file size'), [String(1 << 20), String(1 << 20)], limits);
	assert.deepEqual(limit('Max core file size'), ['0', '0'], limits);
	assert.equal(fs.readFileSync(`/proc/${pid}/oom_score_adj`, 'utf8').trim(), '1000');
	cancel();
	await waitFor(() => !readStat(pid), SOON, 'the worker to go');
	await srv.shutdown();
});

test('a worker sees only the environment the LLM client may read', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv } = await setup(t, { worker: 'test', env: { TZ: 'UTC', SECRET_TOKEN: 'x' } });
	const { sc } = await hostile(srv, 'test_env', {}, { alone: true });
	const names = /tool results: (.*)$/.exec(sc.answer)?.[1].split(' ');
	assert.ok(names?.includes('PATH') && names.includes('TZ'), sc.answer);
	const allowed = ['PATH', 'TZ', 'LANG', 'LC_ALL', 'SSL_CERT_FILE', 'SSL_CERT_DIR',
	    'CURL_CA_BUNDLE', 'HOME'];
	assert.deepEqual(names.filter((n) => !allowed.includes(n)), [], sc.answer);
	await srv.shutdown();
});

/* Every readable mapping of pid, as /proc/PID/mem gives it (a core's view). */
function memoryOf(pid) {
	const chunks = [];
	const fd = fs.openSync(`/proc/${pid}/mem`, 'r');
	try {
		for (const line of fs.readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n')) {
			const m = /^([0-9a-f]+)-([0-9a-f]+) r/.exec(line);
			if (!m || /\[vvar\]|\[vsyscall\]/.test(line))
				continue;
			const from = BigInt(`0x${m[1]}`), to = BigInt(`0x${m[2]}`);
			const len = Number(to - from);
			if (len > 256 << 20)
				continue;	// ASan's shadow, never a key
			const b = Buffer.alloc(len);
			try {
				const n = fs.readSync(fd, b, 0, len, from);
				chunks.push(b.subarray(0, n));
			} catch { /* a guard page */ }
		}
	} finally {
		fs.closeSync(fd);
	}
	return chunks;
}

/*
 * heavyd-egress holds the key and adds it to each request: a worker that
 * has made its LLM calls has it nowhere in its memory, nor in its
 * environment; egress itself has it (which proves the scan can find it).
 */
test('the API key is in no worker\'s memory, only in heavyd-egress\'s', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv } = await setup(t, { worker: 'test', env: LIMITS });
	const { pid, cancel } = await blockedWorker(srv, t);
	const key = Buffer.from(srv.key);
	const mem = memoryOf(pid);
	assert.ok(mem.reduce((n, c) => n + c.length, 0) > 1 << 20, 'the scan read the worker');
	assert.ok(mem.every((c) => c.indexOf(key) === -1), 'the key is in the worker\'s memory');
	assert.equal(fs.readFileSync(`/proc/${pid}/environ`).indexOf(key), -1);
	const egress = srv.descendants().filter((p) => readStat(p.pid)?.comm === 'heavyd-egress');
	assert.equal(egress.length, 1, describe(srv.descendants()));
	assert.ok(memoryOf(egress[0].pid).some((c) => c.indexOf(key) !== -1),
	    'the scan finds the key where it is');
	cancel();
	await srv.shutdown();
});

test('the startup log sums up the sandbox in one line; --check-config names every feature', { timeout: TEST_TIMEOUT }, async (t) => {
	const keys = ['filesystem', 'network', 'seccomp', 'no_new_privs', 'capabilities', 'rlimits',
	    'oom_score_adj', 'cgroup', 'egress', 'weaker'];
	// sandbox.require is a setting, printed with the configuration.
	assert.deepEqual(Object.keys(FEATURES).filter((k) => k !== 'require'), keys);
	assert.match(FEATURES.rlimits, IS_ASAN ? /^AS not set \(ASan build\), CPU 600 s, NOFILE 256/ :
	    /^AS 1024 MiB, CPU 600 s, NOFILE 256, FSIZE 64 MiB, CORE 0$/);
	const { srv, mock } = await setup(t);
	// At startup one short line; the full report is --check-config's.
	// stderr is another pipe than the answers: wait for the line itself.
	await waitFor(() => /(info|warning): sandbox: .*\n/.test(srv.stderr()), undefined,
	    'the sandbox log line');
	const line = srv.stderr().split('\n').filter((l) => /(info|warning): sandbox: /.test(l));
	assert.equal(line.length, 1, srv.stderr());
	assert.match(line[0], /sandbox: (Landlock ABI \d+|mount namespace \(.*\)|filesystem NOT CONFINED \(.*\))(, network NOT CONFINED)?, (NO )?seccomp, rlimits; cgroup (on|off \([^()]+\))$/);
	if (LANDLOCK)
		assert.match(line[0], new RegExp(`${TCP_RULES ? 'info' : 'warning'}: sandbox: Landlock ABI ${LANDLOCK[1]}, `));
	assert.match(line[0], NO_CGROUP ? /; cgroup off \(/ : /; cgroup on$/);
	// No port of the endpoint's is granted: workers reach it through egress.
	if (TCP_RULES)
		assert.match(features({ HEAVY_BASE_URL: mock.baseUrl }).network,
		    /^no TCP connect or bind, no socket\(\): requests go through heavyd-egress/);
	await srv.shutdown();
});

test('per-worker cgroup v2: memory.max, pids.max, memory.oom.group', {
	timeout: TEST_TIMEOUT, skip: NO_CGROUP,
}, async (t) => {
	const { srv } = await setup(t, { worker: 'test', env: LIMITS });
	const { pid, cancel } = await blockedWorker(srv, t);
	const rel = /^0::(.*)$/m.exec(fs.readFileSync(`/proc/${pid}/cgroup`, 'utf8'))[1];
	assert.ok(rel.endsWith(`/workers/w${pid}`), rel);
	// (Not FEATURES.cgroup's: each heavyd may have a cgroup of its own.)
	const mnt = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')
	    .find((l) => / - cgroup2 /.test(l))?.split(' ')[4];
	assert.ok(mnt, 'no cgroup2 mount');
	const dir = `${mnt}${rel}`;
	assert.equal(fs.readFileSync(`${dir}/memory.max`, 'utf8').trim(), String(MEMORY));
	assert.equal(fs.readFileSync(`${dir}/pids.max`, 'utf8').trim(), '32');
	assert.equal(fs.readFileSync(`${dir}/memory.oom.group`, 'utf8').trim(), '1');
	cancel();
	await waitFor(() => !fs.existsSync(dir), SOON, 'the worker cgroup to be removed');
	await srv.shutdown();
});

/*
 * The cgroup's limits reach what the rlimits cannot.  Pages of a tmpfs are
 * memory that RLIMIT_AS never counts (an allocation reaches RLIMIT_AS, the
 * same size, before memory.max): a worker filling a workspace on a tmpfs
 * is stopped by memory.max alone, and its cause must say so.
 */
test("memory.max: a worker filling its workspace on a tmpfs is killed by its cgroup's OOM killer", {
	timeout: TEST_TIMEOUT, skip: NO_CGROUP,
}, async (t) => {
	const disk = mountTmpfs(t, 'oom', '1g');
	if (disk.why) {
		t.skip(disk.why);
		return;
	}
	const { srv } = await setup(t, { worker: 'test', env: { ...LIMITS, HEAVY_STATE_DIR: disk.dir } });
	const { a1 } = await hostile(srv, 'test_fill_workspace');
	assert.equal(a1.status, 'killed', JSON.stringify(a1));
	assert.equal(a1.signal, 'SIGKILL', JSON.stringify(a1));
	assert.equal(a1.error, "out of memory: killed by SIGKILL from its cgroup's OOM killer " +
	    '(memory.max 256 MiB)');
	await srv.shutdown();
});

/* seccomp kills a fork at once (above); threads it allows, and pids.max,
 * which counts them, is what stops a bomb of them. */
test('pids.max: a thread bomb is refused with EAGAIN at its limit', {
	timeout: TEST_TIMEOUT, skip: NO_CGROUP,
}, async (t) => {
	const { srv } = await setup(t, { worker: 'test', env: { ...LIMITS, HEAVY_WORKER_PIDS: '16' } });
	const { a1, sc } = await hostile(srv, 'test_thread_bomb', {}, { alone: true });
	const text = `${sc.answer} ${a1.error}`;
	assert.match(text, /pthread_create: EAGAIN/, JSON.stringify(sc));
	const n = Number(/started (\d+) threads/.exec(text)?.[1]);
	assert.ok(n > 0 && n < 16, `started ${n} threads under pids.max 16: ${text}`);
	await srv.shutdown();
});

/* The fallback without Landlock, forced: what it can confine. */
let MOUNT_MODE = false;
try {
	MOUNT_MODE = features({ HEAVY_SANDBOX_FS: 'mount' }).filesystem;
} catch (e) {
	MOUNT_MODE = null;
}
test('the mount namespace fallback confines the filesystem', {
	timeout: TEST_TIMEOUT,
	skip: MOUNT_MODE ? false : 'no mount namespace here (it needs CAP_SYS_ADMIN)',
}, async (t) => {
	// (Under valgrind heavyd sees no Landlock: valgrind does not know its calls.)
	assert.match(MOUNT_MODE, /^mount namespace \((HEAVY_SANDBOX_FS=mount|no Landlock in this kernel)\)/);
	const { srv } = await setup(t, { worker: 'test', env: { ...LIMITS, HEAVY_SANDBOX_FS: 'mount' } });
	assert.match(srv.stderr(), /warning: sandbox: mount namespace \(.*\), network NOT CONFINED, /);
	const dir = tmpdir('mountns');
	t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
	const outside = path.join(dir, 'escaped');
	const readOnly = `/etc/ssl/heavyd-it-${path.basename(dir)}`;
	t.after(() => fs.rmSync(readOnly, { force: true }));
	const q = `Misbehave [[a1:tool:test_write_outside:${JSON.stringify({ path: outside })}]] ` +
	    `[[a1:tool:test_write_outside:${JSON.stringify({ path: readOnly })}]]`;
	const [{ result }] = await Promise.all([
		srv.orchestrate({ query: q, num_agents: 1 }), normalCall(srv)]);
	const sc = checkShape(result, 1);
	checkOk(sc.agents[0]);
	assert.ok(sc.answer.includes(`${outside}: ENOENT`), sc.answer);
	assert.ok(sc.answer.includes(`${readOnly}: EROFS`), sc.answer);
	assert.equal(fs.existsSync(outside) || fs.existsSync(readOnly), false, 'a file was written');
	await srv.shutdown();
});
