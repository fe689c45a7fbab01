// Aggregation strategies (consensus, ranked, best) and models per role,
// against the mock: the mock's [[review:...]] markers steer the peer
// reviews, and its /stats say which model each kind of request named.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

import { checkOk, checkProgress, checkShape, progressIndex } from './checks.mjs';
import { HEAVYD, IS_ASAN, STATE_DIR, describe, setup, tmpdir, waitFor } from './lib.mjs';
import { SOON, TEST_TIMEOUT } from './lib.mjs';

/*
 * Deadlines are checked on the server's clock (elapsed_ms) against the
 * task's own timeout, the event that would end a review not killed at its
 * deadline; the client's clock only gives lower bounds.
 */
const show = (x) => JSON.stringify(x);

async function resetMock(mock) {
	const r = await fetch(`http://127.0.0.1:${mock.port}/reset`, { method: 'POST' });
	assert.equal(r.status, 200);
}

/* The strategy fields every result carries. */
function checkStrategy(sc, strategy) {
	assert.equal(sc.strategy, strategy, show(sc));
	assert.ok(sc.strategy_fallback === null || typeof sc.strategy_fallback === 'string');
	assert.ok(Array.isArray(sc.review_errors), show(sc.review_errors));
	for (const a of sc.agents) {
		assert.equal(typeof a.model, 'string', show(a));
		assert.ok(a.rank === null || Number.isInteger(a.rank), show(a));
	}
}

test('ranked: peer reviews rank the answers; the synthesis is told the ranking', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv, mock } = await setup(t);
	// Reviewers put the answer with "Answer 3:" first, the rest by number.
	const { result, progress } = await srv.orchestrate({
		query: 'Which is best? [[review:prefer:Answer 3:]]', num_agents: 4,
		aggregation_strategy: 'ranked',
	});
	assert.notEqual(result.isError, true, show(result));
	const sc = checkShape(result, 4);
	checkStrategy(sc, 'ranked');
	sc.agents.forEach(checkOk);
	assert.equal(sc.strategy_fallback, null);
	assert.deepEqual(sc.review_errors, []);
	// Each reviewer ranks the 3 others: reviewer 1 sees 2,3,4 and says
	// 3,2,4; 2 says 3,1,4; 3 says 1,2,4; 4 says 3,1,2.  Score: the mean of
	// 1 - position/2 over the 3 reviews of each answer.
	assert.deepEqual(sc.ranking, [
		{ agent: 3, rank: 1, score: 1, reviews: 3 },
		{ agent: 1, rank: 2, score: 0.6667, reviews: 3 },
		{ agent: 2, rank: 3, score: 0.3333, reviews: 3 },
		{ agent: 4, rank: 4, score: 0, reviews: 3 },
	]);
	assert.deepEqual(sc.agents.map((a) => a.rank), [2, 3, 1, 4]);
	// The mock's synthesis lists the answers in the order its prompt
	// showed them, and only when the prompt carried peer-review ranks.
	assert.equal(sc.synthesized, true);
	assert.equal(sc.answer, 'Synthesized answer over 4 responses. Ranked order: 3, 1, 2, 4.');

	const st = await mock.stats();
	assert.deepEqual({ planner: st.planner, agent: st.agent, review: st.review, synthesis: st.synthesis },
	    { planner: 1, agent: 4, review: 4, synthesis: 1 }, show(st));
	assert.equal(sc.usage.llm_calls, 10, 'review calls count in the usage: ' + show(sc.usage));

	checkProgress(progress, 6);
	const r = progressIndex(progress, /^reviewing: 4 of 4 rankings in$/);
	const s = progressIndex(progress, /^synthesizing$/);
	assert.ok(progressIndex(progress, /agent 4 done/) < r && r < s, show(progress));
	await srv.shutdown();
});

test('best: the top-ranked answer comes back unsynthesized', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv, mock } = await setup(t);
	const { result, progress } = await srv.orchestrate({
		query: 'Pick one [[review:prefer:Answer 2:]]', num_agents: 3, aggregation_strategy: 'best',
	});
	assert.notEqual(result.isError, true, show(result));
	const sc = checkShape(result, 3);
	checkStrategy(sc, 'best');
	assert.equal(sc.synthesized, false);
	assert.equal(sc.strategy_fallback, null);
	assert.match(sc.answer, /^Answer 2: findings for Sub-question 2\b/, sc.answer);
	assert.deepEqual(sc.ranking.map((r) => [r.agent, r.rank]), [[2, 1], [1, 2], [3, 3]]);
	const st = await mock.stats();
	assert.equal(st.synthesis, 0, `no synthesis call: ${show(st)}`);
	assert.equal(st.review, 3, show(st));
	checkProgress(progress, 5);
	progressIndex(progress, /^reviewing: 3 of 3 rankings in$/);
	assert.ok(!progress.some((p) => /synthesizing/.test(p.message ?? '')), show(progress));

	// Two answers: each reviewer ranks both, its own included.
	await resetMock(mock);
	const two = await srv.orchestrate({
		query: 'Pick of two [[review:prefer:Answer 2:]]', num_agents: 2, aggregation_strategy: 'best',
	});
	const s2 = checkShape(two.result, 2);
	assert.match(s2.answer, /^Answer 2:/);
	assert.deepEqual(s2.ranking, [
		{ agent: 2, rank: 1, score: 1, reviews: 2 },
		{ agent: 1, rank: 2, score: 0, reviews: 2 },
	]);
	assert.equal((await mock.stats()).review, 2);
	await srv.shutdown();
});

test('an invalid ranking is asked again once; a reviewer that stays invalid is left out and reported',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv, mock } = await setup(t, { env: { HEAVY_AGENT_MODELS: 'm-a,m-b,m-c' } });
	const { result } = await srv.orchestrate({
		query: 'Judge [[review:invalid-once]] [[review:invalid-model:m-b]]', num_agents: 3,
		aggregation_strategy: 'ranked',
	});
	assert.notEqual(result.isError, true, show(result));
	const sc = checkShape(result, 3);
	checkStrategy(sc, 'ranked');
	assert.deepEqual(sc.agents.map((a) => a.model), ['m-a', 'm-b', 'm-c']);
	assert.equal(sc.review_errors.length, 1, show(sc.review_errors));
	const e = sc.review_errors[0];
	assert.deepEqual([e.reviewer, e.model, e.status], [2, 'm-b', 'invalid'], show(e));
	assert.match(e.error, /invalid ranking: label [A-C] is missing/, show(e));
	// Reviewers 1 and 3 ranked by answer number: 1 saw 2,3; 3 saw 1,2.
	assert.deepEqual(sc.ranking, [
		{ agent: 1, rank: 1, score: 1, reviews: 1 },
		{ agent: 2, rank: 2, score: 0.5, reviews: 2 },
		{ agent: 3, rank: 3, score: 0, reviews: 1 },
	]);
	assert.equal(sc.synthesized, true);
	assert.equal((await mock.stats()).review, 6, 'every reviewer needed its one re-ask');
	await srv.shutdown();
});

test('a hanging review is killed at its deadline and the task completes', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv, mock } = await setup(t, { env: { HEAVY_AGENT_MODELS: 'm-a,m-b,m-c' } });
	// ranked: the reviews get half the ~6 s the agents left.
	const a = await srv.orchestrate({
		query: 'Slow judge [[review:hang-model:m-b]]', num_agents: 3, timeout: 6,
		aggregation_strategy: 'ranked',
	});
	assert.notEqual(a.result.isError, true, show(a.result));
	const sa = checkShape(a.result, 3);
	assert.ok(a.elapsed >= 2500 && sa.elapsed_ms < 5500,
	    `ranked took ${a.elapsed} ms (${sa.elapsed_ms} ms on the server), expected about 3 s, before the 6 s timeout`);
	assert.equal(sa.review_errors.length, 1, show(sa.review_errors));
	assert.deepEqual([sa.review_errors[0].reviewer, sa.review_errors[0].status], [2, 'timed_out']);
	assert.match(sa.review_errors[0].error, /SIGKILL/);
	assert.equal(sa.synthesized, true);
	assert.equal(sa.ranking.length, 3, show(sa.ranking));
	checkProgress(a.progress, 5);
	assert.ok(a.progress.some((p) => /working: reviewing, 2 of 3 rankings in/.test(p.message ?? '')),
	    `no heartbeat while reviewing: ${show(a.progress.map((p) => p.message))}`);
	await waitFor(() => srv.workers().length === 0, SOON,
	    `no worker after the call (left: ${describe(srv.workers())})`);

	// best: every review hangs; all but a small margin of the time goes to
	// them, then the answers come back concatenated, flagged.
	await resetMock(mock);
	const b = await srv.orchestrate({
		query: 'Silent judges [[review:hang]]', num_agents: 3, timeout: 3, aggregation_strategy: 'best',
	});
	assert.notEqual(b.result.isError, true, show(b.result));
	const sb = checkShape(b.result, 3);
	assert.ok(b.elapsed >= 2500 && sb.elapsed_ms < 4000,
	    `best took ${b.elapsed} ms (${sb.elapsed_ms} ms on the server), deadline 3 s`);
	assert.equal(sb.ranking, null);
	assert.equal(sb.synthesized, false);
	assert.match(sb.strategy_fallback, /every review failed/);
	assert.deepEqual(sb.review_errors.map((e) => e.status), ['timed_out', 'timed_out', 'timed_out']);
	assert.match(sb.answer, /^## Agent 1\n\nAnswer 1:[^]*## Agent 3\n\nAnswer 3:/);
	assert.deepEqual(sb.agents.map((x) => x.rank), [null, null, null]);
	assert.equal((await mock.stats()).synthesis, 0);
	await waitFor(() => srv.workers().length === 0, SOON,
	    `no worker after the call (left: ${describe(srv.workers())})`);
	await srv.shutdown();
});

test('every review failing: ranked falls back to plain synthesis; one answer is not ranked',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv, mock } = await setup(t);
	const a = await srv.orchestrate({
		query: 'No judges [[review:status:400]]', num_agents: 3, aggregation_strategy: 'ranked',
	});
	const sa = checkShape(a.result, 3);
	assert.match(sa.strategy_fallback, /every review failed: plain consensus synthesis/);
	assert.equal(sa.ranking, null);
	assert.equal(sa.review_errors.length, 3);
	assert.equal(sa.synthesized, true);
	assert.equal(sa.answer, 'Synthesized answer over 3 responses.', 'no ranking told');

	await resetMock(mock);
	const b = await srv.orchestrate({ query: 'Alone', num_agents: 1, aggregation_strategy: 'best' });
	const sb = checkShape(b.result, 1);
	assert.match(sb.answer, /^Answer 1:/);
	assert.match(sb.strategy_fallback, /one successful answer/);
	assert.equal((await mock.stats()).review, 0);

	const c = await srv.orchestrate({ query: 'Default', num_agents: 2 });
	const sc = checkShape(c.result, 2);
	checkStrategy(sc, 'consensus');
	assert.equal(sc.ranking, null);
	assert.equal(sc.strategy_fallback, null);

	const bad = await srv.orchestrate({ query: 'x', aggregation_strategy: 'voting' });
	assert.equal(bad.result.isError, true);
	assert.match(bad.result.content[0].text, /'aggregation_strategy'.*consensus, ranked, best/);
	await srv.shutdown();
});

test('models per role reach the LLM; the model argument overrides them all', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv, mock } = await setup(t, {
		env: {
			HEAVY_PLANNER_MODEL: 'p/planner', HEAVY_SYNTHESIS_MODEL: 's/synth',
			HEAVY_AGENT_MODELS: 'a/one, a/two', HEAVY_AGGREGATION_STRATEGY: 'ranked',
		},
	});
	const a = await srv.orchestrate({ query: 'Mixture', num_agents: 3 });
	const sa = checkShape(a.result, 3);
	checkStrategy(sa, 'ranked');
	assert.deepEqual(sa.agents.map((x) => x.model), ['a/one', 'a/two', 'a/one']);
	const st = await mock.stats();
	assert.deepEqual(st.models, {
		planner: { 'p/planner': 1 },
		agent: { 'a/one': 2, 'a/two': 1 },
		review: { 'a/one': 2, 'a/two': 1 },
		synthesis: { 's/synth': 1 },
	});

	await resetMock(mock);
	const b = await srv.orchestrate({ query: 'One model', num_agents: 3, model: 'x/override' });
	const sb = checkShape(b.result, 3);
	assert.deepEqual(sb.agents.map((x) => x.model), ['x/override', 'x/override', 'x/override']);
	assert.deepEqual((await mock.stats()).models, {
		planner: { 'x/override': 1 },
		agent: { 'x/override': 3 },
		review: { 'x/override': 3 },
		synthesis: { 'x/override': 1 },
	});
	await srv.shutdown();
});

test('the config file sets the strategy and the models per role; bad values name file:line:key',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const dir = tmpdir('strategies');
	t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
	const file = path.join(dir, 'config.yaml');
	fs.writeFileSync(file, 'orchestrator:\n  aggregation_strategy: best\n' +
	    '  planner_model: "f/planner"\n  synthesis_model: f/synth\n' +
	    '  agent_models:\n    - f/one\n    - "f/two"\n');
	const env = { PATH: process.env.PATH, HEAVY_STATE_DIR: STATE_DIR, HEAVY_CONFIG: file,
	    OPENROUTER_API_KEY: 'sk-x' };
	const shown = execFileSync(HEAVYD, ['--check-config'], { env, encoding: 'utf8' });
	assert.match(shown, /^aggregation_strategy: best$/m);
	assert.match(shown, /^planner_model: f\/planner$/m);
	assert.match(shown, /^synthesis_model: f\/synth$/m);
	assert.match(shown, /^agent_models: \["f\/one", "f\/two"\]  # round-robin$/m);

	const { srv, mock } = await setup(t, { env: { HEAVY_CONFIG: file } });
	const { result } = await srv.orchestrate({ query: 'From the file [[review:prefer:Answer 2:]]', num_agents: 2 });
	const sc = checkShape(result, 2);
	checkStrategy(sc, 'best');
	assert.match(sc.answer, /^Answer 2:/);
	assert.deepEqual((await mock.stats()).models, {
		planner: { 'f/planner': 1 },
		agent: { 'f/one': 1, 'f/two': 1 },
		review: { 'f/one': 1, 'f/two': 1 },
	});
	await srv.shutdown();

	const bad = [
		['orchestrator:\n  agent_models: []\n', /config\.yaml:2: orchestrator\.agent_models: expected a non-empty list/],
		['orchestrator:\n  agent_models:\n    - a/b\n    - 42\n', /config\.yaml:4: orchestrator\.agent_models\[1\]: expected a model id \(a string/],
		['orchestrator:\n  planner_model: ""\n', /config\.yaml:2: orchestrator\.planner_model: expected a model id, got an empty string/],
		['orchestrator:\n  aggregation_strategy: voting\n', /config\.yaml:2: orchestrator\.aggregation_strategy: expected one of consensus, ranked, best/],
	];
	for (const [yaml, re] of bad) {
		fs.writeFileSync(file, yaml);
		const r = spawnSync(HEAVYD, ['--check-config'], { env, encoding: 'utf8' });
		assert.notEqual(r.status, 0, `accepted:\n${yaml}`);
		assert.match(r.stderr, re);
	}
	const r = spawnSync(HEAVYD, ['--check-config'], {
		env: { PATH: process.env.PATH, HEAVY_STATE_DIR: STATE_DIR, HEAVY_AGENT_MODELS: 'a,,b' }, encoding: 'utf8',
	});
	assert.notEqual(r.status, 0);
	assert.match(r.stderr, /HEAVY_AGENT_MODELS: item 2: expected a model id, got an empty string/);
});
