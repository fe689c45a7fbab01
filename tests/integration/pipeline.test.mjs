// The pipeline's edges: a worker that breaks the wire protocol, LLM
// responses that are malformed or too big, one answer (no synthesis), a
// failed synthesis (answers concatenated), and client-visible logging.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { checkOk, checkShape } from './checks.mjs';
import { setup, waitFor, workersOf } from './lib.mjs';
import { TEST_TIMEOUT } from './lib.mjs';

test('a worker sending an invalid frame is killed; the server goes on', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv } = await setup(t, { worker: 'test' });
	const { result } = await srv.orchestrate({ query: 'Frame [[a1:tool:test_bad_frame:{}]]', num_agents: 3, timeout: 20 });
	const sc = checkShape(result, 3);
	assert.equal(sc.agents[0].status, 'failed', JSON.stringify(sc.agents[0]));
	assert.match(sc.agents[0].error, /protocol violation/);
	// Its deadline is at 15 s (timeout 20 s less a quarter); on the server's clock.
	assert.ok(sc.agents[0].elapsed_ms < 14000, `killed after ${sc.agents[0].elapsed_ms} ms: at once, not at the 15 s deadline`);
	checkOk(sc.agents[1]);
	checkOk(sc.agents[2]);
	assert.equal(sc.synthesized, true);
	await waitFor(() => workersOf(srv.pid).length === 0, undefined,
	    `no worker after the call (left: ${JSON.stringify(workersOf(srv.pid))})`);
	await srv.client.ping();
	await srv.shutdown();
});

test('malformed, truncated, streamed and oversized LLM bodies fail only their agent, each named', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv } = await setup(t, { env: { HEAVY_MAX_RESPONSE_BYTES: '65536', HEAVY_MAX_RETRIES: '0' } });
	const { result } = await srv.orchestrate({
		query: 'Bodies [[a1:malformed]] [[a2:truncated]] [[a3:oversize:200000]] [[a4:error200]] [[a5:sse]]',
		num_agents: 6, timeout: 20 });
	const sc = checkShape(result, 6);
	assert.match(sc.agents[0].error, /malformed JSON in response/);
	assert.match(sc.agents[1].error, /truncated response: the JSON body ends after \d+ bytes/);
	assert.match(sc.agents[2].error, /exceeds 65536 bytes/);
	assert.match(sc.agents[3].error, /provider error: Provider returned error/);
	assert.match(sc.agents[4].error, /an SSE stream \(text\/event-stream\) where a JSON body was expected/);
	for (let i = 0; i < 5; i++)
		assert.equal(sc.agents[i].status, 'failed');
	checkOk(sc.agents[5]);
	assert.equal(sc.synthesized, false, 'one answer is returned as is');
	assert.match(sc.answer, /^Answer 6:/);
	await srv.shutdown();
});

test('one successful answer skips synthesis; a failed synthesis concatenates', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv, mock } = await setup(t);
	const one = await srv.orchestrate({ query: 'Alone [[a2:status:400]]', num_agents: 2 });
	let sc = checkShape(one.result, 2);
	assert.equal(sc.synthesized, false);
	assert.match(sc.agents[1].error, /HTTP 400: bad request/);
	assert.equal((await mock.stats()).synthesis, 0, 'no synthesis call for one answer');

	const two = await srv.orchestrate({ query: 'No merge [[synth:status:503]]', num_agents: 2 });
	sc = checkShape(two.result, 2);
	assert.notEqual(two.result.isError, true);
	assert.equal(sc.synthesized, false);
	assert.match(sc.synthesis_error, /HTTP 503/);
	assert.match(sc.answer, /## Agent 1[\s\S]*Answer 1:[\s\S]*## Agent 2[\s\S]*Answer 2:/);
	await srv.shutdown();
});

test('logging/setLevel sends log lines to the client; bad levels are refused', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv } = await setup(t);
	await assert.rejects(srv.client.setLoggingLevel('loud'), /level/);
	await srv.client.setLoggingLevel('info');
	const ac = new AbortController();
	const call = srv.client.callTool({ name: 'heavy_orchestrate', arguments: { query: 'x [[agent:hang]]' } },
	    undefined, { signal: ac.signal }).catch(() => {});
	// Cancel a task that runs: once its agents hang in their workers.
	await waitFor(() => srv.workers().length >= 1, undefined, 'an agent worker');
	ac.abort();
	await call;
	const logs = () => srv.wire.filter((w) => w.dir === 'in' && w.m.method === 'notifications/message');
	await waitFor(() => logs().some((w) => /cancelled by the client/.test(w.m.params.data) &&
	    w.m.params.level === 'info'), undefined,
	    'the "cancelled by the client" log line').catch((e) => {
		e.message += `: ${JSON.stringify(logs().map((w) => w.m.params))}`;
		throw e;
	});
	await srv.shutdown();
});

test('the key and settings can come from a config file; --check-config masks the key', { timeout: TEST_TIMEOUT }, async (t) => {
	const { startMock, HEAVYD } = await import('./lib.mjs');
	const { execFileSync } = await import('node:child_process');
	const fs = await import('node:fs');
	const path = await import('node:path');
	const mock = await startMock();
	t.after(() => mock.stop());
	const { tmpdir } = await import('./lib.mjs');
	const file = path.join(tmpdir('conf'), 'config.yaml');
	fs.writeFileSync(file, `openrouter:\n  base_url: "${mock.baseUrl}"\n  model: "file/model"\n` +
	    '  api_key: "sk-file-secret-123"\nlimits:\n  heartbeat: 1\n');
	const { STATE_DIR } = await import('./lib.mjs');
	const env = { ...process.env, HEAVY_CONFIG: file, HEAVY_STATE_DIR: STATE_DIR };
	delete env.OPENROUTER_API_KEY;
	const shown = execFileSync(HEAVYD, ['--check-config'], { env, encoding: 'utf8' });
	assert.match(shown, /api_key: \(set in the file, masked\)/);
	assert.match(shown, /model: file\/model/);
	assert.doesNotMatch(shown, /sk-file-secret-123/);

	const { setup } = await import('./lib.mjs');
	const { srv } = await setup(t, { noMock: true, env: { HEAVY_CONFIG: file, OPENROUTER_API_KEY: undefined } });
	const { result } = await srv.orchestrate({ query: 'From the file [[all:echo-model]]', num_agents: 2 });
	assert.notEqual(result.isError, true, JSON.stringify(result));
	assert.match(result.structuredContent.answer, /model: file\/model/);
	await srv.shutdown();
});

test('an agent calls calculate; the result reaches the model and each call shows in progress', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv } = await setup(t);
	const one = await srv.orchestrate({ query: 'Math [[agent:tool:calculate:{"expression":"(2+3)*sqrt(16)"}]]', num_agents: 1 });
	assert.notEqual(one.result.isError, true, JSON.stringify(one.result));
	assert.match(one.result.structuredContent.answer, /tool results: 20\b/);
	const bad = await srv.orchestrate({ query: 'Bad math [[agent:tool:calculate:{"expression":"1/0"}]]', num_agents: 1 });
	assert.match(bad.result.structuredContent.answer, /tool results: error: division by zero/);
	const four = await srv.orchestrate({ query: 'Math [[agent:tool:calculate:{"expression":"6*7"}]]', num_agents: 4 });
	for (let k = 1; k <= 4; k++)
		assert.ok(four.progress.some((p) => p.message === `agent ${k}: calculate`),
		    `agent ${k}'s tool call is missing from ${JSON.stringify(four.progress.map((p) => p.message))}`);
	await srv.shutdown();
});
