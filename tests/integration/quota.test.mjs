// Per-identity quotas kept in the task store, over HTTP with token
// identities: orchestrations_per_hour reached is a 429 with Retry-After
// (another identity is still served); tokens_per_day and usd_per_day
// reached stop the running task with the quota in its result, and then
// refuse a start with a tool error naming the quota and when it resets;
// every counter survives a restart of heavyd on the same state directory;
// `heavyd quota NAME` shows the use against the limits.
//
// The windows are the wall clock's (UTC hours and days): a test that
// would straddle a window's end waits for the next window first (at most
// QUIET seconds), so that its calls all fall in one window.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CallToolResultSchema } from '@modelcontextprotocol/sdk/types.js';

import {
	HANG, HEAVYD, REPO, TEST_TIMEOUT, TOOL, WORKER, apiKey, sanitizerEnv, sleep, startListener,
	startMock, tmpdir,
} from './lib.mjs';
import { startPg } from './pg.mjs';

const V = '2025-11-25';
const QUIET = 120;	/* seconds a test needs within one window */

/* If the hour (and so the day) ends within QUIET s, wait until it has. */
async function awayFromWindowEnd() {
	const left = 3600 - Math.floor(Date.now() / 1000) % 3600;
	if (left <= QUIET)
		await sleep(left * 1000 + 1000);
}

function env(dir, extra = {}) {
	return {
		PATH: process.env.PATH, HEAVY_AUTH_TOKENS_FILE: path.join(dir, 'tokens'),
		HEAVY_STATE_DIR: path.join(dir, 'state'), ...sanitizerEnv(), ...extra,
	};
}

function heavydCmd(dir, ...args) {
	const extra = typeof args[args.length - 1] === 'object' ? args.pop() : {};
	const r = spawnSync(HEAVYD, args, { encoding: 'utf8', cwd: REPO, env: env(dir, extra) });
	return { code: r.status, out: r.stdout, err: r.stderr };
}

/* A directory with a tokens file of these identities and a state dir. */
function makeIds(t, ids) {
	const dir = tmpdir('quota');
	t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
	fs.mkdirSync(path.join(dir, 'state'), { mode: 0o700 });
	const tokens = {};
	for (const [name, limits] of Object.entries(ids)) {
		const r = heavydCmd(dir, 'token', 'add', name, ...limits);
		assert.equal(r.code, 0, r.err);
		tokens[name] = r.out.trim();
	}
	return { dir, tokens };
}

/* heavyd --listen on dir's tokens and state; stop() asserts a clean exit. */
function start(t, dir, mock, extra = {}) {
	return startListener(t, ['--listen', '127.0.0.1:0'], env(dir, {
		OPENROUTER_API_KEY: apiKey(), HEAVY_WORKER: WORKER, HEAVY_BASE_URL: mock.baseUrl,
		HEAVY_CACHE_TTL: '0', ...extra,
	}));
}

async function connect(t, srv, token) {
	const client = new Client({ name: 'quota-test', version: '1.0.0' }, { capabilities: {} });
	const transport = new StreamableHTTPClientTransport(new URL(srv.url),
	    { requestInit: { headers: { Authorization: `Bearer ${token}` } } });
	await client.connect(transport, { timeout: HANG });
	t.after(() => client.close());
	return client;
}

async function orchestrate(client, args) {
	const r = await client.callTool({ name: TOOL, arguments: args }, CallToolResultSchema,
	    { timeout: HANG });
	return { r, sc: r.structuredContent, text: r.content?.[0]?.text ?? '' };
}

/* tools/call on a raw session of token's: the HTTP response itself. */
async function rawCall(srv, token, args) {
	const h = { 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream',
	    Authorization: `Bearer ${token}` };
	const init = await fetch(srv.url, { method: 'POST', headers: h, body: JSON.stringify({
		jsonrpc: '2.0', id: 1, method: 'initialize',
		params: { protocolVersion: V, capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
	}) });
	assert.equal(init.status, 200);
	await init.text();
	const sh = { ...h, 'Mcp-Session-Id': init.headers.get('mcp-session-id'), 'MCP-Protocol-Version': V };
	await (await fetch(srv.url, { method: 'POST', headers: sh,
	    body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }) })).text();
	return fetch(srv.url, { method: 'POST', headers: sh, body: JSON.stringify({
		jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: TOOL, arguments: args },
	}) });
}

/* The 429 of a rate quota: its Retry-After is the hour's rest. */
async function assert429(res, what, limit = 2) {
	assert.equal(res.status, 429, `${what}: ${res.status} ${res.status === 429 ? '' : await res.text()}`);
	const retry = Number(res.headers.get('retry-after'));
	const left = 3600 - Math.floor(Date.now() / 1000) % 3600;
	assert.ok(Number.isInteger(retry) && retry >= 1 && retry <= 3600 && Math.abs(retry - left) <= 5,
	    `${what}: Retry-After ${retry}, ${left} s left in the hour`);
	const body = await res.json();
	assert.equal(body.error.code, -32029, what);
	assert.equal(body.error.data.retryAfter, retry, what);
	assert.match(body.error.message, new RegExp(`^quota orchestrations_per_hour reached: ${limit} of ${limit} orchestrations`
	    + ' this hour \\(UTC\\); it resets at \\d{4}-\\d\\d-\\d\\dT\\d\\d:00:00Z, in \\d+ s$'), what);
}

/* heavyd quota NAME: the line of one quota, as [used, limit]. */
function quotaLine(dir, name, key, extra = {}) {
	const r = heavydCmd(dir, 'quota', name, extra);
	assert.equal(r.code, 0, r.err);
	const m = new RegExp(`^${key}\\s+(\\S+)\\s+(\\S+)\\s+\\S+\\s+\\S+$`, 'm').exec(r.out);
	assert.ok(m, r.out);
	return [m[1], m[2]];
}

test('orchestrations_per_hour: the third start in the hour is a 429 with Retry-After, for that identity only, across a restart',
    { timeout: TEST_TIMEOUT }, async (t) => {
	await awayFromWindowEnd();
	const { dir, tokens } = makeIds(t, { alice: ['orchestrations_per_hour=2'], bob: [] });
	const mock = await startMock();
	t.after(() => mock.stop());
	let srv = await start(t, dir, mock);
	const alice = await connect(t, srv, tokens.alice);
	for (let i = 0; i < 2; i++) {
		const { r } = await orchestrate(alice, { query: `Question ${i}`, num_agents: 1 });
		assert.ok(!r.isError, JSON.stringify(r));
	}
	await assert429(await rawCall(srv, tokens.alice, { query: 'One more', num_agents: 1 }), 'raw');
	await assert.rejects(orchestrate(alice, { query: 'One more', num_agents: 1 }),
	    (e) => e.code === 429 && /"code":-32029/.test(e.message), 'the SDK sees the 429');
	const bob = await connect(t, srv, tokens.bob);
	assert.ok(!(await orchestrate(bob, { query: 'Bob asks', num_agents: 1 })).r.isError, 'bob has no quota');
	assert.match(srv.stderr(), /quota: id:alice refused: quota orchestrations_per_hour reached/);
	assert.deepEqual(quotaLine(dir, 'alice', 'orchestrations_per_hour'), ['2', '2']);
	assert.deepEqual(quotaLine(dir, 'bob', 'orchestrations_per_hour'), ['1', '-']);
	assert.deepEqual(quotaLine(dir, 'bob', 'orchestrations_per_hour',
	    { HEAVY_AUTH_DEFAULTS: 'orchestrations_per_hour=5' }), ['1', '5'], 'auth.defaults fills in');
	await srv.stop();

	srv = await start(t, dir, mock);
	await assert429(await rawCall(srv, tokens.alice, { query: 'After the restart', num_agents: 1 }),
	    'after a restart');
	await srv.stop();
});

test('tokens_per_day: reached mid-task, the task stops with the quota; the next start is a tool error naming it, across a restart',
    { timeout: TEST_TIMEOUT }, async (t) => {
	await awayFromWindowEnd();
	const { dir, tokens } = makeIds(t, { carol: ['tokens_per_day=1000'] });
	const mock = await startMock();
	t.after(() => mock.stop());
	let srv = await start(t, dir, mock);
	const carol = await connect(t, srv, tokens.carol);
	const { sc, text } = await orchestrate(carol, {
		query: 'Long [[a1:usage:1000]] [[a2:hang]]', num_agents: 2, timeout: 60,
	});
	const stop = /^quota tokens_per_day reached: \d+ of 1000 tokens today \(UTC\); it resets at \d{4}-\d\d-\d\dT00:00:00Z, in \d+ s$/;
	assert.match(sc.budget.stopped, stop, JSON.stringify(sc));
	// Stopped in the agents' step or in the synthesis: the reason either way.
	assert.match(text, /[Ss]topped(:| early,) quota tokens_per_day reached/);
	assert.ok(sc.usage.total_tokens >= 1000, JSON.stringify(sc.usage));
	const used = quotaLine(dir, 'carol', 'tokens_per_day');
	assert.equal(Number(used[0]), sc.usage.total_tokens, 'every token charged');
	assert.equal(used[1], '1000');
	const refused = await orchestrate(carol, { query: 'And another', num_agents: 1 });
	assert.equal(refused.r.isError, true);
	assert.match(refused.text, stop);
	await srv.stop();

	srv = await start(t, dir, mock);
	const again = await orchestrate(await connect(t, srv, tokens.carol), { query: 'Next', num_agents: 1 });
	assert.equal(again.r.isError, true, 'still refused after a restart');
	assert.match(again.text, stop);
	await srv.stop();
});

test('usd_per_day: the provider\'s reported cost counts; reached mid-task it stops the task, then refuses',
    { timeout: TEST_TIMEOUT }, async (t) => {
	await awayFromWindowEnd();
	const { dir, tokens } = makeIds(t, { dave: ['usd_per_day=0.002'], erin: ['usd_per_day=1'] });
	const mock = await startMock();
	t.after(() => mock.stop());
	const srv = await start(t, dir, mock);
	const dave = await connect(t, srv, tokens.dave);
	const { sc } = await orchestrate(dave, {
		query: 'Costly [[a1:usage:3000]] [[a2:hang]]', num_agents: 2, timeout: 60,
	});
	const stop = /^quota usd_per_day reached: \$0\.00\d+ of \$0\.002000 USD today \(UTC\); it resets at \d{4}-\d\d-\d\dT00:00:00Z, in \d+ s$/;
	assert.match(sc.budget.stopped, stop, JSON.stringify(sc));
	assert.ok(sc.usage.cost_usd >= 0.002, JSON.stringify(sc.usage));
	const refused = await orchestrate(dave, { query: 'Cheap', num_agents: 1 });
	assert.equal(refused.r.isError, true);
	assert.match(refused.text, stop);
	const erin = await connect(t, srv, tokens.erin);
	const ok = await orchestrate(erin, { query: 'Under budget', num_agents: 1 });
	assert.ok(!ok.r.isError && ok.sc.usage.cost_usd > 0, 'a USD quota asks for the cost');
	assert.equal(Number(quotaLine(dir, 'erin', 'usd_per_day')[0]), ok.sc.usage.cost_usd);
	await srv.stop();
});

test('on PostgreSQL (store.url): the store answers later, and the rate is still a 429, a budget still stops a task, across a restart',
    { timeout: TEST_TIMEOUT }, async (t) => {
	await awayFromWindowEnd();
	const pg = await startPg(t, 'quota-pg');
	const store = { HEAVY_STORE_URL: pg.url };
	const { dir, tokens } = makeIds(t, { alice: ['orchestrations_per_hour=1'], carol: ['tokens_per_day=1000'] });
	const mock = await startMock();
	t.after(() => mock.stop());
	let srv = await start(t, dir, mock, store);
	const alice = await connect(t, srv, tokens.alice);
	assert.ok(!(await orchestrate(alice, { query: 'Once', num_agents: 1 })).r.isError);
	await assert429(await rawCall(srv, tokens.alice, { query: 'Twice', num_agents: 1 }), 'pg', 1);
	const carol = await connect(t, srv, tokens.carol);
	const { sc } = await orchestrate(carol, {
		query: 'Long [[a1:usage:1000]] [[a2:hang]]', num_agents: 2, timeout: 60,
	});
	assert.match(sc.budget.stopped, /^quota tokens_per_day reached: \d+ of 1000 tokens today/, JSON.stringify(sc));
	await srv.stop();

	srv = await start(t, dir, mock, store);
	await assert429(await rawCall(srv, tokens.alice, { query: 'Thrice', num_agents: 1 }), 'pg restarted', 1);
	const again = await orchestrate(await connect(t, srv, tokens.carol), { query: 'More', num_agents: 1 });
	assert.equal(again.r.isError, true);
	assert.match(again.text, /^quota tokens_per_day reached/);
	await srv.stop();
	assert.deepEqual(quotaLine(dir, 'alice', 'orchestrations_per_hour', store), ['1', '1']);
	assert.equal(Number(quotaLine(dir, 'carol', 'tokens_per_day', store)[0]), sc.usage.total_tokens);
});
