// Orchestrations against the mock: the happy path, retries, fatal HTTP
// errors, planner fallback, and the API key staying out of the children.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import { test } from 'node:test';

import { checkOk, checkProgress, checkShape, progressIndex } from './checks.mjs';
import { TEST_TIMEOUT, describe, setup, sleep, waitFor } from './lib.mjs';

test('four agents are planned, run and synthesized', { timeout: TEST_TIMEOUT }, async (t) => {
	// HEAVY_WORKER unset: heavyd must find its worker itself.
	const { srv, mock } = await setup(t, { worker: null });
	const { result, progress } = await srv.orchestrate({ query: 'Why is the sky blue?', num_agents: 4 });
	assert.notEqual(result.isError, true, JSON.stringify(result));
	const sc = checkShape(result, 4);
	assert.match(sc.answer, /^Synthesized answer over 4 responses\./);
	assert.equal(sc.synthesized, true);
	assert.equal(sc.planner_fallback, false);
	assert.equal(sc.planner_error, null);
	assert.equal(sc.synthesis_error, null);
	sc.agents.forEach(checkOk);
	assert.equal(new Set(sc.agents.map((a) => a.question)).size, 4, 'questions are not distinct');
	assert.ok(sc.usage.total_tokens > 0, JSON.stringify(sc.usage));
	assert.equal(sc.usage.total_tokens, sc.usage.prompt_tokens + sc.usage.completion_tokens);
	assert.equal(sc.usage.llm_calls, 6, JSON.stringify(sc.usage));
	assert.equal(sc.usage.retries, 0);

	const st = await mock.stats();
	assert.deepEqual({ planner: st.planner, agent: st.agent, synthesis: st.synthesis, errors: st.errors },
	    { planner: 1, agent: 4, synthesis: 1, errors: 0 }, JSON.stringify(st));

	checkProgress(progress, 6);
	const q = progressIndex(progress, /questions ready/i);
	const s = progressIndex(progress, /synthesizing/i);
	for (let k = 1; k <= 4; k++) {
		const i = progressIndex(progress, new RegExp(`agent ${k} done`, 'i'));
		assert.ok(q < i && i < s, `agent ${k} done out of order: ${JSON.stringify(progress)}`);
	}
	// Anything sent after the response shows up as a client error:
	// shutdown() sees it, after a last round trip.
	await srv.shutdown();
});

test('429 answers are retried; a 401 fails at once naming the key', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv, mock } = await setup(t, { env: { HEAVY_RETRY_BASE_MS: '50' } });
	const a = await srv.orchestrate({ query: 'Retry me [[agent:flaky:429:1]]', num_agents: 4 });
	assert.notEqual(a.result.isError, true, JSON.stringify(a.result));
	const sc = checkShape(a.result, 4);
	sc.agents.forEach(checkOk);
	assert.equal(sc.synthesized, true);
	assert.ok(sc.usage.retries >= 4, `usage.retries: ${JSON.stringify(sc.usage)}`);

	const before = await mock.stats();
	const b = await srv.orchestrate({ query: 'Bad key [[all:status:401]]', num_agents: 4 });
	const after = await mock.stats();
	assert.equal(b.result.isError, true, JSON.stringify(b.result));
	assert.match(b.result.content[0].text, /api[ _-]?key/i, b.result.content[0].text);
	assert.equal(after.requests - before.requests, 1,
	    `a 401 must not be retried nor followed by more calls: ${JSON.stringify({ before, after })}`);
	if (b.result.structuredContent)
		assert.equal(b.result.structuredContent.usage?.retries ?? 0, 0);
	await srv.shutdown();
});

/* A loopback port nothing listens on: listened on, then closed. */
async function closedPort() {
	const srv = net.createServer();
	await new Promise((r) => srv.listen(0, '127.0.0.1', r));
	const { port } = srv.address();
	await new Promise((r) => srv.close(r));
	return port;
}

test('an unreachable endpoint stops the task after the planner\'s retries; no agent runs',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const port = await closedPort();
	const base = `http://127.0.0.1:${port}/v1`;
	const url = `${base}/chat/completions`;
	const { srv } = await setup(t, { noMock: true, env: { HEAVY_BASE_URL: base, HEAVY_MAX_RETRIES: '4' } });
	const { result, sc, progress } = await srv.orchestrate({ query: 'Anyone there?', num_agents: 4 });
	const text = result.content[0].text;
	assert.equal(result.isError, true, JSON.stringify(result));
	assert.ok(text.includes(`cannot connect to ${url}: Connection refused`), text);
	assert.ok(sc.planner_error.startsWith(`cannot connect to ${url}: Connection refused`),
	    sc.planner_error);
	assert.equal(sc.agents.length, 4);
	for (const a of sc.agents) {
		assert.equal(a.status, 'failed', JSON.stringify(a));
		assert.match(a.error, /^not started: cannot connect to /, JSON.stringify(a));
		assert.equal(a.usage?.llm_calls ?? 0, 0, `agent ${a.index} made a call`);
	}
	// The planner's retries, as configured (HEAVY_MAX_RETRIES 4), and only those.
	assert.equal(sc.usage.llm_calls, 5, JSON.stringify(sc.usage));
	assert.equal(sc.usage.retries, 4, JSON.stringify(sc.usage));
	const esc = url.replace(/[.\/]/g, '\\$&');
	const retry = `planner: retrying in \\d+\\.\\d s after: cannot connect: Connection refused \\(${esc}\\)`;
	assert.ok(progress.some((p) => new RegExp(`^${retry}$`).test(p.message)),
	    JSON.stringify(progress.map((p) => p.message)));
	// The log says it too (stderr is another pipe: wait for it, not for a time).
	const logged = () => new RegExp(`info: task [0-9a-f]{32}: ${retry}\n`).test(srv.stderr()) &&
	    /warning: task [0-9a-f]{32} stopped: the planner failed: cannot connect to /.test(srv.stderr());
	await waitFor(logged).catch(() =>
	    assert.fail(`no retry and stop lines in the log:\n${srv.stderr()}`));
	await srv.shutdown();
});

test('planner garbage falls back to generated questions; garbage once is retried',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv, mock } = await setup(t);
	const a = await srv.orchestrate({ query: 'Plan badly [[planner:garbage]]', num_agents: 3 });
	assert.notEqual(a.result.isError, true, JSON.stringify(a.result));
	const sa = checkShape(a.result, 3);
	assert.equal(sa.planner_fallback, true);
	assert.equal(typeof sa.planner_error, 'string', 'planner_error should say what went wrong');
	sa.agents.forEach(checkOk);
	assert.equal(sa.synthesized, true);
	assert.equal((await mock.stats()).agent, 3);

	const b = await srv.orchestrate({ query: 'Plan badly once [[planner:garbage-once]]', num_agents: 3 });
	assert.notEqual(b.result.isError, true, JSON.stringify(b.result));
	const sb = checkShape(b.result, 3);
	assert.equal(sb.planner_fallback, false, JSON.stringify(sb));
	sb.agents.forEach(checkOk);
	assert.equal(sb.synthesized, true);
	await srv.shutdown();
});

test('the API key is in no child process environment or command line', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv } = await setup(t);
	const key = srv.key;
	let done = false, checked = 0;
	const comms = new Set();
	const leaks = [];
	const call = srv.orchestrate({ query: 'Slowly [[agent:latency:1500]]', num_agents: 3 })
	    .finally(() => { done = true; });
	while (!done) {
		for (const p of srv.descendants()) {
			for (const f of ['environ', 'cmdline']) {
				let data;
				try {
					data = fs.readFileSync(`/proc/${p.pid}/${f}`, 'latin1');
				} catch {
					continue; // gone meanwhile
				}
				checked++;
				comms.add(p.comm);
				if (data.includes(key))
					leaks.push(`${describe([p])} /proc/${p.pid}/${f}`);
			}
		}
		await sleep(50);
	}
	const { result } = await call;
	assert.notEqual(result.isError, true, JSON.stringify(result));
	assert.deepEqual(leaks, [], 'the API key leaked');
	assert.ok(comms.has('heavyd-zygote'), `never saw the zygote: ${[...comms]}`);
	assert.ok(comms.has('heavyd-worker'), `never saw a worker: ${[...comms]}`);
	assert.ok(checked > 0);
	await srv.shutdown();
});
