// The upstream side as a client sees it: a provider that echoes the API key
// in its error never gets the key into a result, the task store or the log,
// and a stalled LLM call is cut after HEAVY_STALL_TIMEOUT and retried
// rather than holding its step until the deadline.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

import { checkShape } from './checks.mjs';
import { HEAVYD, STATE_DIR, setup, startServer, tmpdir, TEST_TIMEOUT } from './lib.mjs';

/* Every file of a state directory, as text: the store, its WAL. */
function stateText(dir) {
	let all = '';
	for (const name of fs.readdirSync(dir, { recursive: true })) {
		const p = path.join(dir, name);
		if (fs.statSync(p).isFile())
			all += fs.readFileSync(p, 'latin1');
	}
	return all;
}

test('a key echoed by the provider is masked in the result, the store and the log', { timeout: TEST_TIMEOUT }, async (t) => {
	const dir = tmpdir('echokey');
	t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
	const { srv } = await setup(t, { env: { HEAVY_STATE_DIR: dir, HEAVY_DEBUG: '1' } });
	const { result } = await srv.orchestrate({ query: 'Who am I [[planner:echokey]]', num_agents: 2 });
	assert.equal(result.isError, true);
	const text = JSON.stringify(result);
	assert.match(text, /Incorrect API key provided: \[redacted\]/);
	assert.ok(!text.includes(srv.key), 'the key is in the result');
	await srv.shutdown();
	assert.ok(!stateText(dir).includes(srv.key), 'the key is in the task store');
	assert.ok(!srv.stderr().includes(srv.key), 'the key is in the log');
});

test('a stalled LLM call is cut after HEAVY_STALL_TIMEOUT and retried', { timeout: TEST_TIMEOUT }, async (t) => {
	// The planner's first call is never answered; its retry is.  Without
	// the stall timeout it would hold the planner to its deadline (a
	// quarter of the timeout) and the agents would get fallback questions.
	const { srv } = await setup(t, { env: { HEAVY_STALL_TIMEOUT: '1' } });
	const { result } = await srv.orchestrate({ query: 'Slow start [[planner:stall-once]]', num_agents: 2,
	    timeout: 600 }, { timeout: 120000 });
	const sc = checkShape(result, 2);
	assert.equal(result.isError, false, JSON.stringify(result));
	assert.equal(sc.planner_fallback, false, 'the planner was retried, not timed out');
	assert.ok(sc.usage.retries >= 1, JSON.stringify(sc.usage));
	assert.match(srv.stderr(), /stalled: no data from the LLM for 1 s/);
	await srv.shutdown();
});

test('credentials in base_url never show: not in --check-config, heavy://config, the log or a result',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv: probe, mock } = await setup(t);
	await probe.shutdown();
	const secret = 's3cret-passw0rd';
	const withCreds = mock.baseUrl.replace('http://', `http://alice:${secret}@`);
	const closed = 'http://alice:' + secret + '@127.0.0.1:9/v1';
	const srv = await startServer({ mock, env: { HEAVY_BASE_URL: withCreds, HEAVY_DEBUG: '1' } });
	t.after(() => srv.kill());
	const config = await srv.client.readResource({ uri: 'heavy://config' });
	assert.match(config.contents[0].text, /^base_url: http:\/\/\[redacted\]@127\.0\.0\.1:/m);
	const { result } = await srv.orchestrate({ query: 'With credentials', num_agents: 1 });
	assert.equal(result.isError, false, JSON.stringify(result));
	await srv.shutdown();
	const down = await startServer({ mock, env: { HEAVY_BASE_URL: closed, HEAVY_DEBUG: '1',
	    HEAVY_MAX_RETRIES: '0' } });
	t.after(() => down.kill());
	const r2 = (await down.orchestrate({ query: 'Unreachable', num_agents: 1 })).result;
	assert.equal(r2.isError, true);
	assert.match(r2.content[0].text, /cannot connect to http:\/\/\[redacted\]@127\.0\.0\.1:9\//);
	await down.shutdown();
	const check = spawnSync(HEAVYD, ['--check-config'], { encoding: 'utf8', env: { PATH: process.env.PATH,
	    HEAVY_STATE_DIR: STATE_DIR, OPENROUTER_API_KEY: 'k', HEAVY_BASE_URL: withCreds } });
	for (const text of [JSON.stringify(result), JSON.stringify(r2), srv.stderr(), down.stderr(),
	    config.contents[0].text, check.stdout, check.stderr])
		assert.ok(!text.includes(secret), `the password shows in: ${text.slice(0, 300)}`);
});
