// heavyd over Streamable HTTP (heavyd --listen), with the official SDK's
// StreamableHTTPClientTransport and with raw fetch for what the SDK will not
// send: an orchestration with progress over SSE, many sessions at once, a
// session's GET stream hearing of a resource, tasks across a dropped
// connection, a dropped stream resumed with Last-Event-ID, and a bad request
// of every kind, each with its status and a JSON-RPC error body.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import {
	CallToolResultSchema, ResourceUpdatedNotificationSchema,
} from '@modelcontextprotocol/sdk/types.js';

import {
	HANG, HEAVYD, IS_ASAN, REPO, STATE_DIR, TEST_TIMEOUT, WORKER, apiKey,
	assertNoSanitizerReport, describe, descendants, expire, sanitizerEnv,
	startMock, stillAlive, tmpdir, waitFor,
} from './lib.mjs';
import { checkProgress, checkShape } from './checks.mjs';

const V = '2025-11-25';
const INIT = {
	jsonrpc: '2.0', id: 1, method: 'initialize',
	params: { protocolVersion: V, capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
};

/*
 * Starts heavyd --listen 127.0.0.1:0 (or opts.listen) and waits for the
 * address it logs.  stop() sends SIGTERM and asserts exit 0, no process
 * left, no sanitizer report.
 */
async function startHttp(t, opts = {}) {
	const mock = opts.mock === null ? null : await startMock();
	const listen = opts.listen ?? ['127.0.0.1:0'];
	const args = listen.flatMap((a) => ['--listen', a]);
	const proc = spawn(HEAVYD, args, {
		stdio: ['ignore', 'pipe', 'pipe'], cwd: REPO,
		env: {
			PATH: process.env.PATH, OPENROUTER_API_KEY: apiKey(),
			HEAVY_HEARTBEAT: '1', HEAVY_RETRY_BASE_MS: '50', HEAVY_STATE_DIR: STATE_DIR,
			HEAVY_WORKER: WORKER, ...(mock ? { HEAVY_BASE_URL: mock.baseUrl } : {}),
			...sanitizerEnv(), ...(opts.env ?? {}),
		},
	});
	let stderr = '', stdout = '';
	proc.stderr.setEncoding('utf8');
	proc.stderr.on('data', (d) => { stderr += d; });
	proc.stdout.on('data', (d) => { stdout += d; });
	const exited = new Promise((r) => proc.once('close', (code, signal) => r({ code, signal })));
	let exit = null;
	exited.then((e) => { exit = e; });
	const seen = new Map();
	const sample = () => {
		for (const p of descendants(proc.pid))
			seen.set(`${p.pid}:${p.starttime}`, p);
	};
	const sampler = setInterval(sample, 100);
	const srv = {
		proc, mock, stderr: () => stderr, exited, exit: () => exit,
		async stop() {
			clearInterval(sampler);
			sample();
			if (exit === null)
				proc.kill('SIGTERM');
			const ex = await Promise.race([exited, expire(HANG)]);
			assert.ok(ex, `heavyd did not exit within ${HANG / 1000} s of SIGTERM`);
			const procs = [...seen.values()];
			await waitFor(() => stillAlive(procs).length === 0, HANG, 'descendants to exit')
			    .catch(() => assert.fail(`left behind: ${describe(stillAlive(procs))}`));
			assert.deepEqual(ex, { code: 0, signal: null }, `exit status; stderr:\n${stderr}`);
			assert.equal(stdout, '', 'nothing on stdout over HTTP');
			if (IS_ASAN)
				assertNoSanitizerReport(stderr, 'heavyd');
		},
	};
	t.after(async () => {
		clearInterval(sampler);
		if (exit === null) {
			proc.kill('SIGKILL');
			await exited;
		}
		if (mock)
			await mock.stop();
	});
	if (opts.expectExit)
		return srv;
	const m = await waitFor(() => {
		if (exit)
			throw new Error(`heavyd exited: ${JSON.stringify(exit)}\n${stderr}`);
		return /listening on (http:\/\/\S+)/.exec(stderr);
	}, HANG, 'heavyd to listen');
	srv.url = m[1];
	srv.base = srv.url.replace(/\/mcp$/, '');
	return srv;
}

async function connect(srv, name = 'http-test') {
	const client = new Client({ name, version: '1.0.0' }, { capabilities: {} });
	const transport = new StreamableHTTPClientTransport(new URL(srv.url));
	await client.connect(transport, { timeout: HANG });
	return { client, transport };
}

/* A raw POST; headers extend the usual ones. */
function post(srv, body, headers = {}) {
	return fetch(srv.url, {
		method: 'POST',
		headers: {
			'Content-Type': 'application/json',
			Accept: 'application/json, text/event-stream', ...headers,
		},
		body: typeof body === 'string' ? body : JSON.stringify(body),
	});
}

async function rawSession(srv) {
	const r = await post(srv, INIT);
	assert.equal(r.status, 200);
	const sid = r.headers.get('mcp-session-id');
	assert.match(sid, /^[0-9a-f]{32}$/, 'a session id of 128 random bits');
	assert.equal((await r.json()).result.protocolVersion, V);
	const n = await post(srv, { jsonrpc: '2.0', method: 'notifications/initialized' },
	    { 'Mcp-Session-Id': sid, 'MCP-Protocol-Version': V });
	assert.equal(n.status, 202);
	return sid;
}

/* Reads SSE events from a fetch response until stop(event) says so. */
async function readEvents(res, stop) {
	const reader = res.body.getReader();
	const dec = new TextDecoder();
	const events = [];
	let buf = '';
	for (;;) {
		const { value, done } = await reader.read();
		if (done)
			return { events, reader, done: true };
		buf += dec.decode(value, { stream: true });
		let i;
		while ((i = buf.indexOf('\n\n')) >= 0) {
			const block = buf.slice(0, i);
			buf = buf.slice(i + 2);
			const ev = {};
			for (const line of block.split('\n')) {
				const m = /^([a-z]+): ?(.*)$/.exec(line);
				if (m)
					ev[m[1]] = ev[m[1]] === undefined ? m[2] : `${ev[m[1]]}\n${m[2]}`;
			}
			if (ev.data)
				ev.msg = JSON.parse(ev.data);
			events.push(ev);
			if (stop(ev, events))
				return { events, reader, done: false };
		}
	}
}

test('an orchestration over HTTP streams its progress over SSE, then its result',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const srv = await startHttp(t);
	const { client } = await connect(srv);
	assert.equal(client.getServerVersion().name, 'heavyd');
	const tools = await client.listTools();
	assert.ok(tools.tools.some((x) => x.name === 'heavy_orchestrate'));
	const progress = [];
	const result = await client.callTool({ name: 'heavy_orchestrate',
	    arguments: { query: 'What is HTTP?', num_agents: 2 } }, CallToolResultSchema,
	    { timeout: HANG, onprogress: (p) => progress.push(p) });
	assert.notEqual(result.isError, true, JSON.stringify(result).slice(0, 500));
	checkShape(result, 2);
	assert.ok(progress.length >= 3, `progress as it came: ${JSON.stringify(progress)}`);
	checkProgress(progress.map((p) => ({ ...p, t: 0 })), progress[0].total);
	await client.close();
	await srv.stop();
});

test('many sessions at once, each its own', { timeout: TEST_TIMEOUT }, async (t) => {
	const srv = await startHttp(t, { mock: null });
	const n = 24;
	const clients = await Promise.all(Array.from({ length: n }, (_, i) => connect(srv, `c${i}`)));
	const ids = new Set(clients.map((c) => c.transport.sessionId));
	assert.equal(ids.size, n, 'a session id each');
	await Promise.all(clients.map(async ({ client }) => {
		await client.ping();
		const r = await client.listResources();
		assert.ok(Array.isArray(r.resources));
	}));
	// A DELETE ends one session; the others go on.
	await clients[0].transport.terminateSession();
	const gone = await post(srv, { jsonrpc: '2.0', id: 9, method: 'ping' },
	    { 'Mcp-Session-Id': clients[0].transport.sessionId });
	assert.equal(gone.status, 404);
	await Promise.all(clients.slice(1).map(({ client }) => client.ping()));
	await Promise.all(clients.map(({ client }) => client.close()));
	await srv.stop();
});

test('bad requests get a clear status and a JSON-RPC error', { timeout: TEST_TIMEOUT }, async (t) => {
	const srv = await startHttp(t, { mock: null, env: { HEAVY_MAX_LINE_BYTES: '4096' } });
	const sid = await rawSession(srv);
	const h = { 'Mcp-Session-Id': sid };
	const ping = { jsonrpc: '2.0', id: 5, method: 'ping' };
	const cases = [
		['no session id', () => post(srv, ping), 400, /Mcp-Session-Id header is required/],
		['an unknown session', () => post(srv, ping, { 'Mcp-Session-Id': 'f'.repeat(32) }), 404, /Session not found/],
		['not JSON', () => post(srv, ping, { ...h, 'Content-Type': 'text/plain' }), 415, /Content-Type/],
		['an Accept that allows neither', () => post(srv, ping, { ...h, Accept: 'text/html' }), 406, /Accept/],
		['an unknown protocol version', () => post(srv, ping, { ...h, 'MCP-Protocol-Version': '1999-01-01' }), 400, /MCP-Protocol-Version/],
		['another site\'s Origin', () => post(srv, ping, { ...h, Origin: 'http://evil.example' }), 403, /Origin/],
		['malformed JSON', () => post(srv, '{"jsonrpc":', h), 400, /Parse error/],
		['a batch', () => post(srv, [ping], h), 400, /batches/],
		['PUT', () => fetch(srv.url, { method: 'PUT', headers: h }), 405, /Method Not Allowed/],
		['a GET without text/event-stream', () => fetch(srv.url, { headers: { ...h, Accept: 'application/json' } }), 406, /text\/event-stream/],
		['initialize with a session id', () => post(srv, INIT, h), 400, /without Mcp-Session-Id/],
		['a DELETE of no session', () => fetch(srv.url, { method: 'DELETE' }), 400, /required/],
		['a bad Last-Event-ID', () => fetch(srv.url, { headers: { ...h, Accept: 'text/event-stream', 'Last-Event-ID': 'x' } }), 400, /Last-Event-ID/],
	];
	for (const [what, send, status, re] of cases) {
		const r = await send();
		assert.equal(r.status, status, what);
		const body = await r.json();
		assert.equal(body.jsonrpc, '2.0', what);
		assert.match(body.error.message, re, what);
	}
	const big = await post(srv, { ...ping, params: { pad: 'x'.repeat(8192) } }, h);
	assert.equal(big.status, 413, 'a body over max_line_bytes');
	await big.arrayBuffer();
	const same = await fetch(srv.url.replace(/\/mcp$/, `/mcp`), {
		method: 'POST', body: JSON.stringify(ping),
		headers: { ...h, 'Content-Type': 'application/json', Origin: srv.base },
	});
	assert.equal(same.status, 200, 'same-origin loopback is let in');
	assert.equal((await fetch(`${srv.base}/nope`)).status, 404);
	assert.equal((await fetch(`${srv.base}/healthz`)).status, 200);
	assert.equal((await fetch(`${srv.base}/readyz`)).status, 200);
	// The session still works after all that.
	const ok = await post(srv, ping, h);
	assert.deepEqual(await ok.json(), { jsonrpc: '2.0', id: 5, result: {} });
	await srv.stop();
});

test('a session\'s GET stream hears of the resources it subscribed to',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const srv = await startHttp(t);
	const { client } = await connect(srv);
	const updated = [];
	client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => updated.push(n.params.uri));
	const started = await client.callTool({ name: 'grok_heavy_orchestrate',
	    arguments: { query: 'Resources over HTTP [[gate]]', num_agents: 1 } }, CallToolResultSchema,
	    { timeout: HANG });
	const taskId = started.structuredContent.task_id;
	assert.match(taskId, /^[0-9a-f]{32}$/);
	const uri = `heavy://tasks/${taskId}`;
	await client.subscribeResource({ uri });	// the gate holds the task until now
	await srv.mock.open();
	await waitFor(() => updated.includes(uri), HANG, 'notifications/resources/updated on the GET stream');
	await client.close();
	await srv.stop();
});

test('a GET stream is one per session', { timeout: TEST_TIMEOUT }, async (t) => {
	const srv = await startHttp(t, { mock: null });
	const sid = await rawSession(srv);
	const h = { 'Mcp-Session-Id': sid, Accept: 'text/event-stream' };
	const ac = new AbortController();
	const first = await fetch(srv.url, { headers: h, signal: ac.signal });
	assert.equal(first.status, 200);
	assert.equal(first.headers.get('content-type'), 'text/event-stream');
	assert.equal(first.headers.get('x-accel-buffering'), 'no');
	assert.match(first.headers.get('cache-control'), /no-transform/);
	const second = await fetch(srv.url, { headers: h });
	assert.equal(second.status, 409);
	await second.json();
	ac.abort();
	// Once the first is gone, a new one is let in.
	await waitFor(async () => {
		const r = await fetch(srv.url, { headers: h, signal: AbortSignal.timeout(HANG) });
		if (r.status === 200) {
			await r.body.cancel();
			return true;
		}
		await r.json();
		return false;
	}, HANG, 'a new GET stream after the first closed');
	await srv.stop();
});

test('a dropped SSE stream is resumed with Last-Event-ID, to its result',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const srv = await startHttp(t);
	const sid = await rawSession(srv);
	const h = { 'Mcp-Session-Id': sid, 'MCP-Protocol-Version': V };
	const ac = new AbortController();
	const call = {
		jsonrpc: '2.0', id: 7, method: 'tools/call',
		params: { name: 'heavy_orchestrate', _meta: { progressToken: 'p7' },
		    arguments: { query: 'Resume me [[gate]]', num_agents: 1 } },
	};
	const res = await fetch(srv.url, { method: 'POST', body: JSON.stringify(call), signal: ac.signal,
	    headers: { 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream', ...h } });
	assert.equal(res.headers.get('content-type'), 'text/event-stream');
	// The priming event, then progress; drop the stream after one.
	const first = await readEvents(res, (ev) => ev.msg?.method === 'notifications/progress');
	assert.equal(first.events[0].data, '', 'a priming event with empty data');
	assert.match(first.events[0].id, /^\d+-\d+$/);
	const last = first.events.at(-1).id;
	ac.abort();
	await srv.mock.open();
	const again = await fetch(srv.url, { headers: { ...h, Accept: 'text/event-stream', 'Last-Event-ID': last } });
	assert.equal(again.status, 200);
	const rest = await readEvents(again, (ev) => ev.msg?.id === 7);
	const reply = rest.events.at(-1).msg;
	assert.notEqual(reply.result.isError, true, JSON.stringify(reply).slice(0, 400));
	assert.equal(reply.result.structuredContent.agents.length, 1);
	const ids = rest.events.filter((e) => e.id).map((e) => Number(e.id.split('-')[1]));
	assert.ok(ids[0] > Number(last.split('-')[1]), 'nothing before the last event seen');
	assert.deepEqual(ids, [...ids].sort((a, b) => a - b), 'in order');
	await srv.stop();
});

test('a task outlives the connection that started it', { timeout: TEST_TIMEOUT }, async (t) => {
	const srv = await startHttp(t);
	const a = await connect(srv, 'first');
	const started = await a.client.callTool({ name: 'grok_heavy_orchestrate',
	    arguments: { query: 'Outlive [[gate]]', num_agents: 1 } }, CallToolResultSchema, { timeout: HANG });
	const taskId = started.structuredContent.task_id;
	await a.client.close();		// gone without a DELETE: no cancellation
	await srv.mock.open();
	const b = await connect(srv, 'second');
	const done = await waitFor(async () => {
		const r = await b.client.callTool({ name: 'get_task_progress',
		    arguments: { task_id: taskId } }, CallToolResultSchema, { timeout: HANG });
		return ['COMPLETED', 'FAILED', 'CANCELLED'].includes(r.structuredContent.status) ? r : null;
	}, HANG, 'the task to end');
	assert.equal(done.structuredContent.status, 'COMPLETED', JSON.stringify(done).slice(0, 400));
	await b.client.close();
	await srv.stop();
});

test('a client that hangs up before its reply does not stop the task',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const srv = await startHttp(t);
	const sid = await rawSession(srv);
	const ac = new AbortController();
	const call = {
		jsonrpc: '2.0', id: 3, method: 'tools/call',
		params: { name: 'heavy_orchestrate', arguments: { query: 'Hang up [[gate]]', num_agents: 1 } },
	};
	const pending = fetch(srv.url, { method: 'POST', body: JSON.stringify(call), signal: ac.signal,
	    headers: { 'Content-Type': 'application/json', Accept: 'application/json', 'Mcp-Session-Id': sid } })
	    .catch((e) => e);
	await waitFor(async () => (await srv.mock.stats()).held > 0 || null, HANG, 'the call to reach the mock')
	    .catch(async () => waitFor(() => descendants(srv.proc.pid).length > 1, HANG, 'workers'));
	ac.abort();
	await pending;
	await srv.mock.open();
	// The session is intact; its task ran to its end and is in the store.
	const r = await post(srv, { jsonrpc: '2.0', id: 4, method: 'tools/call',
	    params: { name: 'list_active_tasks', arguments: {} } }, { 'Mcp-Session-Id': sid });
	assert.equal(r.status, 200);
	await r.json();
	await srv.stop();
});

test('heavyd refuses to listen beyond this machine without authentication',
    { timeout: TEST_TIMEOUT }, async (t) => {
	for (const addr of ['0.0.0.0:0', '[::]:0', 'localhost:80', '127.0.0.1', 'unix:rel']) {
		const srv = await startHttp(t, { mock: null, listen: [addr], expectExit: true });
		const ex = await Promise.race([srv.exited, expire(HANG)]);
		assert.ok(ex, `heavyd --listen ${addr} did not exit`);
		assert.equal(ex.code, 1, addr);
		assert.match(srv.stderr(), /http\.listen .*(loopback|expected)/, addr);
	}
});

test('a unix socket listener', { timeout: TEST_TIMEOUT }, async (t) => {
	const dir = tmpdir('sock');
	t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
	const sock = path.join(dir, 'heavyd.sock');
	const srv = await startHttp(t, { mock: null, listen: [`unix:${sock}`], expectExit: true });
	await waitFor(() => fs.existsSync(sock) || (srv.exit() && assert.fail(srv.stderr())), HANG, 'the socket');
	const { request } = await import('node:http');
	const body = JSON.stringify(INIT);
	const status = await new Promise((resolve, reject) => {
		const req = request({ socketPath: sock, path: '/mcp', method: 'POST', headers: {
			'Content-Type': 'application/json', Accept: 'application/json',
			'Content-Length': Buffer.byteLength(body) } }, (res) => { res.resume(); resolve(res.statusCode); });
		req.on('error', reject);
		req.end(body);
	});
	assert.equal(status, 200);
	await srv.stop();
	assert.ok(!fs.existsSync(sock), 'the socket file is removed at exit');
});
