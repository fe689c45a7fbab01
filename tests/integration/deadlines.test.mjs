// Deadlines: agents that hang, spin or block are killed in time and the
// call still answers from the others.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { checkOk, checkProgress, checkShape } from './checks.mjs';
import { setup, waitFor, describe } from './lib.mjs';
import { TEST_TIMEOUT } from './lib.mjs';

/*
 * Timing is checked on the server's clock (elapsed_ms), against the next
 * event that would mean the deadline was missed: the task's own deadline.
 * The client's clock only proves that the call returned (a hanging agent
 * never returns by itself; HANG catches that).
 */

function checkTimedOut(a) {
	assert.equal(a.status, 'timed_out', `agent ${a.index}: ${JSON.stringify(a)}`);
	assert.equal(a.signal, 'SIGKILL', `agent ${a.index}: ${JSON.stringify(a)}`);
	assert.equal(typeof a.error, 'string', `agent ${a.index} has no error text`);
}

test('a hanging agent is killed at the deadline; the rest is synthesized', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv } = await setup(t);
	const { result, progress, elapsed } = await srv.orchestrate(
	    { query: 'One agent hangs [[a2:hang]]', num_agents: 4, timeout: 8 });
	assert.ok(elapsed >= 6000, `returned after ${elapsed} ms, before the agent deadline`);
	assert.notEqual(result.isError, true, JSON.stringify(result));
	const sc = checkShape(result, 4);
	checkTimedOut(sc.agents[1]);
	// Killed at T - min(60, T/4) = 6 s after the task's start, 2 s before
	// its 8 s.  The client's clock starts before the server's (the call
	// is sent first), and "agent 2 timed out" arrives after the kill: its
	// arrival is at least 6 s.  (An agent's own elapsed_ms is no help: it
	// starts when its worker does, which under load comes well after the
	// planner's "questions ready".)
	const killed = progress.find((p) => /agent 2 timed out/i.test(p.message ?? ''));
	assert.ok(killed, `no "agent 2 timed out" progress: ${JSON.stringify(progress.map((p) => p.message))}`);
	assert.ok(killed.t >= 5990 && sc.agents[1].elapsed_ms < 8000,
	    `agent 2 killed ${killed.t} ms after the call was sent (elapsed_ms ${sc.agents[1].elapsed_ms}), expected at 6000`);
	assert.ok(sc.agents[1].elapsed_ms <= sc.elapsed_ms, `agent 2 outlived its task: ${JSON.stringify(sc)}`);
	for (const i of [0, 2, 3])
		checkOk(sc.agents[i]);
	assert.equal(sc.synthesized, true);
	assert.match(sc.answer, /^Synthesized answer over 3 responses\./);

	await waitFor(() => srv.workers().length === 0, undefined,
	    `no worker after the call (left: ${describe(srv.workers())})`);

	// Progress: the steps, and heartbeats (HEAVY_HEARTBEAT=1) in between:
	// one a second of the server's clock ("working: ... (Ns)"), at most one
	// missed (a late beat is rescheduled from when it ran).
	checkProgress(progress, 6);
	const beats = progress.map((p) => /^working: .*\((\d+)s\)$/.exec(p.message ?? ''))
	    .filter(Boolean).map((m) => Number(m[1]));
	const want = Math.floor(sc.elapsed_ms / 1000) - 1;
	assert.ok(beats.length >= want,
	    `${beats.length} heartbeats in ${sc.elapsed_ms} ms (server clock), want ${want}: ${JSON.stringify(progress)}`);
	await srv.shutdown();
});

test('agents spinning the CPU or blocked in read are killed at the deadline', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv } = await setup(t, { worker: 'test' });
	const { result, elapsed } = await srv.orchestrate({
		query: 'Misbehave [[a1:tool:test_spin:{}]] [[a2:tool:test_block:{}]]',
		num_agents: 4, timeout: 8,
	});
	assert.ok(elapsed >= 6000, `returned after ${elapsed} ms, before the agent deadline`);
	assert.notEqual(result.isError, true, JSON.stringify(result));
	const sc = checkShape(result, 4);
	checkTimedOut(sc.agents[0]);
	checkTimedOut(sc.agents[1]);
	checkOk(sc.agents[2]);
	checkOk(sc.agents[3]);
	assert.equal(sc.synthesized, true);
	assert.match(sc.answer, /^Synthesized answer over 2 responses\./);
	await waitFor(() => srv.workers().length === 0, undefined,
	    `no worker after the call (left: ${describe(srv.workers())})`);
	await srv.shutdown();
});
