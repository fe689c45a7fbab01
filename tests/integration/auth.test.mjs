// Identities over HTTP: bearer tokens from a tokens file that `heavyd token`
// writes; 401 without one, with a wrong one, with one revoked by SIGHUP;
// identity A cannot list, read, cancel, complete, subscribe to or resume
// identity B's tasks or sessions, nor be served B's cached answers; an
// identity's requests_per_minute, concurrent tasks, num_agents and timeout
// maxima; failed attempts limited per address; listening beyond loopback;
// the audit lines, and no token in any log.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CallToolResultSchema, CreateTaskResultSchema } from '@modelcontextprotocol/sdk/types.js';

import {
	HANG, HEAVYD, REPO, TEST_TIMEOUT, TOOL, WORKER, apiKey, rpcError, sanitizerEnv,
	startListener, startMock, tmpdir, waitFor,
} from './lib.mjs';

const V = '2025-11-25';
const INIT = {
	jsonrpc: '2.0', id: 1, method: 'initialize',
	params: { protocolVersion: V, capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
};

/* heavyd token ARGS... on the tokens file of dir. */
function tokenCmd(dir, ...args) {
	const r = spawnSync(HEAVYD, ['token', ...args], {
		encoding: 'utf8', cwd: REPO,
		env: { PATH: process.env.PATH, HEAVY_AUTH_TOKENS_FILE: path.join(dir, 'tokens'),
		    HEAVY_STATE_DIR: path.join(dir, 'state'), ...sanitizerEnv() },
	});
	return { code: r.status, out: r.stdout, err: r.stderr };
}

/* A tokens file with these identities: { name: token }. */
function makeTokens(t, ids) {
	const dir = tmpdir('auth');
	t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
	const tokens = {};
	for (const [name, limits] of Object.entries(ids)) {
		const r = tokenCmd(dir, 'add', name, ...limits);
		assert.equal(r.code, 0, r.err);
		tokens[name] = r.out.trim();
	}
	return { dir, file: path.join(dir, 'tokens'), tokens };
}

/* heavyd --listen with the tokens file; stop() asserts a clean exit. */
async function startAuth(t, file, opts = {}) {
	const mock = await startMock();
	const state = tmpdir('auth-state');
	const srv = await startListener(t, (opts.listen ?? ['127.0.0.1:0']).flatMap((a) => ['--listen', a]), {
		OPENROUTER_API_KEY: apiKey(), HEAVY_HEARTBEAT: '1', HEAVY_STATE_DIR: state,
		HEAVY_WORKER: WORKER, HEAVY_BASE_URL: mock.baseUrl, HEAVY_AUTH_TOKENS_FILE: file,
		...(opts.env ?? {}),
	}, async () => {
		await mock.stop();
		fs.rmSync(state, { recursive: true, force: true });
	});
	return { ...srv, mock };
}

/* The official client, sending its token in a static header. */
async function connect(srv, token, name = 'auth-test') {
	const client = new Client({ name, version: '1.0.0' }, { capabilities: {} });
	const transport = new StreamableHTTPClientTransport(new URL(srv.url), token === undefined ? {} :
	    { requestInit: { headers: { Authorization: `Bearer ${token}` } } });
	await client.connect(transport, { timeout: HANG });
	return { client, transport, sid: transport.sessionId };
}

function post(srv, body, headers = {}, url = srv.url) {
	return fetch(url, {
		method: 'POST',
		headers: { 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream',
		    ...headers },
		body: JSON.stringify(body),
	});
}

const bearer = (tok) => ({ Authorization: `Bearer ${tok}` });

async function callTool(c, name, args = {}) {
	const r = await c.client.callTool({ name, arguments: args }, CallToolResultSchema, { timeout: HANG });
	return { r, sc: r.structuredContent, text: r.content?.[0]?.text ?? '' };
}

/* heavy_orchestrate as an MCP task: its id at once. */
async function startTask(c, args) {
	const res = await c.client.request({ method: 'tools/call', params: { name: TOOL, arguments: args } },
	    CreateTaskResultSchema, { task: { ttl: 60000 }, timeout: HANG });
	return res.task.taskId;
}

/* A 401 as the issue asks: the challenge, and no resource_metadata. */
async function assert401(res, what) {
	assert.equal(res.status, 401, what);
	assert.equal(res.headers.get('www-authenticate'), 'Bearer realm="heavyd"', what);
	const body = await res.json();
	assert.equal(body.jsonrpc, '2.0');
	assert.match(body.error.message, /^Unauthorized/, what);
}

test('heavyd token add, list and revoke: a 256-bit token shown once, only its digest in a 0600 file',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const dir = tmpdir('auth-cli');
	t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
	const file = path.join(dir, 'tokens');
	const a = tokenCmd(dir, 'add', 'alice', 'requests_per_minute=60', 'usd_per_day=2.5');
	assert.equal(a.code, 0, a.err);
	assert.match(a.out, /^hvd_[0-9a-f]{64}\n$/, 'the token alone on stdout');
	assert.match(a.err, /shown only this once/);
	assert.equal(fs.statSync(file).mode & 0o777, 0o600);
	const tok = a.out.trim();
	const text = fs.readFileSync(file, 'utf8');
	assert.ok(!text.includes(tok.slice(4)), 'the token is not in the file');
	const { createHash } = await import('node:crypto');
	assert.equal(text, `alice ${createHash('sha256').update(tok).digest('hex')} ` +
	    'requests_per_minute=60 usd_per_day=2.5\n');
	fs.appendFileSync(file, '# a comment the operator wrote\n');
	const b = tokenCmd(dir, 'add', 'bob');
	assert.equal(b.code, 0, b.err);
	assert.notEqual(b.out.trim(), tok);

	const dup = tokenCmd(dir, 'add', 'alice');
	assert.equal(dup.code, 1);
	assert.match(dup.err, /alice already has a token/);
	for (const bad of ['-x', 'a b', 'é', 'x'.repeat(65), ''])
		assert.equal(tokenCmd(dir, 'add', bad).code, 2, bad);
	const lim = tokenCmd(dir, 'add', 'carol', 'colour=blue');
	assert.equal(lim.code, 2);
	assert.match(lim.err, /expected KEY=VALUE/);
	assert.deepEqual(tokenCmd(dir, 'list').out.split('\n'),
	    ['alice requests_per_minute=60 usd_per_day=2.5', 'bob', '']);
	const unknown = tokenCmd(dir, 'revoke', 'mallory');
	assert.equal(unknown.code, 1);
	assert.match(unknown.err, /no identity "mallory"/);
	assert.equal(tokenCmd(dir, 'revoke', 'alice').code, 0);
	assert.deepEqual(tokenCmd(dir, 'list').out, 'bob\n');
	assert.match(fs.readFileSync(file, 'utf8'), /# a comment the operator wrote\n/, 'comments kept');
	assert.equal(fs.statSync(file).mode & 0o777, 0o600);
	assert.deepEqual(fs.readdirSync(dir).sort(), ['tokens'], 'no temporary file left');

	fs.appendFileSync(file, 'dave 1234\n');
	const broken = tokenCmd(dir, 'list');
	assert.equal(broken.code, 1);
	assert.match(broken.err, /tokens:3: dave: expected the token's SHA-256/);
});

test('no token, a wrong one, one in the query: 401 with the challenge; the SDK client with its header works',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const { file, tokens } = makeTokens(t, { alice: [] });
	const srv = await startAuth(t, file);
	await assert401(await post(srv, INIT), 'no token');
	await assert401(await post(srv, INIT, bearer('hvd_' + '0'.repeat(64))), 'a wrong token');
	await assert401(await post(srv, INIT, { Authorization: `Basic ${tokens.alice}` }), 'not Bearer');
	await assert401(await post(srv, INIT, {}, `${srv.url}?access_token=${tokens.alice}`),
	    'a query parameter');
	await assert401(await fetch(srv.url, { headers: { Accept: 'text/event-stream' } }), 'GET');
	await assert.rejects(connect(srv, undefined), /401|Unauthorized/i, 'the SDK without a token');
	await assert.rejects(connect(srv, 'hvd_nope'), /401|Unauthorized/i, 'the SDK, a wrong token');
	const a = await connect(srv, tokens.alice);
	const tools = await a.client.listTools();
	assert.ok(tools.tools.some((x) => x.name === TOOL));
	const r = await callTool(a, TOOL, { query: 'Who am I?', num_agents: 1 });
	assert.notEqual(r.r.isError, true, r.text);
	await a.client.close();
	assert.equal((await fetch(`${srv.url.replace(/\/mcp$/, '')}/healthz`)).status, 200, 'probes are open');
	await srv.stop();
	assert.ok(!srv.stderr().includes(tokens.alice.slice(4)), 'the token is in no log line');
	assert.ok(!srv.stderr().includes('0'.repeat(64)), 'nor a wrong one');
});

test('SIGHUP re-reads the tokens file: a revoked token is refused from the next request',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const { dir, file, tokens } = makeTokens(t, { alice: [], bob: [] });
	const srv = await startAuth(t, file);
	const a = await connect(srv, tokens.alice);
	const b = await connect(srv, tokens.bob);
	await a.client.ping();
	// A task of alice's that outlives her token: it runs to its end.
	const slow = await startTask(a, { query: 'Slow [[agent:latency:1500]]', num_agents: 1 });
	assert.equal(tokenCmd(dir, 'revoke', 'alice').code, 0);
	await a.client.ping();		// not yet: heavyd has not re-read it
	const carol = tokenCmd(dir, 'add', 'carol');
	srv.proc.kill('SIGHUP');
	const loads = () => srv.stderr().match(/auth: \d+ identit(y|ies) from/g) ?? [];
	await waitFor(() => loads().length === 2, HANG, 'the reload');
	assert.match(loads()[1], /auth: 2 identities/);
	await assert.rejects(a.client.ping(), /401|Unauthorized/i, 'alice, revoked');
	await assert401(await post(srv, { jsonrpc: '2.0', id: 7, method: 'ping' },
	    { ...bearer(tokens.alice), 'Mcp-Session-Id': a.sid, 'MCP-Protocol-Version': V }), 'revoked');
	await b.client.ping();
	assert.equal((await rpcError(b.client.experimental.tasks.getTask(slow))).message.includes('Task not found'),
	    true, 'nobody else sees it');
	await waitFor(() => new RegExp(`audit: task end: identity=id:alice task=${slow} .*outcome=completed`)
	    .test(srv.stderr()), HANG, 'the revoked identity\'s task to end');
	const c = await connect(srv, carol.out.trim());
	await c.client.ping();
	fs.writeFileSync(file, 'broken\n');
	srv.proc.kill('SIGHUP');
	await waitFor(() => /auth: reload: .*tokens:1: .*; the identities in force stay/.test(srv.stderr()),
	    HANG, 'the failed reload');
	await b.client.ping();
	await b.client.close();
	await c.client.close();
	await srv.stop();
});

test('identity A cannot see, cancel, complete, subscribe to or resume B\'s tasks and sessions, nor get its cache',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const { file, tokens } = makeTokens(t, { alice: [], bob: [] });
	const srv = await startAuth(t, file, { env: { HEAVY_CACHE_TTL: '600' } });
	const a = await connect(srv, tokens.alice, 'alice');
	const b = await connect(srv, tokens.bob, 'bob');
	const running = await startTask(a, { query: 'Hang here [[agent:hang]]', num_agents: 1, timeout: 120 });
	const done = await callTool(a, TOOL, { query: 'Cache me', num_agents: 1 });
	assert.notEqual(done.r.isError, true, done.text);
	const finished = done.sc.task_id ?? (await a.client.experimental.tasks.listTasks()).tasks
	    .map((x) => x.taskId).find((id) => id !== running);
	assert.match(finished, /^[0-9a-f]{32}$/);
	const unknown = 'f'.repeat(32);
	const tasksOf = (c) => c.client.experimental.tasks;

	// tasks/*: like an unknown id, and not listed.
	const mine = (await tasksOf(a).listTasks()).tasks.map((x) => x.taskId);
	assert.ok(mine.includes(running) && mine.includes(finished), String(mine));
	assert.deepEqual((await tasksOf(b).listTasks()).tasks, []);
	for (const id of [running, finished]) {
		const errs = [];
		for (const u of [id, unknown])
			errs.push([
				(await rpcError(tasksOf(b).getTask(u))).message,
				(await rpcError(tasksOf(b).getTaskResult(u, CallToolResultSchema, { timeout: HANG }))).message,
				(await rpcError(tasksOf(b).cancelTask(u))).message,
			].map((m) => m.replaceAll(u, 'ID')));
		assert.deepEqual(errs[0], errs[1], 'another identity\'s task answers as an unknown one');
		assert.match(errs[0][0], /Task not found/);
	}
	// The task tools.
	for (const tool of ['get_task_progress', 'cancel_task']) {
		const theirs = await callTool(b, tool, { task_id: running });
		const none = await callTool(b, tool, { task_id: unknown });
		assert.equal(theirs.text.replaceAll(running, 'ID'), none.text.replaceAll(unknown, 'ID'), tool);
		assert.match(theirs.text, /unknown task_id/, tool);
	}
	const active = await callTool(b, 'list_active_tasks');
	assert.ok(!JSON.stringify(active.r).includes(running), 'list_active_tasks');
	// resources/read and subscribe.
	for (const uri of [`heavy://tasks/${finished}`, `heavy://tasks/${finished}/result`,
	    `heavy://tasks/${running}`]) {
		const id = /[0-9a-f]{32}/.exec(uri)[0], other = uri.replace(id, unknown);
		const e1 = await rpcError(b.client.readResource({ uri }));
		const e2 = await rpcError(b.client.readResource({ uri: other }));
		assert.equal(e1.code, e2.code, uri);
		assert.equal(e1.message.replaceAll(id, 'ID'), e2.message.replaceAll(unknown, 'ID'), uri);
		const s1 = await rpcError(b.client.subscribeResource({ uri }));
		const s2 = await rpcError(b.client.subscribeResource({ uri: other }));
		assert.equal(s1.message.replaceAll(id, 'ID'), s2.message.replaceAll(unknown, 'ID'), uri);
	}
	assert.ok((await a.client.readResource({ uri: `heavy://tasks/${finished}` })).contents.length > 0);
	// completion/complete of task ids.
	for (const c of [a, b]) {
		const ids = await c.client.complete({ ref: { type: 'ref/resource', uri: 'heavy://tasks/{id}' },
		    argument: { name: 'id', value: '' } });
		assert.equal(ids.completion.values.includes(running), c === a, 'completion');
	}
	// The result cache: never across identities.
	const bobs = await callTool(b, TOOL, { query: 'Cache me', num_agents: 1 });
	assert.notEqual(bobs.sc.cached, true, 'bob is not served alice\'s answer');
	const again = await callTool(a, TOOL, { query: 'Cache me', num_agents: 1 });
	assert.equal(again.sc.cached, true, 'alice is (the cache works)');

	// Sessions: alice's id with bob's token is 404, by every method.
	const h = { ...bearer(tokens.bob), 'Mcp-Session-Id': a.sid, 'MCP-Protocol-Version': V };
	const ping = { jsonrpc: '2.0', id: 9, method: 'ping' };
	const r404 = [await post(srv, ping, h),
	    await fetch(srv.url, { headers: { ...h, Accept: 'text/event-stream' } }),
	    await fetch(srv.url, { headers: { ...h, Accept: 'text/event-stream', 'Last-Event-ID': '1-0' } }),
	    await fetch(srv.url, { method: 'DELETE', headers: h })];
	const unknownSession = await post(srv, ping, { ...h, 'Mcp-Session-Id': unknown });
	for (const r of r404) {
		assert.equal(r.status, 404);
		assert.deepEqual(await r.json(), await unknownSession.clone().json());
	}
	await a.client.ping();			// alice's session is still there
	const mineAgain = await post(srv, ping, { ...h, ...bearer(tokens.alice) });
	assert.equal(mineAgain.status, 200);

	// Alice still sees and stops her task.
	await tasksOf(a).cancelTask(running);
	assert.equal((await tasksOf(a).getTask(running)).status, 'cancelled');

	await a.client.close();
	await b.client.close();
	await srv.stop();
	const log = srv.stderr();
	assert.match(log, new RegExp(`audit: tool call: identity=id:bob tool=get_task_progress task=${running}`));
	assert.match(log, /audit: task end: identity=id:alice task=[0-9a-f]{32} tool=heavy_orchestrate model=\S+ tokens=\d+ cost_usd=[\d.]+ outcome=completed duration_ms=\d+/);
	assert.match(log, new RegExp(`audit: task end: identity=id:alice task=${running} .*outcome=cancelled`));
	assert.ok(!log.includes('Cache me'), 'no query text without log.queries');
});

test('log.queries: true puts the query in the audit line', { timeout: TEST_TIMEOUT }, async (t) => {
	const { file, tokens } = makeTokens(t, { alice: [] });
	const srv = await startAuth(t, file, { env: { HEAVY_LOG_QUERIES: '1' } });
	const a = await connect(srv, tokens.alice);
	await callTool(a, TOOL, { query: 'Say the query', num_agents: 1 });
	await a.client.close();
	await srv.stop();
	assert.match(srv.stderr(), /audit: tool call: identity=id:alice tool=heavy_orchestrate task=- model=default query="Say the query"/);
});

test('an identity over its requests_per_minute gets 429 and Retry-After; others do not',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const { file, tokens } = makeTokens(t, { carol: ['requests_per_minute=3'], dave: [] });
	const srv = await startAuth(t, file);
	const ping = { jsonrpc: '2.0', id: 2, method: 'ping' };
	const init = await post(srv, INIT, bearer(tokens.carol));
	assert.equal(init.status, 200);
	const h = { ...bearer(tokens.carol), 'Mcp-Session-Id': init.headers.get('mcp-session-id'),
	    'MCP-Protocol-Version': V };
	assert.equal((await post(srv, ping, h)).status, 200);
	assert.equal((await post(srv, ping, h)).status, 200);
	const over = await post(srv, ping, h);
	assert.equal(over.status, 429);
	const retry = Number(over.headers.get('retry-after'));
	assert.ok(Number.isInteger(retry) && retry >= 1 && retry <= 60, `Retry-After ${retry}`);
	assert.equal(over.headers.get('retry-after'), String(retry), 'one Retry-After');
	assert.match((await over.json()).error.message, /requests_per_minute \(3\)/);
	assert.equal((await post(srv, INIT, bearer(tokens.dave))).status, 200, 'dave has no limit');
	await srv.stop();
});

test('failed attempts from one address: 429 after auth.fail_max, even with a good token; logged without the token',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const { file, tokens } = makeTokens(t, { alice: [] });
	const srv = await startAuth(t, file, { env: { HEAVY_AUTH_FAIL_MAX: '3', HEAVY_AUTH_FAIL_WINDOW: '600' } });
	const guesses = ['hvd_guess1', 'hvd_guess2', 'hvd_guess3'];
	for (const g of guesses)
		await assert401(await post(srv, INIT, bearer(g)), g);
	const blocked = await post(srv, INIT, bearer(tokens.alice));
	assert.equal(blocked.status, 429);
	const retry = Number(blocked.headers.get('retry-after'));
	// The first failure leaves the 600 s window (not the default 60 s)
	// in what remains of it: however slowly a loaded machine got here.
	assert.ok(retry > 300 && retry <= 600, `Retry-After ${retry}`);
	assert.match((await blocked.json()).error.message, /too many failed authentications/);
	await srv.stop();
	const log = srv.stderr();
	assert.match(log, /auth: an unknown or revoked token from 127\.0\.0\.1: failure 1 in 600 s/);
	assert.match(log, /from 127\.0\.0\.1: failure 3 in 600 s; further requests from it are refused/);
	for (const secret of [...guesses, tokens.alice])
		assert.ok(!log.includes(secret), `${secret} is in the log`);
});

test('an identity\'s concurrent_tasks, max_num_agents and max_timeout: a tool error naming the limit',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const { file, tokens } = makeTokens(t, {
		erin: ['concurrent_tasks=1', 'max_num_agents=2', 'max_timeout=100'], frank: [],
		gina: ['live_workers=3'],
	});
	const srv = await startAuth(t, file);
	const e = await connect(srv, tokens.erin);
	const f = await connect(srv, tokens.frank);
	const agents = await callTool(e, TOOL, { query: 'Many', num_agents: 3 });
	assert.equal(agents.r.isError, true);
	assert.match(agents.text, /num_agents 3 is over this identity's limit \(max_num_agents=2\)/);
	const slow = await callTool(e, TOOL, { query: 'Long', num_agents: 1, timeout: 200 });
	assert.equal(slow.r.isError, true);
	assert.match(slow.text, /max_timeout=100/);
	// Neither num_agents (default 4) nor timeout (300) given: fitted to 2 and 100, not refused.
	const running = await startTask(e, { query: 'Hang [[agent:hang]]' });
	const listed = await callTool(e, 'list_active_tasks');
	assert.deepEqual(listed.sc.active_tasks.map((x) => [x.task_id, x.agent_count]), [[running, 2]]);
	const second = await callTool(e, TOOL, { query: 'Another', num_agents: 1 });
	assert.equal(second.r.isError, true);
	assert.match(second.text, /this identity already runs 1 orchestrations \(concurrent_tasks=1\)/);
	const other = await callTool(f, TOOL, { query: 'Frank is free', num_agents: 3, timeout: 200 });
	assert.notEqual(other.r.isError, true, other.text);
	await e.client.experimental.tasks.cancelTask(running);
	await waitFor(async () => (await e.client.experimental.tasks.getTask(running)).status === 'cancelled',
	    HANG, 'the cancel');
	const after = await callTool(e, TOOL, { query: 'Now it fits', num_agents: 2 });
	assert.notEqual(after.r.isError, true, after.text);
	// live_workers: the agents of her running orchestrations, and the new one's.
	const g = await connect(srv, tokens.gina);
	const two = await startTask(g, { query: 'Hang two [[agent:hang]]', num_agents: 2 });
	const over = await callTool(g, TOOL, { query: 'Two more', num_agents: 2 });
	assert.equal(over.r.isError, true);
	assert.match(over.text, /would run 4 workers at once, over its limit \(live_workers=3\)/);
	const one = await startTask(g, { query: 'Hang one [[agent:hang]]', num_agents: 1 });
	for (const id of [two, one])
		assert.equal((await g.client.experimental.tasks.getTask(id)).status, 'working', 'admitted');
	for (const id of [two, one])
		await g.client.experimental.tasks.cancelTask(id);
	await g.client.close();
	await e.client.close();
	await f.client.close();
	await srv.stop();
});

test('with a tokens file heavyd listens beyond loopback, and still asks for the token',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const { file, tokens } = makeTokens(t, { alice: [] });
	const srv = await startAuth(t, file, { listen: ['0.0.0.0:0'] });
	assert.equal(srv.host, '0.0.0.0');
	await assert401(await post(srv, INIT), 'no token');
	const a = await connect(srv, tokens.alice);
	await a.client.ping();
	await a.client.close();
	await srv.stop();
});

/* 2026-07-28: every request on its own, still under its token's identity. */
const MODERN = '2026-07-28';
const TASKS = { extensions: { 'io.modelcontextprotocol/tasks': {} } };
let nextId = 100;
function modern(srv, token, method, params = {}) {
	const name = params.name ?? params.uri ?? params.taskId;
	return fetch(srv.url, {
		method: 'POST',
		headers: {
			'Content-Type': 'application/json', Accept: 'application/json, text/event-stream',
			'MCP-Protocol-Version': MODERN, 'Mcp-Method': method,
			...(name !== undefined ? { 'Mcp-Name': name } : {}),
			...(token ? bearer(token) : {}),
		},
		body: JSON.stringify({ jsonrpc: '2.0', id: nextId++, method, params: { ...params, _meta: {
			'io.modelcontextprotocol/protocolVersion': MODERN,
			'io.modelcontextprotocol/clientCapabilities': TASKS,
			'io.modelcontextprotocol/clientInfo': { name: 'modern', version: '1' },
		} } }),
	});
}

test('2026-07-28 stateless requests carry the identity too: 401 without a token, no other identity\'s task',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const { file, tokens } = makeTokens(t, { alice: [], bob: [] });
	const srv = await startAuth(t, file);
	await assert401(await modern(srv, null, 'server/discover'), 'no token');
	const a = await connect(srv, tokens.alice);
	const id = await startTask(a, { query: 'Hang [[agent:hang]]', num_agents: 1 });
	const mine = await (await modern(srv, tokens.alice, 'tasks/get', { taskId: id })).json();
	assert.equal(mine.result?.taskId ?? mine.result?.task?.taskId ?? id, id, JSON.stringify(mine));
	assert.equal(mine.error, undefined, JSON.stringify(mine));
	const theirs = await (await modern(srv, tokens.bob, 'tasks/get', { taskId: id })).json();
	const none = await (await modern(srv, tokens.bob, 'tasks/get', { taskId: 'e'.repeat(32) })).json();
	assert.ok(theirs.error, JSON.stringify(theirs));
	assert.equal(theirs.error.code, none.error.code);
	assert.equal(theirs.error.message.replaceAll(id, 'ID'), none.error.message.replaceAll('e'.repeat(32), 'ID'));
	await a.client.experimental.tasks.cancelTask(id);
	await a.client.close();
	await srv.stop();
});

test('a tokens file that does not parse: heavyd does not start, --check-config says why and where',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const dir = tmpdir('auth-bad');
	t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
	const file = path.join(dir, 'tokens');
	fs.writeFileSync(file, '# ok\nalice 00 requests_per_minute=5\n');
	const env = { PATH: process.env.PATH, OPENROUTER_API_KEY: apiKey(), HEAVY_STATE_DIR: path.join(dir, 'state'),
	    HEAVY_WORKER: WORKER, HEAVY_AUTH_TOKENS_FILE: file, ...sanitizerEnv() };
	const why = /tokens:2: alice: expected the token's SHA-256 in 64 lowercase hex digits/;
	const check = spawnSync(HEAVYD, ['--check-config'], { encoding: 'utf8', cwd: REPO, env });
	assert.equal(check.status, 1, check.stderr);
	assert.match(check.stdout, /^auth\.mode: tokens$/m);
	assert.match(check.stderr, why);
	const run = spawnSync(HEAVYD, ['--listen', '127.0.0.1:0'], { encoding: 'utf8', cwd: REPO, env,
	    timeout: HANG });
	assert.equal(run.status, 1, run.stderr);
	assert.match(run.stderr, why);
	const none = spawnSync(HEAVYD, ['--check-config'], { encoding: 'utf8', cwd: REPO,
	    env: { ...env, HEAVY_AUTH_TOKENS_FILE: undefined, HEAVY_AUTH_MODE: 'tokens' } });
	assert.equal(none.status, 1);
	assert.match(none.stderr, /auth\.mode: tokens needs auth\.tokens_file/);
});
