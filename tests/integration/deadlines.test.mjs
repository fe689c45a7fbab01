// Deadlines: agents that hang, spin or block are killed in time and the
// call still answers from the others.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { checkOk, checkProgress, checkShape } from './checks.mjs';
import { IS_ASAN, setup, waitFor, describe } from './lib.mjs';

const SLACK = IS_ASAN ? 500 : 0; // the sanitizers slow start-up a little

function checkTimedOut(a) {
	assert.equal(a.status, 'timed_out', `agent ${a.index}: ${JSON.stringify(a)}`);
	assert.equal(a.signal, 'SIGKILL', `agent ${a.index}: ${JSON.stringify(a)}`);
	assert.equal(typeof a.error, 'string', `agent ${a.index} has no error text`);
}

test('a hanging agent is killed at the deadline; the rest is synthesized', { timeout: 20000 }, async (t) => {
	const { srv } = await setup(t);
	const { result, progress, elapsed } = await srv.orchestrate(
	    { query: 'One agent hangs [[a2:hang]]', num_agents: 4, timeout: 4 });
	assert.ok(elapsed < 5000 + SLACK, `returned after ${elapsed} ms, deadline 4 s + 1 s`);
	assert.notEqual(result.isError, true, JSON.stringify(result));
	const sc = checkShape(result, 4);
	checkTimedOut(sc.agents[1]);
	// Killed at T - min(60, T/4) = 3 s after the start.
	assert.ok(sc.agents[1].elapsed_ms >= 2500 && sc.agents[1].elapsed_ms <= 3800 + SLACK,
	    `agent 2 elapsed_ms ${sc.agents[1].elapsed_ms}, expected about 3000`);
	for (const i of [0, 2, 3])
		checkOk(sc.agents[i]);
	assert.equal(sc.synthesized, true);
	assert.match(sc.answer, /^Synthesized answer over 3 responses\./);

	await waitFor(() => srv.workers().length === 0, 500,
	    `no worker after the call (left: ${describe(srv.workers())})`);

	// Progress: the steps, and heartbeats (HEAVY_HEARTBEAT=1) in between.
	checkProgress(progress, 6);
	assert.ok(progress.some((p) => /agent 2 timed out/i.test(p.message ?? '')),
	    `no "agent 2 timed out" progress: ${JSON.stringify(progress.map((p) => p.message))}`);
	const times = [0, ...progress.map((p) => p.t), elapsed];
	for (let i = 1; i < times.length; i++)
		assert.ok(times[i] - times[i - 1] <= 1600 + SLACK,
		    `a ${times[i] - times[i - 1]} ms gap without progress: ${JSON.stringify(progress)}`);
	await srv.shutdown();
});

test('agents spinning the CPU or blocked in read are killed at the deadline', { timeout: 20000 }, async (t) => {
	const { srv } = await setup(t, { worker: 'test' });
	const { result, elapsed } = await srv.orchestrate({
		query: 'Misbehave [[a1:tool:test_spin:{}]] [[a2:tool:test_block:{}]]',
		num_agents: 4, timeout: 4,
	});
	assert.ok(elapsed < 5000 + SLACK, `returned after ${elapsed} ms, deadline 4 s + 1 s`);
	assert.notEqual(result.isError, true, JSON.stringify(result));
	const sc = checkShape(result, 4);
	checkTimedOut(sc.agents[0]);
	checkTimedOut(sc.agents[1]);
	checkOk(sc.agents[2]);
	checkOk(sc.agents[3]);
	assert.equal(sc.synthesized, true);
	assert.match(sc.answer, /^Synthesized answer over 2 responses\./);
	await waitFor(() => srv.workers().length === 0, 500,
	    `no worker after the call (left: ${describe(srv.workers())})`);
	await srv.shutdown();
});
