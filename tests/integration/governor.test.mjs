// The governor in heavyd-egress: permits go round-robin across tasks, a
// call waiting for one says so in its task's progress, and the budget of
// calls a minute (limits.egress_rpm) keeps a rate-limited upstream from
// ever answering 429.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { checkOk, checkShape } from './checks.mjs';
import { setup, waitFor } from './lib.mjs';
import { TEST_TIMEOUT } from './lib.mjs';

const WAITS = /heavyd-egress\[\d+\]: debug: an LLM call to \S+ waits for a permit/g;

function waits(srv) {
	return [...srv.stderr().matchAll(WAITS)].length;
}

/*
 * One call at a time (egress_max_calls 1).  Task A's 8 agents queue behind
 * its first, which the mock holds; then task B (1 agent) comes.  Each
 * release lets the held call go, and the governor gives the permit to the
 * task served longest ago: B's planner goes right after A's held agent,
 * not after A's other 7, and B's agent after one more of A's.  The order
 * is the mock's order of arrival.  B's agent waits, and its progress says
 * so.
 */
test('permits go round-robin across tasks, and a waiting call shows in progress', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv, mock } = await setup(t, { env: { HEAVY_EGRESS_MAX_CALLS: '1', HEAVY_DEBUG: '1' } });
	const a = srv.orchestrate({ query: 'Task A [[all:tag:A]] [[agent:gate]]', num_agents: 8, timeout: 120 });
	await waitFor(async () => (await mock.stats()).held === 1, undefined, 'task A\'s first agent held');
	await waitFor(() => waits(srv) >= 7, undefined, 'task A\'s 7 other agents to wait in egress');
	const notes = [];
	let bDone = false;
	const b = srv.orchestrate({ query: 'Task B [[all:tag:B]] [[agent:gate]]', num_agents: 1, timeout: 120 },
	    { onprogress: (p) => notes.push(p.message) });
	b.finally(() => { bDone = true; });
	await waitFor(() => waits(srv) >= 8, undefined, 'task B\'s planner to wait in egress');
	// The held agent goes; B's planner has the permit, then an agent of
	// A's.  Once B's agent waits in line too (however long its worker
	// took to start), each release lets the fairest go.
	await mock.release();
	await waitFor(() => waits(srv) >= 9, undefined, 'task B\'s agent to wait in egress');
	while (!bDone) {
		const held = await waitFor(async () => bDone || (await mock.stats()).held > 0,
		    undefined, 'a held call, or task B done');
		if (held !== true || !bDone)
			await mock.release();
	}
	const rb = await b;
	checkOk(checkShape(rb.result, 1).agents[0]);
	await mock.open();
	const ra = await a;
	checkShape(ra.result, 8).agents.forEach(checkOk);
	const all = (await mock.stats()).arrivals;
	const order = all.filter((s) => /^(planner|agent):[AB]$/.test(s));
	assert.deepEqual(order.slice(0, 5), ['planner:A', 'agent:A', 'planner:B', 'agent:A', 'agent:B'],
	    JSON.stringify(order));
	assert.equal(order.filter((s) => s === 'agent:A').length, 8, JSON.stringify(order));
	assert.ok(notes.some((n) => /^agent 1: waiting for the rate limit/.test(n)),
	    JSON.stringify(notes));
	await srv.shutdown();
});

/*
 * limits.egress_rpm against a mock that allows as many calls a window and
 * answers 429 beyond: 20 orchestrations need more calls than one window
 * allows, and none is refused: the governor holds the rest until the
 * window has room.  The mock's window is a real minute, like egress's.
 */
test('egress_rpm: 20 orchestrations against a rate-limited upstream, no 429', { timeout: TEST_TIMEOUT }, async (t) => {
	const RPM = 30;
	const { srv, mock } = await setup(t, { mockArgs: ['-r', String(RPM)],
	    env: { HEAVY_EGRESS_RPM: String(RPM), HEAVY_DEBUG: '1' } });
	const runs = [];
	for (let i = 0; i < 20; i++)
		runs.push(srv.orchestrate({ query: `Budgeted ${i}`, num_agents: 1, timeout: 240 },
		    { timeout: 240000 }));
	for (const { result } of await Promise.all(runs)) {
		const sc = checkShape(result, 1);
		checkOk(sc.agents[0]);
		assert.equal(sc.planner_error, null);
	}
	const st = await mock.stats();
	assert.ok(st.requests > RPM, `only ${st.requests} calls: the budget was never needed`);
	assert.equal(st.limited, 0, 'the mock answered 429');
	assert.match(srv.stderr(), /waits for a permit: .*limits\.egress_rpm spent/);
	await srv.shutdown();
});

/*
 * The remaining-budget headers: the planner's answer says no requests are
 * left until 10 minutes from now (x-ratelimit-remaining-requests: 0,
 * x-ratelimit-reset-requests: 10m0s).  Egress pauses the upstream so
 * long: the agents' calls wait in its line and none reaches the mock.
 */
test('a remaining budget of 0 pauses the upstream until its reset', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv, mock } = await setup(t);
	const { result } = await srv.orchestrate({ query: 'Spent [[planner:ratelimit:0:10m0s]]',
	    num_agents: 2, timeout: 10 });
	await waitFor(() => /info: upstream \S+ has no requests left in its budget: every call to it waits 600\.0 s/.test(srv.stderr()),
	    undefined, 'egress to pause the upstream');
	assert.equal((await mock.stats()).requests, 1, 'a call went out during the pause');
	assert.doesNotMatch(JSON.stringify(result), /Synthesized answer/);
	await srv.shutdown();
});
