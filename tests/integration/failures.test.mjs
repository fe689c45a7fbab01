// Cancellation, crashing workers, and the supervisor going away mid-task.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { checkOk, checkShape } from './checks.mjs';
import { IS_ASAN, describe, setup, sleep, stillAlive, waitFor } from './lib.mjs';
import { GRACE, HANG, SOON, TEST_TIMEOUT, expire } from './lib.mjs';

// resume: false: a heavyd killed here leaves no task for the next test's to resume.
const HANGING = { query: 'Everyone hangs [[agent:hang]]', num_agents: 3, timeout: 60, resume: false };

/*
 * Starts a call whose agents all hang; resolves once its workers run, to
 * { call } (a bare promise would be adopted by the async function).
 */
async function startHangingCall(srv, signal) {
	let ready;
	const questionsReady = new Promise((r) => { ready = r; });
	const call = srv.orchestrate(HANGING, {
		signal, timeout: 90000,
		onprogress: (p) => { if (/questions ready/i.test(p.message ?? '')) ready(); },
	});
	call.catch(() => {});
	let timer;
	const early = call.then((r) => {
		throw new Error(`the call returned early: ${JSON.stringify(r.result)}`);
	});
	early.catch(() => {});
	try {
		await Promise.race([questionsReady, early, new Promise((_, rej) => {
			timer = setTimeout(() => rej(new Error(`no "questions ready" progress in ${HANG / 1000} s`)), HANG);
		})]);
	} finally {
		clearTimeout(timer);
	}
	await waitFor(() => srv.workers().length >= 3, undefined, 'three agent workers');
	return { call };
}

async function normalCallWorks(srv) {
	const { result } = await srv.orchestrate({ query: 'And now a normal one', num_agents: 2 });
	assert.notEqual(result.isError, true, JSON.stringify(result));
	const sc = checkShape(result, 2);
	sc.agents.forEach(checkOk);
	assert.equal(sc.synthesized, true);
}

test('cancelling a call kills its workers at once and sends no response', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv } = await setup(t);
	const ac = new AbortController();
	const { call } = await startHangingCall(srv, ac.signal);
	ac.abort('test cancels');
	await assert.rejects(call);
	await waitFor(() => srv.workers().length === 0, SOON,
	    `workers to go after the cancellation (left: ${describe(srv.workers())})`);
	assert.deepEqual(await srv.client.ping(), {});
	await normalCallWorks(srv);
	await sleep(500); // a grace period for a response to the cancelled call (it must not come)
	await srv.shutdown(); // checks: no response to it, no progress long after
});

test('a crashing worker is contained and reported', { timeout: TEST_TIMEOUT }, async (t) => {
	// ASan would turn the SIGSEGV into a report and exit(1); let it die.
	const { srv } = await setup(t, { worker: 'test', extraAsan: ':handle_segv=0' });
	const { result } = await srv.orchestrate({ query: 'Crash one [[a1:tool:test_crash:{}]]', num_agents: 3 });
	assert.notEqual(result.isError, true, JSON.stringify(result));
	const sc = checkShape(result, 3);
	const a1 = sc.agents[0];
	assert.equal(a1.status, 'killed', JSON.stringify(a1));
	assert.equal(a1.signal, 'SIGSEGV', JSON.stringify(a1));
	assert.equal(typeof a1.error, 'string');
	checkOk(sc.agents[1]);
	checkOk(sc.agents[2]);
	assert.equal(sc.synthesized, true);
	assert.match(sc.answer, /^Synthesized answer over 2 responses\./);
	// Its last line, unended, relayed once its stderr closed.
	await waitFor(() => /heavyd-worker\[\d+\] task [0-9a-f]{8} agent 1: test_crash: last words, unended\n/
	    .test(srv.stderr()), HANG, 'the crashing worker\'s last line')
	    .catch((e) => assert.fail(`${e.message}; heavyd's stderr:\n${srv.stderr().slice(-4000)}`));
	assert.deepEqual(await srv.client.ping(), {});
	await normalCallWorks(srv);
	await srv.shutdown();
});

test('SIGKILL of the supervisor mid-task leaves no process behind', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv } = await setup(t);
	await startHangingCall(srv);
	// The planner's worker may still be exiting when three workers are
	// first seen: wait for the three hanging agents themselves.
	let procs = [];
	await waitFor(() => {
		procs = srv.descendants();
		return procs.some((p) => p.comm === 'heavyd-zygote') &&
		    procs.filter((p) => p.comm === 'heavyd-worker').length >= 3;
	}, HANG, 'the zygote and three agent workers')
	    .catch(() => assert.fail(`no zygote and three workers: ${describe(procs)}`));
	process.kill(srv.pid, 'SIGKILL');
	await srv.exited;
	let left = procs;
	try {
		await waitFor(() => (left = stillAlive(procs)).length === 0, SOON, 'orphans to exit');
	} catch {
		assert.fail(`left behind after SIGKILL of heavyd: ${describe(left)}`);
	}
});

// SIGTERM drains (drain.test.mjs); hanging agents outlast the drain
// timeout, and are killed at its end.
test('SIGTERM mid-task drains, then kills hanging agents at the drain timeout and exits 0',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv } = await setup(t, { env: { HEAVY_DRAIN_TIMEOUT: '2' } });
	const { call } = await startHangingCall(srv);
	const procs = srv.seen();
	process.kill(srv.pid, 'SIGTERM');
	assert.equal(await Promise.race([srv.exited, expire(GRACE)]), null,
	    'exited at once: no drain');
	const { result } = await call;
	assert.match(result.content[0].text, /^interrupted by shutdown/, JSON.stringify(result));
	const ex = await Promise.race([srv.exited, expire(SOON)]);
	assert.ok(ex, `heavyd did not exit within ${SOON / 1000} s of its drain timeout`);
	assert.deepEqual(ex, { code: 0, signal: null }, `exit status; stderr:\n${srv.stderr()}`);
	let left = procs;
	try {
		await waitFor(() => (left = stillAlive(procs)).length === 0, SOON, 'children to exit');
	} catch {
		assert.fail(`left behind after SIGTERM: ${describe(left)}`);
	}
	if (IS_ASAN)
		assert.doesNotMatch(srv.stderr(), /Sanitizer/);
});

test('stdin EOF mid-task kills the workers and exits 0', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv } = await setup(t);
	await startHangingCall(srv);
	await srv.shutdown(); // closes stdin; asserts exit 0 and no process left
});
