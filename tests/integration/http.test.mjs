// heavyd over Streamable HTTP (heavyd --listen), with the official SDK's
// StreamableHTTPClientTransport and with raw fetch for what the SDK will not
// send: an orchestration with progress over SSE, many sessions at once, a
// session's GET stream hearing of a resource, tasks across a dropped
// connection, a dropped stream resumed with Last-Event-ID, and a bad request
// of every kind, each with its status and a JSON-RPC error body.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import {
	CallToolResultSchema, LoggingMessageNotificationSchema, ResourceUpdatedNotificationSchema,
} from '@modelcontextprotocol/sdk/types.js';

import {
	HANG, HEAVYD, IS_ASAN, REPO, SOON, STATE_DIR, TEST_TIMEOUT, WORKER, apiKey,
	assertNoSanitizerReport, describe, descendants, expire, jobsAlive, sanitizerEnv,
	spawnRaw, startMock, stillAlive, storeEnv, tmpdir, waitFor, workersOf,
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
			...sanitizerEnv(), ...storeEnv(opts.env), ...(opts.env ?? {}),
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
		async stop({ signal = true } = {}) {
			clearInterval(sampler);
			sample();
			if (exit === null && signal)
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
	assert.match(sid, /^[\w.:@-]{1,64}\.[0-9a-f]{64}$/,
	    'a session id: the node, 128 random bits, a MAC of 128 bits');
	assert.equal((await r.json()).result.protocolVersion, V);
	const n = await post(srv, { jsonrpc: '2.0', method: 'notifications/initialized' },
	    { 'Mcp-Session-Id': sid, 'MCP-Protocol-Version': V });
	assert.equal(n.status, 202);
	return sid;
}

/* Reads SSE events from a fetch response until stop(event) says so. */
async function readEvents(res, stop) {
	const st = res.sse ??= { reader: res.body.getReader(), dec: new TextDecoder(), buf: '' };
	const { reader, dec } = st;
	const events = [];
	for (;;) {
		let i;
		while ((i = st.buf.indexOf('\n\n')) >= 0) {
			const block = st.buf.slice(0, i);
			st.buf = st.buf.slice(i + 2);
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
		const { value, done } = await reader.read();
		if (done)
			return { events, reader, done: true };
		st.buf += dec.decode(value, { stream: true });
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

test('GET /metrics counts what happened, in a format promtool accepts; /readyz and /healthz',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const srv = await startHttp(t);
	const { client } = await connect(srv);
	const r = await client.callTool({ name: 'heavy_orchestrate', arguments: { query: 'Count me', num_agents: 2 } },
	    CallToolResultSchema, { timeout: HANG });
	assert.notEqual(r.isError, true);
	const res = await fetch(`${srv.base}/metrics`);
	assert.equal(res.status, 200);
	assert.match(res.headers.get('content-type'), /^text\/plain; version=0\.0\.4/);
	const text = await res.text();
	const value = (re) => Number((re.exec(text) ?? [])[1]);
	assert.equal(value(/^heavyd_tasks_started_total\{tool="heavy_orchestrate"\} (\d+)/m), 1, text.slice(0, 2000));
	assert.equal(value(/^heavyd_tasks_ended_total\{tool="heavy_orchestrate",status="completed"\} (\d+)/m), 1);
	// initialize and the call (its SSE stream ended); initialized got 202.
	assert.equal(value(/^heavyd_http_requests_total\{method="POST",code="200"\} (\d+)/m), 2, text);
	assert.equal(value(/^heavyd_http_requests_total\{method="POST",code="202"\} (\d+)/m), 1);
	assert.equal(value(/^heavyd_sessions (\d+)/m), 1, 'the one open session');
	assert.ok(value(/^heavyd_llm_requests_total\{[^}]*\} (\d+)/m) >= 1);
	assert.equal(value(/^heavyd_zygote_up (\d+)/m), 1);
	const check = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
	assert.equal(check.error, undefined, 'promtool runs (scripts/install-deps installs it)');
	assert.equal(check.status, 0, `promtool: ${check.stdout}${check.stderr}`);
	assert.equal((await fetch(`${srv.base}/readyz`)).status, 200);
	assert.equal((await fetch(`${srv.base}/healthz`)).status, 200);
	await client.close();
	await srv.stop();
});

test('SIGTERM over HTTP: new requests get 503 with Retry-After, /readyz 503, the running call is answered, exit 0',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const srv = await startHttp(t);
	const sid = await rawSession(srv);
	const h = { 'Mcp-Session-Id': sid, 'MCP-Protocol-Version': V };
	const res = await post(srv, { jsonrpc: '2.0', id: 31, method: 'tools/call',
	    params: { name: 'heavy_orchestrate', arguments: { query: 'Drain me [[agent:gate]]', num_agents: 1 } } }, h);
	assert.equal(res.headers.get('content-type'), 'text/event-stream');
	await waitFor(async () => (await srv.mock.stats()).held > 0, HANG, 'the agent to reach the gate');
	srv.proc.kill('SIGTERM');
	await waitFor(async () => (await fetch(`${srv.base}/readyz`)).status === 503, HANG, '/readyz to say draining');
	const busy = await post(srv, { jsonrpc: '2.0', id: 32, method: 'ping' }, h);
	assert.equal(busy.status, 503);
	assert.ok(Number(busy.headers.get('retry-after')) > 0);
	assert.match((await busy.json()).error.message, /shutting down; retry later/);
	await srv.mock.open();
	const { events } = await readEvents(res, (ev) => ev.msg?.id === 31);
	const reply = events.at(-1).msg;
	assert.notEqual(reply.result.isError, true, JSON.stringify(reply).slice(0, 300));
	await srv.stop({ signal: false });	// drained: it exits by itself, 0, nothing left
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
		['a session id with a bad MAC', () => post(srv, ping, { 'Mcp-Session-Id': sid.slice(0, -1) + (sid.endsWith('0') ? '1' : '0') }),
		    404, /^Session not found$/],
		['not JSON', () => post(srv, ping, { ...h, 'Content-Type': 'text/plain' }), 415, /Content-Type/],
		['an Accept that allows neither', () => post(srv, ping, { ...h, Accept: 'text/html' }), 406, /Accept/],
		['an unknown protocol version', () => post(srv, ping, { ...h, 'MCP-Protocol-Version': '1999-01-01' }), 400, /Unsupported protocol version/],
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
	assert.equal(r.headers.get('content-type'), 'text/event-stream', 'a call streams at once');
	const { msg } = await answer(r);
	assert.equal(msg.id, 4);
	assert.ok(msg.result, JSON.stringify(msg));
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

test('progress over SSE goes through nginx (proxy_buffering on, as stock) as it happens',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const srv = await startHttp(t);
	const dir = tmpdir('nginx');
	const port = await new Promise((resolve) => {	// a free port for nginx
		const s = net.createServer().listen(0, '127.0.0.1', () => {
			const p = s.address().port;
			s.close(() => resolve(p));
		});
	});
	const upstream = new URL(srv.url).host;
	// proxy_buffering is on, as in a stock nginx: only heavyd's
	// X-Accel-Buffering: no lets the stream through as it comes.
	fs.writeFileSync(path.join(dir, 'nginx.conf'), `
daemon off;
master_process off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log;
events { worker_connections 64; }
http {
	access_log off;
	client_body_temp_path ${dir}/body;
	proxy_temp_path ${dir}/proxy;
	fastcgi_temp_path ${dir}/fastcgi;
	uwsgi_temp_path ${dir}/uwsgi;
	scgi_temp_path ${dir}/scgi;
	server {
		listen 127.0.0.1:${port};
		location / {
			proxy_pass http://${upstream};
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_buffering on;
			proxy_read_timeout 60s;
		}
	}
}
`);
	const nginx = spawn('nginx', ['-p', dir, '-c', path.join(dir, 'nginx.conf')], { stdio: ['ignore', 'pipe', 'pipe'] });
	let nginxErr = '';
	nginx.stderr.on('data', (d) => { nginxErr += d; });
	const nginxExit = new Promise((r) => nginx.once('exit', r));
	nginx.once('error', (e) => { nginxErr += `cannot run nginx (scripts/install-deps installs it): ${e.message}`; });
	t.after(async () => {
		nginx.kill('SIGTERM');
		await Promise.race([nginxExit, expire(HANG)]);
		fs.rmSync(dir, { recursive: true, force: true });
	});
	const via = { url: `http://127.0.0.1:${port}/mcp` };
	await waitFor(async () => {
		if (nginx.exitCode !== null || nginxErr.includes('cannot run'))
			throw new Error(`nginx: ${nginxErr}${fs.existsSync(path.join(dir, 'error.log')) ? fs.readFileSync(path.join(dir, 'error.log'), 'utf8') : ''}`);
		try {
			return (await fetch(`http://127.0.0.1:${port}/healthz`)).status === 200;
		} catch {
			return false;
		}
	}, HANG, 'nginx to proxy');
	const sid = await rawSession(via);
	// The agents wait at the mock's gate: the answer cannot have come, so
	// a progress notification read now crossed the proxy as it was sent.
	const res = await post(via, { jsonrpc: '2.0', id: 21, method: 'tools/call',
	    params: { name: 'heavy_orchestrate', _meta: { progressToken: 'px' },
	        arguments: { query: 'Through a proxy [[agent:gate]]', num_agents: 2 } } },
	    { 'Mcp-Session-Id': sid, 'MCP-Protocol-Version': V });
	assert.equal(res.status, 200);
	assert.equal(res.headers.get('content-type'), 'text/event-stream');
	await waitFor(async () => (await srv.mock.stats()).held > 0, HANG, 'the agents to reach the gate');
	// heavyd's heartbeat (HEAVY_HEARTBEAT 1) sends progress while they wait.
	const seen = await readEvents(res, (ev) => ev.msg?.method === 'notifications/progress' &&
	    /waiting|running|agent/i.test(ev.msg.params.message ?? ''));
	assert.ok(seen.events.some((e) => e.msg?.method === 'notifications/progress'));
	assert.equal((await srv.mock.stats()).held > 0, true, 'the agents are still held');
	await srv.mock.open();
	const rest = await readEvents(res, (ev) => ev.msg?.id === 21);
	assert.notEqual(rest.events.at(-1).msg.result.isError, true);
	await srv.stop();
});

/* ------------------------------------------- the stateless revision */

test('log lines over HTTP: a session reads those about its own tasks, and none of the server\'s',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const srv = await startHttp(t);
	const a = await connect(srv, 'reader');
	const lines = [];
	a.client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => lines.push(n.params));
	await a.client.setLoggingLevel('info');
	const b = await connect(srv, 'other');
	// Agent 1 fails once with a 503: the retry is logged with the task's id.
	const r = await a.client.callTool({ name: 'heavy_orchestrate',
	    arguments: { query: 'Logged [[a1:flaky:503:1]]', num_agents: 2 } }, CallToolResultSchema, { timeout: HANG });
	assert.notEqual(r.isError, true);
	await b.transport.terminateSession();	// the server logs it: no task, no reader
	await waitFor(() => /ended by its client/.test(srv.stderr()), HANG, 'the server\'s own line');
	await waitFor(() => lines.some((l) => /^task [0-9a-f]{32}: agent 1: retry/.test(l.data)), HANG,
	    `the retry line (got ${JSON.stringify(lines)})`);
	await a.client.ping();	// anything sent before this has arrived
	assert.deepEqual(lines.filter((l) => !/^task [0-9a-f]{32}: /.test(l.data)), [],
	    'only lines about its own tasks');
	// 2026-07-28: lines only for a request that asks, on its own stream.
	const asked = await answer(await modern(srv, 'tools/call', { name: 'heavy_orchestrate',
	    arguments: { query: 'Logged again [[a1:flaky:503:2]]', num_agents: 2 },  // the mock counts identical requests: the first call's failed once
	    _meta: { 'io.modelcontextprotocol/logLevel': 'info' } }));
	const logged = asked.notes.filter((n) => n.method === 'notifications/message');
	assert.ok(logged.some((n) => /^task [0-9a-f]{32}: agent 1: retry/.test(n.params.data)),
	    `${JSON.stringify(asked.notes)}\n${srv.stderr()}`);
	await a.client.close();
	await srv.stop();
});



const MODERN = '2026-07-28';
const meta = (caps = {}) => ({
	'io.modelcontextprotocol/protocolVersion': MODERN,
	'io.modelcontextprotocol/clientCapabilities': caps,
	'io.modelcontextprotocol/clientInfo': { name: 'modern-test', version: '1' },
});
const TASKS = { extensions: { 'io.modelcontextprotocol/tasks': {} } };
let nextId = 100;

/* A 2026-07-28 POST with its standard headers; extra overrides them. */
function modern(srv, method, params = {}, extra = {}, o = {}) {
	const body = { jsonrpc: '2.0', id: nextId++, method, params: { ...params, _meta: { ...meta(o.caps), ...(params._meta ?? {}) } } };
	const name = params.name ?? params.uri ?? params.taskId;
	return fetch(srv.url, {
		method: 'POST', signal: o.signal,
		headers: {
			'Content-Type': 'application/json', Accept: 'application/json, text/event-stream',
			'MCP-Protocol-Version': MODERN, 'Mcp-Method': method,
			...(name !== undefined ? { 'Mcp-Name': name } : {}), ...extra,
		},
		body: JSON.stringify(o.raw ?? body),
	});
}

/* The final response of a POST, JSON or SSE; with the notifications before it. */
async function answer(res) {
	if (res.headers.get('content-type') === 'application/json')
		return { msg: await res.json(), notes: [] };
	const { events } = await readEvents(res, (ev) => ev.msg && ev.msg.method === undefined);
	const msgs = events.filter((e) => e.msg).map((e) => e.msg);
	return { msg: msgs.at(-1), notes: msgs.slice(0, -1), events };
}

test('2026-07-28 over HTTP: server/discover, results that say what they are, every bad request',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const srv = await startHttp(t, { mock: null });
	const d = await modern(srv, 'server/discover');
	assert.equal(d.status, 200);
	assert.equal(d.headers.get('mcp-session-id'), null, 'no session');
	const dr = (await d.json()).result;
	assert.deepEqual(dr.supportedVersions, [MODERN, '2025-11-25', '2025-06-18', '2025-03-26']);
	assert.equal(dr.resultType, 'complete');
	assert.equal(dr._meta['io.modelcontextprotocol/serverInfo'].name, 'heavyd');
	assert.ok(dr.capabilities.tools && dr.capabilities.extensions['io.modelcontextprotocol/tasks']);
	assert.equal(dr.capabilities.logging, undefined, 'no logging in this revision');
	assert.ok(dr.ttlMs > 0 && dr.cacheScope === 'public');
	assert.match(dr.instructions, /heavy_orchestrate/);

	const a = (await (await modern(srv, 'tools/list')).json()).result;
	const b = (await (await modern(srv, 'tools/list')).json()).result;
	assert.deepEqual(a.tools.map((x) => x.name), b.tools.map((x) => x.name), 'a deterministic order');
	assert.equal(a.resultType, 'complete');
	assert.ok(Number.isInteger(a.ttlMs) && ['public', 'private'].includes(a.cacheScope));
	const rr = (await (await modern(srv, 'resources/read', { uri: 'heavy://config' })).json()).result;
	assert.equal(rr.cacheScope, 'private');
	assert.equal(rr.ttlMs, 0);
	// Mcp-Name in its base64 form is the same name.
	const b64 = `=?base64?${Buffer.from('heavy://config').toString('base64')}?=`;
	assert.equal((await modern(srv, 'resources/read', { uri: 'heavy://config' }, { 'Mcp-Name': b64 })).status, 200);
	// The session header of the handshake era is ignored.
	assert.equal((await modern(srv, 'tools/list', {}, { 'Mcp-Session-Id': 'f'.repeat(32) })).status, 200);

	const bad = [
		['an unsupported version', () => modern(srv, 'tools/list', { _meta: { 'io.modelcontextprotocol/protocolVersion': '2030-01-01' } }, { 'MCP-Protocol-Version': '2030-01-01' }), 400, -32022],
		['a header that disagrees with _meta', () => modern(srv, 'tools/list', { _meta: { 'io.modelcontextprotocol/protocolVersion': '2025-11-25' } }), 400, -32020],
		['no Mcp-Method', () => modern(srv, 'tools/list', {}, { 'Mcp-Method': '' }), 400, -32020],
		['a wrong Mcp-Method', () => modern(srv, 'tools/list', {}, { 'Mcp-Method': 'prompts/list' }), 400, -32020],
		['a wrong Mcp-Name', () => modern(srv, 'tools/call', { name: 'heavy_orchestrate', arguments: {} }, { 'Mcp-Name': 'cancel_task' }), 400, -32020],
		['no Mcp-Name', () => modern(srv, 'prompts/get', { name: 'x' }, { 'Mcp-Name': '' }), 400, -32020],
		['no client capabilities', () => modern(srv, 'tools/list', {}, {}, { raw: { jsonrpc: '2.0', id: 1, method: 'tools/list', params: { _meta: { 'io.modelcontextprotocol/protocolVersion': MODERN } } } }), 400, -32602],
		['ping, gone in this revision', () => modern(srv, 'ping'), 404, -32601],
		['initialize, not in this revision', () => modern(srv, 'initialize', { protocolVersion: MODERN }), 404, -32601],
		['logging/setLevel, gone', () => modern(srv, 'logging/setLevel', { level: 'info' }), 404, -32601],
		['an unknown method', () => modern(srv, 'nope/nope'), 404, -32601],
	];
	for (const [what, send, status, code] of bad) {
		const r = await send();
		assert.equal(r.status, status, what);
		const e = (await r.json()).error;
		assert.equal(e.code, code, `${what}: ${e.message}`);
		if (code === -32022) {
			assert.ok(e.data.supported.includes(MODERN), what);
			assert.equal(e.data.requested, '2030-01-01', what);
		}
	}
	for (const method of ['GET', 'DELETE']) {
		const r = await fetch(srv.url, { method, headers: { 'MCP-Protocol-Version': MODERN, Accept: 'text/event-stream' } });
		assert.equal(r.status, 405, `${method} in ${MODERN}`);
		await r.arrayBuffer();
	}
	await srv.stop();
});

test('2026-07-28 over HTTP: a blocking orchestration streams progress, then its result',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const srv = await startHttp(t);
	const res = await modern(srv, 'tools/call', { name: 'heavy_orchestrate',
	    arguments: { query: 'Modern', num_agents: 2 }, _meta: { progressToken: 'm1' } });
	assert.equal(res.status, 200);
	const { msg, notes, events } = await answer(res);
	assert.notEqual(msg.result.isError, true, JSON.stringify(msg).slice(0, 400));
	assert.equal(msg.result.resultType, 'complete');
	checkShape(msg.result, 2);
	assert.ok(notes.filter((n) => n.method === 'notifications/progress').length >= 3);
	assert.ok(notes.every((n) => n.method !== 'notifications/message'), 'no log lines unasked');
	assert.ok(events.every((e) => e.id === undefined), 'no event ids in this revision');
	await srv.stop();
});

test('2026-07-28 over HTTP: closing the stream cancels the call and kills its workers',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const srv = await startHttp(t);
	const ac = new AbortController();
	const res = await modern(srv, 'tools/call', { name: 'heavy_orchestrate',
	    arguments: { query: 'Cancel by closing [[agent:gate]]', num_agents: 3 }, _meta: { progressToken: 'c1' } },
	    {}, { signal: ac.signal });
	// Wait until agents run (their progress says so), then hang up.
	await readEvents(res, (ev) => /agent/i.test(ev.msg?.params?.message ?? ''));
	const workers = workersOf(srv.proc.pid);
	assert.ok(workers.length > 0, 'workers ran');
	ac.abort();
	await waitFor(() => jobsAlive(workers).length === 0, SOON, 'the workers to die')
	    .catch(() => assert.fail(`still running: ${describe(jobsAlive(workers))}`));
	await waitFor(() => /cancelled: its client closed the stream/.test(srv.stderr()), HANG, 'the log line')
	    .catch((e) => assert.fail(`${e.message}\n--- stderr:\n${srv.stderr()}`));
	await srv.mock.open();
	await srv.stop();
});

test('2026-07-28 over HTTP: the tasks extension, and subscriptions/listen for a task',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const srv = await startHttp(t);
	// Without the extension declared, the call blocks; with it, a task.
	const created = (await (await modern(srv, 'tools/call', { name: 'heavy_orchestrate',
	    arguments: { query: 'As a task [[gate]]', num_agents: 1 } }, {}, { caps: TASKS })).json()).result;
	assert.equal(created.resultType, 'task', JSON.stringify(created));
	assert.match(created.taskId, /^[0-9a-f]{32}$/);
	assert.equal(created.status, 'working');
	assert.ok(Number.isInteger(created.ttlMs) && Number.isInteger(created.pollIntervalMs));
	const id = created.taskId;
	// A listen for it: acknowledged first, then the task's news, tagged.
	const ac = new AbortController();
	const listen = await modern(srv, 'subscriptions/listen', { notifications: { taskIds: [id] } }, {}, { signal: ac.signal });
	assert.equal(listen.headers.get('content-type'), 'text/event-stream');
	const first = await readEvents(listen, (ev) => ev.msg !== undefined);
	const ack = first.events.find((e) => e.msg).msg;
	assert.equal(ack.method, 'notifications/subscriptions/acknowledged');
	assert.deepEqual(ack.params.notifications.taskIds, [id]);
	const sub = ack.params._meta['io.modelcontextprotocol/subscriptionId'];
	const got = (await (await modern(srv, 'tasks/get', { taskId: id }, {}, { caps: TASKS })).json()).result;
	assert.equal(got.status, 'working');
	assert.equal(got.resultType, 'complete');
	const upd = await modern(srv, 'tasks/update', { taskId: id, inputResponses: {} }, {}, { caps: TASKS });
	assert.equal((await upd.json()).result.resultType, 'complete');
	await srv.mock.open();
	const { events } = await readEvents(listen, (ev) => ev.msg?.method === 'notifications/tasks' &&
	    ev.msg.params.status === 'completed');
	const done = events.at(-1).msg.params;
	assert.equal(done._meta['io.modelcontextprotocol/subscriptionId'], sub);
	assert.equal(done.taskId, id);
	assert.equal(done.result.structuredContent.agents.length, 1, 'the result inline');
	ac.abort();
	// Without the extension declared, the tasks methods are -32021 (400).
	const gated = await modern(srv, 'tasks/get', { taskId: id });
	assert.equal(gated.status, 400);
	const ge = (await gated.json()).error;
	assert.equal(ge.code, -32021);
	assert.deepEqual(ge.data.requiredCapabilities, TASKS);
	const final = (await (await modern(srv, 'tasks/get', { taskId: id }, {}, { caps: TASKS })).json()).result;
	assert.equal(final.status, 'completed');
	assert.equal(final.result.structuredContent.agents.length, 1);
	// tasks/cancel of a running task: an empty acknowledgement, then cancelled.
	// The gate closes again, so the task runs until it is cancelled.
	assert.equal((await fetch(srv.mock.baseUrl.replace(/\/v1$/, '/reset'), { method: 'POST' })).status, 200);
	const c = (await (await modern(srv, 'tools/call', { name: 'heavy_orchestrate',
	    arguments: { query: 'Cancel me [[gate]]', num_agents: 1 } }, {}, { caps: TASKS })).json()).result;
	const ack2 = (await (await modern(srv, 'tasks/cancel', { taskId: c.taskId }, {}, { caps: TASKS })).json()).result;
	assert.deepEqual(Object.keys(ack2).sort(), ['_meta', 'resultType']);
	const after = (await (await modern(srv, 'tasks/get', { taskId: c.taskId }, {}, { caps: TASKS })).json()).result;
	assert.equal(after.status, 'cancelled');
	// Cancelling a task that has ended is acknowledged all the same.
	const again = (await (await modern(srv, 'tasks/cancel', { taskId: c.taskId }, {}, { caps: TASKS })).json()).result;
	assert.deepEqual(Object.keys(again).sort(), ['_meta', 'resultType']);
	await srv.mock.open();
	await srv.stop();
});

/*
 * heavyd_egress_breaker: the upstream's breaker as egress reports it,
 * closed from its first call, open after two 503s in a row.
 */
test('GET /metrics shows each upstream\'s circuit breaker state', { timeout: TEST_TIMEOUT }, async (t) => {
	const srv = await startHttp(t, { env: { HEAVY_EGRESS_BREAKER_FAILURES: '2',
	    HEAVY_EGRESS_BREAKER_COOLDOWN: '600', HEAVY_MAX_RETRIES: '5' } });
	const { client } = await connect(srv);
	const gauge = async (state) => {
		const text = await (await fetch(`${srv.base}/metrics`)).text();
		const re = new RegExp(`^heavyd_egress_breaker\\{upstream="([^"]+)",state="${state}"\\} (\\d+)$`, 'm');
		const m = re.exec(text);
		return m ? { upstream: m[1], value: Number(m[2]) } : null;
	};
	await client.callTool({ name: 'heavy_orchestrate', arguments: { query: 'Down [[planner:status:503]]',
	    num_agents: 1, timeout: 30 } }, CallToolResultSchema, { timeout: HANG });
	await waitFor(async () => (await gauge('open'))?.value === 1, undefined, 'the gauge to show the breaker open');
	const open = await gauge('open');
	assert.equal(open.upstream, srv.mock.baseUrl);
	assert.equal((await gauge('closed')).value, 0);
	assert.equal((await gauge('half-open')).value, 0);
	await client.close();
	await srv.stop();
});

test('2026-07-28 on stdio: server/discover as the probe, then requests without a handshake',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const h = spawnRaw({ OPENROUTER_API_KEY: apiKey(), HEAVY_WORKER: WORKER });
	t.after(() => h.kill());
	const d = await h.call({ jsonrpc: '2.0', id: 1, method: 'server/discover', params: { _meta: meta() } });
	assert.ok(d.result.supportedVersions.includes(MODERN));
	assert.equal(d.result.resultType, 'complete');
	const l = await h.call({ jsonrpc: '2.0', id: 2, method: 'tools/list', params: { _meta: meta() } });
	assert.ok(l.result.tools.length > 0);
	assert.equal(l.result.cacheScope, 'public');
	const p = await h.call({ jsonrpc: '2.0', id: 3, method: 'ping', params: { _meta: meta() } });
	assert.equal(p.error.code, -32601);
	const v = await h.call({ jsonrpc: '2.0', id: 4, method: 'tools/list', params: { _meta: { ...meta(), 'io.modelcontextprotocol/protocolVersion': '1999-01-01' } } });
	assert.equal(v.error.code, -32022);
	assert.ok(v.error.data.supported.includes(MODERN));
	// A listen, then its cancellation by notification (stdio has no stream to close).
	const ack = await h.call({ jsonrpc: '2.0', id: 5, method: 'subscriptions/listen', params: { _meta: meta(), notifications: { resourceSubscriptions: ['heavy://tasks/00000000000000000000000000000000'] } } });
	assert.equal(ack.method, 'notifications/subscriptions/acknowledged');
	h.send({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 5 } });
	const after = await h.call({ jsonrpc: '2.0', id: 6, method: 'tools/list', params: { _meta: meta() } });
	assert.equal(after.id, 6, 'the cancelled listen is never answered');
	h.proc.stdin.end();
	const ex = await Promise.race([h.exited, expire(HANG)]);
	assert.deepEqual(ex, { code: 0, signal: null }, h.stderr());
	assert.deepEqual(h.lines, [], 'nothing more, not even the listen\'s answer');
});
