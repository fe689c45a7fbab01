// Usage, cost and budgets: every result reports tokens and the provider's
// cost; a task that reaches its token or cost budget stops its agents and
// says why.  The mock's [[usage:N]] marker makes a call report N tokens.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { setup, waitFor, describe } from './lib.mjs';
import { TEST_TIMEOUT } from './lib.mjs';

test('a token budget reached by an agent stops the others at once', { timeout: TEST_TIMEOUT }, async (t) => {
	const { mock, srv } = await setup(t);
	const { result, sc, elapsed } = await srv.orchestrate({
		query: 'Budget [[a2:usage:100000]] [[a2:latency:400]] [[a2:tool:calculate:{"expression":"1+1"}]] [[a3:hang]]',
		num_agents: 3, timeout: 30, max_total_tokens: 50000,
	});
	// On the server's clock: well before agent 3's 22.5 s deadline would end it.
	assert.ok(sc.elapsed_ms < 15000, `stopped after ${sc.elapsed_ms} ms (${elapsed} ms for the client), not at the 22.5 s agent deadline`);
	assert.notEqual(result.isError, true, JSON.stringify(result));
	assert.match(sc.budget.stopped, /^token budget reached: \d+ tokens used of max_total_tokens 50000$/);
	assert.equal(sc.budget.max_total_tokens, 50000);
	assert.ok(sc.usage.total_tokens >= 100000, JSON.stringify(sc.usage));
	assert.equal(sc.agents[0].status, 'ok');
	for (const i of [1, 2]) {
		assert.equal(sc.agents[i].status, 'failed', JSON.stringify(sc.agents[i]));
		assert.match(sc.agents[i].error, /^stopped: token budget reached/);
	}
	assert.ok(sc.agents[1].usage.total_tokens >= 100000, 'the stopped agent keeps what it used');
	assert.equal(sc.synthesized, false);
	assert.match(result.content[0].text, /^\(Stopped early, token budget reached/);
	const stats = await mock.stats();
	assert.equal(stats.synthesis, 0, 'no synthesis call after the budget is reached');
	await waitFor(() => srv.workers().length === 0, 15000,
	    `no worker after the stop (left: ${describe(srv.workers())})`);
	await srv.shutdown();
});

test('a budget reached by the planner stops the task before any agent', { timeout: TEST_TIMEOUT }, async (t) => {
	const { mock, srv } = await setup(t);
	const { result, sc } = await srv.orchestrate({
		query: 'Plan big [[planner:usage:5000]]', num_agents: 3, max_total_tokens: 1000,
	});
	assert.equal(result.isError, true);
	assert.match(result.content[0].text, /^The orchestration stopped: token budget reached: 5000 tokens used/);
	assert.match(sc.budget.stopped, /token budget reached/);
	assert.equal((await mock.stats()).agent, 0, 'no agent ran');
	await srv.shutdown();
});

test('a cost budget asks the provider for cost and binds on it', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv } = await setup(t);
	// The mock charges a micro-dollar a token when asked (as OpenRouter).
	const ok = await srv.orchestrate({ query: 'Cheap question', num_agents: 2, max_cost_usd: 10 });
	assert.notEqual(ok.result.isError, true);
	assert.ok(ok.sc.usage.cost_usd > 0, `cost reported: ${JSON.stringify(ok.sc.usage)}`);
	assert.equal(ok.sc.budget.stopped, null);
	const sum = ok.sc.agents.reduce((s, a) => s + a.usage.cost_usd, 0);
	assert.ok(sum <= ok.sc.usage.cost_usd + 1e-9, 'agents are part of the task total');

	const big = await srv.orchestrate({
		query: 'Costly [[a1:usage:200000]] [[a2:hang]]', num_agents: 2, timeout: 30, max_cost_usd: 0.1,
	});
	assert.match(big.sc.budget.stopped, /^cost budget reached: \$0\.2\d+ spent of max_cost_usd \$0\.100000$/);
	assert.equal(big.sc.budget.max_cost_usd, 0.1);
	await srv.shutdown();
});

test('bad budgets are refused with the argument named', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv } = await setup(t);
	for (const [args, name] of [[{ max_total_tokens: 0 }, 'max_total_tokens'],
	    [{ max_total_tokens: 1.5 }, 'max_total_tokens'], [{ max_cost_usd: -1 }, 'max_cost_usd'],
	    [{ max_cost_usd: 'lots' }, 'max_cost_usd']]) {
		const { result } = await srv.orchestrate({ query: 'q', ...args });
		assert.equal(result.isError, true);
		assert.match(result.content[0].text, new RegExp(`invalid argument '${name}'`));
	}
	await srv.shutdown();
});
