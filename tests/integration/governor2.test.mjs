// The governor in heavyd-egress, its later parts: the budget of tokens a
// minute (limits.egress_tpm) holds calls and says so in progress; permits
// go round-robin across identities (HTTP tokens) before tasks, so one
// identity with many tasks cannot starve another with one; the circuit
// breaker's state shows in the progress of the calls it fails or probes
// with.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CallToolResultSchema } from '@modelcontextprotocol/sdk/types.js';

import { checkOk, checkShape } from './checks.mjs';
import {
	HANG, HEAVYD, REPO, TEST_TIMEOUT, TOOL, WORKER, apiKey, sanitizerEnv, setup, startListener,
	startMock, tmpdir, waitFor,
} from './lib.mjs';

const WAITS = /heavyd-egress\[\d+\]: debug: an LLM call to \S+ waits for a permit/g;

function waits(stderr) {
	return [...stderr.matchAll(WAITS)].length;
}

/*
 * limits.egress_tpm 100, and every call reports 200 tokens ([[usage:200]]):
 * the planner's call goes, and its answer spends the minute's budget; the
 * agent's call waits in egress, its progress says for what, and it never
 * reaches the mock: the agent's time runs out in egress's line.
 */
test('egress_tpm: a spent token budget holds the next call, and its progress says so', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv, mock } = await setup(t, { env: { HEAVY_EGRESS_TPM: '100', HEAVY_DEBUG: '1' } });
	// The wire's log, not onprogress: a note read in one chunk with the
	// answer reaches no handler (lib.mjs).
	const { result, progress } = await srv.orchestrate({ query: 'Tokens [[usage:200]]', num_agents: 1,
	    timeout: 20 });
	const notes = progress.map((p) => p.message);
	assert.ok(notes.some((n) => /^agent 1: waiting for the token budget \(limits\.egress_tpm spent in the last minute, about \d+ s\)/.test(n)),
	    JSON.stringify(notes));
	const st = await mock.stats();
	assert.equal(st.requests, 1, `calls went out past the token budget: ${JSON.stringify(st)}`);
	assert.match(srv.stderr(), /waits for a permit: .*limits\.egress_tpm spent/);
	const sc = checkShape(result, 1);
	assert.equal(sc.planner_error, null);
	assert.notEqual(sc.agents[0].status, 'ok', JSON.stringify(sc.agents[0]));
	await srv.shutdown();
});

/* The same with a budget the calls fit in: nothing waits. */
test('egress_tpm: calls within the budget do not wait', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv, mock } = await setup(t, { env: { HEAVY_EGRESS_TPM: '100000', HEAVY_DEBUG: '1' } });
	const { result } = await srv.orchestrate({ query: 'Tokens [[usage:200]]', num_agents: 2, timeout: 60 });
	checkShape(result, 2).agents.forEach(checkOk);
	assert.ok((await mock.stats()).requests >= 4);
	assert.equal(waits(srv.stderr()), 0, srv.stderr());
	await srv.shutdown();
});

/* ------------------------------------------------ identities over HTTP */

/* A tokens file with these identities (`heavyd token add`): { name: token }. */
function makeTokens(t, names) {
	const dir = tmpdir('gov-auth');
	t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
	const tokens = {};
	for (const name of names) {
		const r = spawnSync(HEAVYD, ['token', 'add', name], {
			encoding: 'utf8', cwd: REPO,
			env: { PATH: process.env.PATH, HEAVY_AUTH_TOKENS_FILE: path.join(dir, 'tokens'),
			    HEAVY_STATE_DIR: path.join(dir, 'state'), ...sanitizerEnv() },
		});
		assert.equal(r.status, 0, r.stderr);
		tokens[name] = r.stdout.trim();
	}
	return { file: path.join(dir, 'tokens'), tokens };
}

/* heavyd --listen on loopback with the tokens file and env. */
async function startAuth(t, file, mock, env) {
	const state = tmpdir('gov-state');
	return startListener(t, ['--listen', '127.0.0.1:0'], {
		OPENROUTER_API_KEY: apiKey(), HEAVY_STATE_DIR: state, HEAVY_WORKER: WORKER,
		HEAVY_BASE_URL: mock.baseUrl, HEAVY_AUTH_TOKENS_FILE: file, ...env,
	}, () => fs.rmSync(state, { recursive: true, force: true }));
}

/* The official client for one identity; orchestrate() resolves to the result. */
async function connect(t, srv, token, name) {
	const client = new Client({ name, version: '1.0.0' }, { capabilities: {} });
	await client.connect(new StreamableHTTPClientTransport(new URL(srv.url),
	    { requestInit: { headers: { Authorization: `Bearer ${token}` } } }), { timeout: HANG });
	t.after(() => client.close());
	return (args) => client.callTool({ name: TOOL, arguments: args }, CallToolResultSchema,
	    { timeout: TEST_TIMEOUT, resetTimeoutOnProgress: true });
}

/*
 * One call at a time (egress_max_calls 1), every call held by the mock
 * until released ([[gate]]).  Identity alice starts 4 tasks: the first's
 * planner call is held, the 3 others wait in egress.  Then bob starts 1.
 * Permits go round-robin across identities before tasks: when alice's
 * held call goes, bob's planner is next, not after alice's 3 (by tasks
 * alone, each of alice's tasks, never served, would rank with bob's).
 * The order is the mock's order of arrival.
 */
test('permits go round-robin across identities: one with 4 tasks does not starve one with 1', { timeout: TEST_TIMEOUT }, async (t) => {
	const mock = await startMock('mock-ids');
	t.after(() => mock.stop());
	const { file, tokens } = makeTokens(t, ['alice', 'bob']);
	const srv = await startAuth(t, file, mock, { HEAVY_EGRESS_MAX_CALLS: '1', HEAVY_DEBUG: '1' });
	const alice = await connect(t, srv, tokens.alice, 'alice');
	const bob = await connect(t, srv, tokens.bob, 'bob');
	const runs = [];
	for (let i = 0; i < 4; i++)
		runs.push(alice({ query: `Alice ${i} [[all:tag:A]] [[gate]]`, num_agents: 1, timeout: 200 }));
	await waitFor(async () => (await mock.stats()).held === 1, undefined, 'alice\'s first planner held');
	await waitFor(() => waits(srv.stderr()) >= 3, undefined, 'alice\'s 3 other planners to wait in egress');
	let bobDone = false;
	const b = bob({ query: 'Bob [[all:tag:B]] [[gate]]', num_agents: 1, timeout: 200 });
	b.finally(() => { bobDone = true; });
	await waitFor(() => waits(srv.stderr()) >= 4, undefined, 'bob\'s planner to wait in egress');
	// Each release lets the held call go, and the fairest waiting one
	// comes to be held next; until bob's task is done.
	while (!bobDone) {
		const held = await waitFor(async () => bobDone || (await mock.stats()).held > 0,
		    undefined, 'a held call, or bob\'s task done');
		if (held !== true || !bobDone)
			await mock.release();
	}
	checkOk(checkShape(await b, 1).agents[0]);
	await mock.open();
	for (const r of await Promise.all(runs))
		checkOk(checkShape(r, 1).agents[0]);
	const order = (await mock.stats()).arrivals.filter((s) => /^(planner|agent|synth\w*):[AB]$/.test(s));
	assert.deepEqual(order.slice(0, 2), ['planner:A', 'planner:B'], JSON.stringify(order));
	assert.equal(order.filter((s) => s === 'planner:A').length, 4, JSON.stringify(order));
	// Bob's calls were served while alice's kept coming: his last came
	// before alice's last planner's agent, and so on -- at the least
	// before the last of alice's calls.
	assert.ok(order.lastIndexOf('agent:B') < order.lastIndexOf('agent:A'), JSON.stringify(order));
	await srv.stop();
});

/* ------------------------------------------------------ the breaker */

/*
 * One failure opens the breaker for 600 s: the first task's planner gets
 * a 503, which ends that task.  The next task's calls are failed fast,
 * unsent; the progress of its planner's says the upstream is failing, and
 * for how long yet.
 */
test('an open breaker shows in the progress of the calls it fails fast', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv, mock } = await setup(t, { env: { HEAVY_EGRESS_BREAKER_FAILURES: '1',
	    HEAVY_EGRESS_BREAKER_COOLDOWN: '600', HEAVY_MAX_RETRIES: '0' } });
	await srv.orchestrate({ query: 'Down [[planner:status:503]]', num_agents: 1, timeout: 30 });
	await waitFor(() => /circuit breaker open/.test(srv.stderr()), undefined, 'the breaker to open');
	const { result, progress } = await srv.orchestrate({ query: 'Another task', num_agents: 1, timeout: 30 });
	const notes = progress.map((p) => p.message);
	assert.match(JSON.stringify(result), /circuit breaker of \S+ is open/);
	assert.ok(notes.some((n) => /^planner: upstream failing: circuit open for (59\d|600) s \(calls fail fast, unsent, until a probe succeeds\)$/.test(n)),
	    JSON.stringify(notes));
	assert.equal((await mock.stats()).requests, 1, 'a call went out past the open breaker');
	await srv.shutdown();
});

/*
 * After a cooldown of 1 s the breaker is half-open: the next call is its
 * probe, and says so in progress; the probe's success closes it.
 */
test('a half-open breaker\'s probe shows in progress', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv } = await setup(t, { env: { HEAVY_EGRESS_BREAKER_FAILURES: '1',
	    HEAVY_EGRESS_BREAKER_COOLDOWN: '1', HEAVY_MAX_RETRIES: '0' } });
	await srv.orchestrate({ query: 'Down [[planner:status:503]]', num_agents: 1, timeout: 30 });
	await waitFor(() => /circuit breaker open/.test(srv.stderr()), undefined, 'the breaker to open');
	await waitFor(async () => {
		const { progress } = await srv.orchestrate({ query: 'Up again', num_agents: 1, timeout: 30 });
		const notes = progress.map((p) => p.message);
		// The planner's call, or an agent's if the cooldown ended after
		// the planner was failed fast.
		return notes.some((n) => /^(planner|agent \d+): upstream failing: circuit half-open, this call is its probe$/.test(n));
	}, undefined, 'a task with a call that is the probe', 200);
	await waitFor(() => /circuit breaker closed/.test(srv.stderr()), undefined, 'the probe to close it');
	await srv.shutdown();
});
