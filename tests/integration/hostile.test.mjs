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
	HEAVYD, IS_ASAN, describe, readStat, setup, stillAlive, tmpdir, waitFor,
} from './lib.mjs';

const MEMORY = 256 << 20;
const LIMITS = { HEAVY_WORKER_MEMORY: String(MEMORY), HEAVY_WORKER_NOFILE: '64' };

/* What this host gives workers, as --check-config prints it. */
function features(env = {}) {
	const out = execFileSync(HEAVYD, ['--check-config'], {
		env: { PATH: process.env.PATH, OPENROUTER_API_KEY: 'k', ...env }, encoding: 'utf8',
	});
	const f = {};
	for (const m of out.matchAll(/^sandbox\.(\w+): (.*)$/gm))
		f[m[1]] = m[2];
	return f;
}
const FEATURES = features();
const LANDLOCK = /^Landlock ABI (\d+)/.exec(FEATURES.filesystem);
const TCP_RULES = /^TCP connect only/.test(FEATURES.network);
const NO_LANDLOCK = LANDLOCK ? false : `no Landlock here: ${FEATURES.filesystem}`;
const NO_TCP_RULES = TCP_RULES ? false : `no TCP port rules here: ${FEATURES.network}`;
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
		    { timeout: 30000 }),
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
		await waitFor(() => (left = running()).length === 0, 2000,
		    'the workers to be gone');
	} catch {
		assert.fail(`processes survived ${tool}: ${describe(left)}`);
	}
	assert.deepEqual(await srv.client.ping(), {});
	return { a1: sc.agents[0], sc };
}

test('a fork bomb dies of SIGSYS at its first fork', { timeout: 30000 }, async (t) => {
	const { srv } = await setup(t, { worker: 'test', env: LIMITS });
	const { a1 } = await hostile(srv, 'test_fork_bomb');
	assert.equal(a1.status, 'killed', JSON.stringify(a1));
	assert.equal(a1.signal, 'SIGSYS', JSON.stringify(a1));
	assert.match(a1.error, /SIGSYS: a forbidden system call \(seccomp\)/);
	await srv.shutdown();
});

test('exec of a shell dies of SIGSYS and runs nothing', { timeout: 30000 }, async (t) => {
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
	timeout: 30000,
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

test('a CPU spinner is stopped by its CPU limit (SIGXCPU)', { timeout: 30000 }, async (t) => {
	const { srv } = await setup(t, { worker: 'test', env: { ...LIMITS, HEAVY_WORKER_CPU: '1' } });
	const { a1 } = await hostile(srv, 'test_spin');
	assert.equal(a1.status, 'killed', JSON.stringify(a1));
	assert.equal(a1.signal, 'SIGXCPU', JSON.stringify(a1));
	assert.match(a1.error, /CPU limit reached.*1 s of CPU time \(RLIMIT_CPU\)/);
	assert.ok(a1.elapsed_ms >= 1000, `killed after ${a1.elapsed_ms} ms`);
	await srv.shutdown();
});

test('an agent blocked forever gets SIGKILL at its deadline', { timeout: 30000 }, async (t) => {
	const { srv } = await setup(t, { worker: 'test', env: LIMITS });
	const { a1 } = await hostile(srv, 'test_block', {}, { timeout: 4 });
	assert.equal(a1.status, 'timed_out', JSON.stringify(a1));
	assert.equal(a1.signal, 'SIGKILL', JSON.stringify(a1));
	assert.match(a1.error, /deadline/);
	await srv.shutdown();
});

test('descriptor exhaustion stops at RLIMIT_NOFILE with EMFILE', { timeout: 30000 }, async (t) => {
	const { srv } = await setup(t, { worker: 'test', env: LIMITS });
	const { a1, sc } = await hostile(srv, 'test_fd_hog', {}, { alone: true });
	const text = `${sc.answer} ${a1.error}`;
	assert.match(text, /dup: EMFILE/, JSON.stringify(sc));
	const n = Number(/opened (\d+) descriptors/.exec(text)?.[1]);
	assert.ok(n > 0 && n < 64, `opened ${n} descriptors under a limit of 64: ${text}`);
	await srv.shutdown();
});

test('a write outside the workspace is refused by Landlock (EACCES)', {
	timeout: 30000, skip: NO_LANDLOCK,
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

test('a connection to a port no endpoint uses is refused (EACCES)', {
	timeout: 30000, skip: NO_TCP_RULES,
}, async (t) => {
	const accepted = [];
	const listener = net.createServer((s) => { accepted.push(s.remotePort); s.destroy(); });
	await new Promise((r) => listener.listen(0, '127.0.0.1', r));
	t.after(() => listener.close());
	const { port } = listener.address();
	const { srv } = await setup(t, { worker: 'test', env: LIMITS });
	const { a1, sc } = await hostile(srv, 'test_connect', { port }, { alone: true });
	checkOk(a1);
	assert.match(sc.answer, /connect: EACCES/);
	assert.deepEqual(accepted, [], 'the worker reached the listener');
	await srv.shutdown();
});
