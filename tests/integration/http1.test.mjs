// heavyd's own HTTP/1.1 server (supervisor/h1.c) on the wire, with raw
// sockets: pipelined requests answered in order, Connection: close and
// HTTP/1.0, a streamed reply's chunked framing, Expect: 100-continue, the
// refusals of what it does not take (a chunked body, a head too large or
// of too many lines, a malformed request line), the bound of open
// connections, and the request and idle timeouts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';

import {
	HANG, TEST_TIMEOUT, WORKER, apiKey, startListener, startMock, tmpdir, waitFor,
} from './lib.mjs';

const V = '2025-11-25';
const INIT = JSON.stringify({
	jsonrpc: '2.0', id: 1, method: 'initialize',
	params: { protocolVersion: V, capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
});

async function start(t, env = {}) {
	const mock = await startMock();
	const state = tmpdir('h1-state');
	const srv = await startListener(t, ['--listen', '127.0.0.1:0'], {
		OPENROUTER_API_KEY: apiKey(), HEAVY_STATE_DIR: state, HEAVY_WORKER: WORKER,
		HEAVY_BASE_URL: mock.baseUrl, ...env,
	}, async () => {
		await mock.stop();
		fs.rmSync(state, { recursive: true, force: true });
	});
	srv.port = Number(new URL(srv.url).port);
	return srv;
}

/* A raw connection: what it has read, and whether the server closed it. */
function connect(srv) {
	const sock = net.connect(srv.port, '127.0.0.1');
	const c = { sock, data: '', closed: false };
	sock.setEncoding('latin1');
	sock.on('data', (d) => { c.data += d; });
	sock.on('close', () => { c.closed = true; });
	sock.on('error', () => {});
	t_after.push(() => sock.destroy());
	return c;
}
const t_after = [];

/* The complete responses in s: [{ status, headers, body }], Content-Length
 * or chunked bodies. */
function responses(s) {
	const out = [];
	for (;;) {
		const end = s.indexOf('\r\n\r\n');
		if (end === -1)
			return out;
		const lines = s.slice(0, end).split('\r\n');
		const status = Number(lines[0].split(' ')[1]);
		const headers = {};
		for (const l of lines.slice(1)) {
			const i = l.indexOf(':');
			headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim();
		}
		let rest = s.slice(end + 4), body = '';
		if (status === 100) {
			out.push({ status, headers, body });
			s = rest;
			continue;
		}
		if (headers['transfer-encoding'] === 'chunked') {
			for (;;) {
				const e = rest.indexOf('\r\n');
				if (e === -1)
					return out;
				const n = parseInt(rest.slice(0, e), 16);
				if (rest.length < e + 2 + n + 2)
					return out;
				body += rest.slice(e + 2, e + 2 + n);
				rest = rest.slice(e + 2 + n + 2);
				if (n === 0)
					break;
			}
		} else {
			const n = Number(headers['content-length'] ?? 0);
			if (rest.length < n)
				return out;
			body = rest.slice(0, n);
			rest = rest.slice(n);
		}
		out.push({ status, headers, body });
		s = rest;
	}
}

const until = (c, n) => waitFor(() => responses(c.data).length >= n && responses(c.data), HANG, `${n} responses`);

test('pipelined requests are answered in order; Connection: close closes after its reply',
    { timeout: TEST_TIMEOUT }, async (t) => {
	t.after(() => t_after.splice(0).forEach((f) => f()));
	const srv = await start(t);
	const c = connect(srv);
	c.sock.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\n' +
	    'GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n');
	const r = await until(c, 3);
	await waitFor(() => c.closed, HANG, 'the server to close');
	assert.deepEqual(responses(c.data).map((x) => [x.status, x.body]),
	    [[200, 'ok\n'], [404, 'no such endpoint\n'], [200, 'ready\n']]);
	assert.equal(r[2].headers.connection, 'close');
	assert.ok(r[0].headers.date, 'a Date');
	await srv.stop();
});

test('HTTP/1.0: closed after its reply, or kept with Connection: keep-alive',
    { timeout: TEST_TIMEOUT }, async (t) => {
	t.after(() => t_after.splice(0).forEach((f) => f()));
	const srv = await start(t);
	const a = connect(srv);
	a.sock.write('GET /healthz HTTP/1.0\r\n\r\n');
	await waitFor(() => a.closed, HANG, 'the server to close');
	assert.match(a.data, /^HTTP\/1\.1 200 OK\r\n/);
	assert.equal(responses(a.data)[0].headers.connection, 'close');
	const b = connect(srv);
	b.sock.write('GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n');
	const r = await until(b, 1);
	assert.equal(r[0].headers.connection, 'keep-alive');
	b.sock.write('GET /readyz HTTP/1.0\r\n\r\n');
	await until(b, 2);
	await waitFor(() => b.closed, HANG, 'the server to close');
	await srv.stop();
});

test('a POST: its body by Content-Length, Expect: 100-continue, a streamed reply chunked',
    { timeout: TEST_TIMEOUT }, async (t) => {
	t.after(() => t_after.splice(0).forEach((f) => f()));
	const srv = await start(t);
	const c = connect(srv);
	c.sock.write(`POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
	    `Accept: application/json, text/event-stream\r\nExpect: 100-continue\r\n` +
	    `Content-Length: ${INIT.length}\r\n\r\n`);
	await until(c, 1);
	assert.equal(responses(c.data)[0].status, 100);
	c.sock.write(INIT);
	const r = await until(c, 2);
	assert.equal(r[1].status, 200);
	assert.equal(JSON.parse(r[1].body).result.protocolVersion, V);
	const sid = r[1].headers['mcp-session-id'];
	assert.ok(sid);
	// The GET stream: chunked, its first event at once (2025-11-25).
	c.sock.write(`GET /mcp HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n` +
	    `Mcp-Session-Id: ${sid}\r\nMCP-Protocol-Version: ${V}\r\n\r\n`);
	await waitFor(() => /\r\n\r\n[0-9a-f]+\r\nid: /.test(c.data.slice(c.data.indexOf('text/event-stream'))),
	    HANG, 'the stream\'s first chunk');
	assert.match(c.data, /Transfer-Encoding: chunked\r\n/);
	await srv.stop();
});

test('what it does not take: a chunked body, a head too large or of too many lines, a bad line',
    { timeout: TEST_TIMEOUT }, async (t) => {
	t.after(() => t_after.splice(0).forEach((f) => f()));
	const srv = await start(t, { HEAVY_HTTP_MAX_HEADER_BYTES: '2048', HEAVY_HTTP_MAX_HEADERS: '10' });
	const cases = [
		['POST /mcp HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n', 411],
		['POST /mcp HTTP/1.1\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n{}', 400],
		[`GET /healthz HTTP/1.1\r\nX-Pad: ${'x'.repeat(4096)}\r\n\r\n`, 431],
		[`GET /healthz HTTP/1.1\r\n${'X-A: 1\r\n'.repeat(11)}\r\n`, 431],
		['GET /healthz HTTP/2.0\r\n\r\n', 400],
		['GET healthz HTTP/1.1\r\n\r\n', 400],
		['GET /healthz HTTP/1.1\r\n folded: no\r\n\r\n', 400],
		['POST /mcp HTTP/1.1\r\nContent-Length: -1\r\n\r\n', 400],
	];
	for (const [req, status] of cases) {
		const c = connect(srv);
		c.sock.write(req);
		await waitFor(() => c.closed, HANG, `the server to close after ${status}`);
		const r = responses(c.data);
		assert.equal(r.length, 1, req);
		assert.equal(r[0].status, status, req);
		assert.equal(r[0].headers.connection, 'close', req);
	}
	// Still serving.
	const ok = connect(srv);
	ok.sock.write('GET /healthz HTTP/1.1\r\n\r\n');
	assert.equal((await until(ok, 1))[0].status, 200);
	await srv.stop();
});

test('past http.max_open_connections a connection gets 503 with Retry-After',
    { timeout: TEST_TIMEOUT }, async (t) => {
	t.after(() => t_after.splice(0).forEach((f) => f()));
	const srv = await start(t, { HEAVY_HTTP_MAX_OPEN_CONNECTIONS: '2' });
	const a = connect(srv), b = connect(srv);
	a.sock.write('GET /healthz HTTP/1.1\r\n\r\n');
	b.sock.write('GET /healthz HTTP/1.1\r\n\r\n');
	await until(a, 1);
	await until(b, 1);
	const c = connect(srv);
	await waitFor(() => c.closed, HANG, 'the third to be closed');
	const r = responses(c.data);
	assert.equal(r[0].status, 503);
	assert.equal(r[0].headers['retry-after'], '5');
	a.sock.destroy();
	await waitFor(async () => {
		const d = connect(srv);
		d.sock.write('GET /healthz HTTP/1.1\r\n\r\n');
		const got = await waitFor(() => responses(d.data)[0], HANG, 'an answer');
		d.sock.destroy();
		return got.status === 200;
	}, HANG, 'a place once one closed');
	await srv.stop();
});

test('a request not read whole in http.request_timeout, and an idle connection past http.idle_timeout, are closed',
    { timeout: TEST_TIMEOUT }, async (t) => {
	t.after(() => t_after.splice(0).forEach((f) => f()));
	const srv = await start(t, { HEAVY_HTTP_REQUEST_TIMEOUT: '1', HEAVY_HTTP_IDLE_TIMEOUT: '1' });
	const slow = connect(srv);
	slow.sock.write('GET /healthz HTTP/1.1\r\nHost: x\r\n');
	const idle = connect(srv);
	idle.sock.write('GET /healthz HTTP/1.1\r\n\r\n');
	await until(idle, 1);
	await waitFor(() => slow.closed && idle.closed, HANG, 'both to be closed');
	assert.equal(slow.data, '');
	await srv.stop();
});
