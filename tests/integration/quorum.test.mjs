// Quorum: with min_agents, once that many agents have answered and
// straggler_grace has passed, the agents still running are killed and the
// answers in are synthesized; the result lists them as cut_for_latency.
// A hanging agent ([[aN:hang]]) never answers by itself: a call that
// returns before its task's 300 s deadline proves the cut.  A gated agent
// ([[aN:gate]]) answers when the test says so.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { checkOk, checkShape } from './checks.mjs';
import { setup, startMock, waitFor, describe, jobsAlive } from './lib.mjs';
import { TEST_TIMEOUT } from './lib.mjs';

function checkCut(a) {
	assert.equal(a.status, 'cut_for_latency', `agent ${a.index}: ${JSON.stringify(a)}`);
	assert.equal(a.signal, 'SIGKILL', `agent ${a.index}: ${JSON.stringify(a)}`);
	assert.match(a.error, /^cut for latency: 3 of 4 agents had finished \(min_agents 3\)/);
}

/* Every worker seen under the server during the call is gone: the
 * straggler's was killed, not left to run to its deadline. */
async function checkNoWorkerLeft(srv) {
	const seen = srv.seen().filter((p) => p.comm === 'heavyd-worker');
	await waitFor(() => srv.workers().length === 0, undefined,
	    `no worker after the call (left: ${describe(srv.workers())})`);
	let left = [];
	await waitFor(() => (left = jobsAlive(seen)).length === 0, undefined,
	    `the straggler to die (left: ${describe(left)})`);
}

test('min_agents 3 of 4: a hanging straggler is cut, killed and listed', { timeout: TEST_TIMEOUT }, async (t) => {
	const { mock, srv } = await setup(t);
	// The other three answer only once the straggler is in its call, so
	// the cut finds it running however loaded the machine is.
	const call = srv.orchestrate({
		query: 'Quorum [[a1:gate]] [[a2:gate]] [[a3:gate]] [[a4:hang]]',
		num_agents: 4, min_agents: 3, straggler_grace: 0,
	});
	await waitFor(async () => (await mock.stats()).hangs === 1, undefined,
	    'the straggler to call the mock');
	await mock.open();
	const { result, sc, progress } = await call;
	assert.notEqual(result.isError, true, JSON.stringify(result));
	checkShape(result, 4);
	for (const i of [0, 1, 2])
		checkOk(sc.agents[i]);
	checkCut(sc.agents[3]);
	assert.deepEqual(sc.cut_for_latency, [4]);
	assert.deepEqual(sc.quorum, { min_agents: 3, straggler_grace: 0 });
	assert.equal(sc.synthesized, true);
	assert.match(sc.answer, /^Synthesized answer over 3 responses\./);
	assert.ok(progress.some((p) => /quorum: 1 agent cut for latency/.test(p.message ?? '')),
	    JSON.stringify(progress.map((p) => p.message)));
	assert.equal((await mock.stats()).hangs, 1, 'the straggler had called the mock');
	await checkNoWorkerLeft(srv);
	await srv.shutdown();
});

test('a straggler that answers within the grace is kept', { timeout: TEST_TIMEOUT }, async (t) => {
	const { mock, srv } = await setup(t);
	let opened = false;
	const { result, sc, progress } = await srv.orchestrate({
		query: 'Quorum, patient [[a2:gate]]', num_agents: 4, min_agents: 3,
		straggler_grace: 600,
	}, {
		// The quorum is in: now let agent 2 answer, well inside the grace.
		onprogress: (p) => {
			if (!opened && /quorum: 3 of 4 answers in; the stragglers have 600 s/
			    .test(p.message ?? '')) {
				opened = true;
				mock.open();
			}
		},
	});
	assert.ok(opened, `no quorum progress: ${JSON.stringify(progress.map((p) => p.message))}`);
	assert.notEqual(result.isError, true, JSON.stringify(result));
	checkShape(result, 4);
	for (const a of sc.agents)
		checkOk(a);
	assert.deepEqual(sc.cut_for_latency, []);
	assert.deepEqual(sc.quorum, { min_agents: 3, straggler_grace: 600 });
	assert.match(sc.answer, /^Synthesized answer over 4 responses\./);
	await checkNoWorkerLeft(srv);
	await srv.shutdown();
});

test('the grace passes first, then the straggler is cut', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv } = await setup(t);
	const { result, sc, progress } = await srv.orchestrate({
		query: 'Quorum, grace [[a1:hang]]', num_agents: 4, min_agents: 3, straggler_grace: 0.5,
	});
	assert.notEqual(result.isError, true, JSON.stringify(result));
	checkCut(sc.agents[0]);
	assert.deepEqual(sc.cut_for_latency, [1]);
	const msgs = progress.map((p) => p.message ?? '');
	const waiting = msgs.findIndex((m) => /quorum: 3 of 4 answers in; the stragglers have 0\.5 s/.test(m));
	const cut = msgs.findIndex((m) => /quorum: 1 agent cut for latency/.test(m));
	assert.ok(waiting >= 0 && cut > waiting, JSON.stringify(msgs));
	// The server's clock: never cut before its grace (a lower bound only).
	assert.ok(sc.agents[0].elapsed_ms >= 500, JSON.stringify(sc.agents[0]));
	await checkNoWorkerLeft(srv);
	await srv.shutdown();
});

test('min_agents above num_agents is refused; 0 and the default wait for all', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv } = await setup(t);
	const { result } = await srv.orchestrate({ query: 'q', num_agents: 4, min_agents: 5 });
	assert.equal(result.isError, true);
	assert.equal(result.content[0].text, "invalid argument 'min_agents': 5 is larger " +
	    'than num_agents (4): the quorum could never be reached');
	for (const [args, name] of [[{ min_agents: -1 }, 'min_agents'], [{ min_agents: 2.5 }, 'min_agents'],
	    [{ straggler_grace: -1 }, 'straggler_grace'], [{ straggler_grace: 'soon' }, 'straggler_grace']]) {
		const r = await srv.orchestrate({ query: 'q', num_agents: 4, ...args });
		assert.equal(r.result.isError, true);
		assert.match(r.result.content[0].text, new RegExp(`^invalid argument '${name}'`));
	}
	for (const args of [{ min_agents: 0 }, {}]) {
		const { result: ok, sc } = await srv.orchestrate({ query: 'All of them', num_agents: 2, ...args });
		assert.notEqual(ok.isError, true, JSON.stringify(ok));
		assert.equal(sc.quorum, null);
		assert.deepEqual(sc.cut_for_latency, []);
		assert.match(sc.answer, /^Synthesized answer over 2 responses\./);
	}
	await srv.shutdown();
});

test('the configured quorum applies to calls that do not say', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv } = await setup(t, { env: { HEAVY_MIN_AGENTS: '3', HEAVY_STRAGGLER_GRACE: '0' } });
	const { sc } = await srv.orchestrate({ query: 'Configured [[a3:hang]]', num_agents: 4 });
	checkCut(sc.agents[2]);
	assert.deepEqual(sc.cut_for_latency, [3]);
	assert.deepEqual(sc.quorum, { min_agents: 3, straggler_grace: 0 });
	// A call with fewer agents than the configured quorum waits for all.
	const small = await srv.orchestrate({ query: 'Two only', num_agents: 2 });
	assert.notEqual(small.result.isError, true, JSON.stringify(small.result));
	assert.equal(small.sc.quorum, null);
	assert.match(small.sc.answer, /^Synthesized answer over 2 responses\./);
	await checkNoWorkerLeft(srv);
	await srv.shutdown();
});

/* The mock's heavy-tailed mode, which the benchmark of the quorum uses:
 * one call always draws one latency (in any process, in any order), and
 * the draws are lognormal around the median asked for. */
test('the mock draws lognormal latencies, repeatably', { timeout: TEST_TIMEOUT }, async (t) => {
	const mocks = [await startMock('ln1'), await startMock('ln2')];
	t.after(() => Promise.all(mocks.map((m) => m.stop())));
	const draw = async (mock, text) => {
		const r = await fetch(`${mock.baseUrl}/chat/completions`, {
			method: 'POST',
			headers: { Authorization: 'Bearer k', 'Content-Type': 'application/json' },
			body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: text }] }),
		});
		assert.equal(r.status, 200);
		await r.text();
		const v = r.headers.get('x-mock-latency-ms');
		return v === null ? null : Number(v);
	};
	const texts = Array.from({ length: 200 }, (_, i) => `call ${i} [[lognormal:40:1]]`);
	const a = await Promise.all(texts.map((x) => draw(mocks[0], x)));
	const b = await Promise.all(texts.slice().reverse().map((x) => draw(mocks[1], x)));
	assert.deepEqual(b.reverse(), a, 'the same calls, in another order and process');
	const sorted = a.slice().sort((x, y) => x - y);
	const p50 = sorted[100], p95 = sorted[190];
	assert.ok(p50 >= 26 && p50 <= 54, `median ${p50} ms, asked for 40`);
	// exp(1.645 sigma): a p95 about 5 times the median.
	assert.ok(p95 / p50 >= 3 && p95 / p50 <= 9, `p95 ${p95} ms over median ${p50} ms`);
	assert.equal(await draw(mocks[0], 'no marker'), null, 'no header without the mode');
});
