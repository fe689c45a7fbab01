// Hedging (hedge_after_ms): heavyd-egress sends an LLM call a second time
// when the first has had no byte back for that long, keeps whichever
// answers first and cancels the other.  Off by default; a hedge takes a
// permit like any call, so a full cap, a spent rpm budget or a paused
// upstream means no hedge; a worker killed at its deadline leaves neither
// transfer behind.  The mock's [[first-latency:MS]] holds only the first
// arrival of a text, so the hedge (the same text again) answers at once.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { checkOk, checkShape } from './checks.mjs';
import { setup, waitFor } from './lib.mjs';
import { TEST_TIMEOUT } from './lib.mjs';

const CANCELLED = /heavyd-egress\[\d+\]: info: worker \d+ went away: (\d+) transfers? cancelled/;
const NO_HEDGE = /heavyd-egress\[\d+\]: debug: worker \d+: no hedge for call \d+: the governor has no permit free/;

/* Agent 1's call reports 10 tokens: 1 of prompt, 9 of completion. */
const HELD = '[[a1:usage:10]]';

function hedges(u) {
	return { hedged_calls: u.hedged_calls, hedges_won: u.hedges_won };
}

test('a call with no first byte by hedge_after_ms gets one hedge, which answers; the first transfer is cancelled', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv, mock } = await setup(t);
	const { result, sc } = await srv.orchestrate({
		query: `Hedged ${HELD} [[a1:first-latency:600000]]`, num_agents: 1,
		hedge_after_ms: 2000, timeout: 120,
	});
	assert.notEqual(result.isError, true, JSON.stringify(result));
	checkShape(result, 1);
	checkOk(sc.agents[0]);
	const a = sc.agents[0];
	assert.deepEqual(hedges(a.usage), { hedged_calls: 1, hedges_won: 1 }, JSON.stringify(a.usage));
	assert.deepEqual(hedges(sc.usage), { hedged_calls: 1, hedges_won: 1 }, JSON.stringify(sc.usage));
	// The loser billed as the winner's prompt: 1 + 1, and 9 of completion.
	assert.equal(a.usage.llm_calls, 1);
	assert.equal(a.usage.prompt_tokens, 2, JSON.stringify(a.usage));
	assert.equal(a.usage.completion_tokens, 9, JSON.stringify(a.usage));
	assert.equal(a.usage.total_tokens, 11, JSON.stringify(a.usage));
	// The planner, agent 1 twice (one agent: no synthesis); the held
	// first transfer went.
	await waitFor(async () => (await mock.stats()).cancelled === 1, undefined,
	    'the first transfer to be cancelled at the mock');
	const st = await mock.stats();
	assert.deepEqual([st.requests, st.planner, st.agent, st.synthesis], [3, 1, 2, 0], JSON.stringify(st));
	assert.equal(st.cancelled, 1);
	assert.doesNotMatch(srv.stderr(), CANCELLED, 'no worker went away with a transfer');
	await srv.shutdown();
});

/*
 * The hedge fails (a 503) while the first transfer still runs: it is
 * dropped, not retried nor answered, and the first transfer answers.
 */
test('a hedge that fails while the first transfer runs is dropped; the first answers', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv, mock } = await setup(t);
	const { result, sc } = await srv.orchestrate({
		query: `Hedge fails ${HELD} [[a1:first-latency:4000]] [[a1:repeat-status:503]]`,
		num_agents: 1, hedge_after_ms: 500, timeout: 120,
	});
	assert.notEqual(result.isError, true, JSON.stringify(result));
	checkOk(sc.agents[0]);
	const u = sc.agents[0].usage;
	assert.deepEqual(hedges(u), { hedged_calls: 1, hedges_won: 0 }, JSON.stringify(u));
	assert.deepEqual([u.llm_calls, u.retries, u.prompt_tokens], [1, 0, 2], JSON.stringify(u));
	const st = await mock.stats();
	assert.deepEqual([st.agent, st.errors, st.cancelled], [2, 1, 0], JSON.stringify(st));
	await srv.shutdown();
});

test('off by default: a slow call is never hedged', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv, mock } = await setup(t);
	const { result, sc } = await srv.orchestrate({
		query: `Not hedged ${HELD} [[a1:first-latency:1500]]`, num_agents: 1, timeout: 120,
	});
	assert.notEqual(result.isError, true, JSON.stringify(result));
	checkOk(sc.agents[0]);
	assert.deepEqual(hedges(sc.usage), { hedged_calls: 0, hedges_won: 0 }, JSON.stringify(sc.usage));
	assert.equal(sc.agents[0].usage.prompt_tokens, 1, JSON.stringify(sc.agents[0].usage));
	const st = await mock.stats();
	assert.deepEqual([st.requests, st.agent, st.cancelled], [2, 1, 0], JSON.stringify(st));
	await srv.shutdown();
});

/*
 * The configured hedge_after_ms applies to every call; with
 * egress_max_calls 1 the call in flight holds the only permit, so its hedge
 * is refused and it answers alone.
 */
test('a hedge takes a permit: none past egress_max_calls', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv, mock } = await setup(t, { env: { HEAVY_HEDGE_AFTER_MS: '300',
	    HEAVY_EGRESS_MAX_CALLS: '1', HEAVY_DEBUG: '1' } });
	const { result, sc } = await srv.orchestrate({
		query: `Capped ${HELD} [[a1:first-latency:1500]]`, num_agents: 1, timeout: 120,
	});
	assert.notEqual(result.isError, true, JSON.stringify(result));
	checkOk(sc.agents[0]);
	assert.match(srv.stderr(), NO_HEDGE);
	assert.deepEqual(hedges(sc.usage), { hedged_calls: 0, hedges_won: 0 }, JSON.stringify(sc.usage));
	const st = await mock.stats();
	assert.deepEqual([st.agent, st.cancelled], [1, 0], JSON.stringify(st));
	await srv.shutdown();
});

/*
 * limits.egress_rpm 2: the planner's call and agent 1's spend the minute's
 * budget (one agent: no synthesis), so agent 1's hedge is refused.
 */
test('a hedge takes a permit: none past the rpm budget', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv, mock } = await setup(t, { env: { HEAVY_EGRESS_RPM: '2', HEAVY_DEBUG: '1' } });
	const { sc } = await srv.orchestrate({
		query: `Budget ${HELD} [[a1:first-latency:1500]]`, num_agents: 1,
		hedge_after_ms: 300, timeout: 120,
	});
	checkOk(sc.agents[0]);
	assert.match(srv.stderr(), NO_HEDGE);
	assert.deepEqual(hedges(sc.agents[0].usage), { hedged_calls: 0, hedges_won: 0 });
	const st = await mock.stats();
	assert.deepEqual([st.requests, st.agent, st.cancelled], [2, 1, 0], JSON.stringify(st));
	await srv.shutdown();
});

/*
 * Agent 1's answer, let through once agent 2 is in its call, says the
 * budget is spent for 10 s (x-ratelimit-remaining-requests: 0): the
 * upstream is paused, and agent 2's hedge, due later, is refused.
 */
test('no hedge while the upstream is paused', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv, mock } = await setup(t, { env: { HEAVY_DEBUG: '1' } });
	const call = srv.orchestrate({
		query: 'Paused [[a1:gate]] [[a1:ratelimit:0:10s]] [[a2:first-latency:6000]]',
		num_agents: 2, hedge_after_ms: 3000, timeout: 120,
	});
	await waitFor(async () => { const s = await mock.stats(); return s.agent === 2 && s.held === 1; },
	    undefined, 'both agents in their calls, agent 1 held');
	await mock.open();
	const { result, sc } = await call;
	assert.notEqual(result.isError, true, JSON.stringify(result));
	sc.agents.forEach(checkOk);
	assert.match(srv.stderr(), /info: upstream \S+ has no requests left in its budget/);
	assert.match(srv.stderr(), NO_HEDGE);
	assert.deepEqual(hedges(sc.usage), { hedged_calls: 0, hedges_won: 0 }, JSON.stringify(sc.usage));
	const st = await mock.stats();
	assert.deepEqual([st.agent, st.cancelled], [2, 0], JSON.stringify(st));
	await srv.shutdown();
});

/*
 * Agent 2's call and its hedge are both held by the mock when the worker
 * is killed at its deadline: egress removes both at once.
 */
test('a worker killed mid-call leaves neither its call nor its hedge in egress', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv, mock } = await setup(t);
	// A deadline with room for a slow machine (valgrind) to get agent 2's
	// call and its hedge out first.
	const call = srv.orchestrate({
		query: 'Both held [[a2:latency:600000]]', num_agents: 2, hedge_after_ms: 500, timeout: 20,
	});
	await waitFor(async () => (await mock.stats()).agent === 3, undefined,
	    'agent 1, agent 2 and its hedge at the mock');
	const { result } = await call;
	const sc = checkShape(result, 2);
	checkOk(sc.agents[0]);
	assert.equal(sc.agents[1].status, 'timed_out', JSON.stringify(sc.agents[1]));
	await waitFor(() => CANCELLED.test(srv.stderr()), undefined,
	    'egress to cancel the killed worker\'s transfers');
	const lines = [...srv.stderr().matchAll(new RegExp(CANCELLED, 'g'))];
	assert.equal(lines.length, 1, srv.stderr());
	assert.equal(lines[0][1], '2', 'the call and its hedge');
	await waitFor(async () => (await mock.stats()).cancelled === 2, undefined,
	    'both transfers to close at the mock');
	assert.equal((await mock.stats()).agent, 3, 'no other call went out');
	await srv.shutdown();
});
