// JSON-RPC on stdio, as probing and fuzzing found it (issue 14): the
// teardown order at EOF, replies queued at EOF, UTF-8 in and out, ids
// echoed exactly, strict parsing, deep nesting, responses from the client,
// id-less errors per protocol revision, bogus cursors and arguments.
// Every check goes through raw lines (spawnRaw): the SDK would not send
// these.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
	IS_ASAN, WORKER, apiKey, assertNoSanitizerReport, spawnRaw, startMock, waitFor, TEST_TIMEOUT
} from './lib.mjs';

const NOWHERE = 'http://127.0.0.1:9/v1';

function rawServer(t, env = {}) {
	const raw = spawnRaw({ OPENROUTER_API_KEY: apiKey(), HEAVY_BASE_URL: NOWHERE, ...env });
	t.after(() => raw.kill());
	return raw;
}

async function init(raw, version = '2025-11-25') {
	const r = await raw.call({
		jsonrpc: '2.0', id: 'init', method: 'initialize',
		params: { protocolVersion: version, capabilities: {}, clientInfo: { name: 'raw', version: '0' } },
	});
	assert.ok(r.result, JSON.stringify(r));
	raw.send({ jsonrpc: '2.0', method: 'notifications/initialized' });
}

/* stdin closed: exit 0, nothing more than expected, no cut line. */
async function closeAndCheck(raw) {
	raw.proc.stdin.end();
	const ex = await raw.exited;
	assert.deepEqual(ex, { code: 0, signal: null }, `exit status; stderr:\n${raw.stderr()}`);
	assert.equal(raw.tail(), '', 'stdout ends with a cut line');
	assert.deepEqual(raw.notUtf8, [], 'stdout is not UTF-8');
	if (IS_ASAN)
		assertNoSanitizerReport(raw.stderr(), 'heavyd');
}

function expectError(m, id, code, what) {
	assert.ok(m.error, `${what}: expected an error, got ${JSON.stringify(m)}`);
	assert.equal(m.error.code, code, `${what}: code, in ${JSON.stringify(m)}`);
	if (id === undefined)
		assert.ok(!('id' in m), `${what}: an id-less error has no id: ${JSON.stringify(m)}`);
	else
		assert.equal(m.id, id, `${what}: id, in ${JSON.stringify(m)}`);
}

/*
 * The use-after-free at shutdown: a subscription and a task in the
 * background; at EOF the task must end (its watchers run) before the
 * session's tables are freed.  Under valgrind (exit 99) or ASan it failed.
 */
test('EOF with a subscription and a hanging background task: a clean exit',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const mock = await startMock();
	t.after(() => mock.stop());
	const raw = rawServer(t, { HEAVY_BASE_URL: mock.baseUrl, HEAVY_WORKER: WORKER });
	await init(raw);
	assert.deepEqual(await raw.call({ jsonrpc: '2.0', id: 2, method: 'resources/subscribe',
	    params: { uri: 'heavy://config' } }, 30000), { jsonrpc: '2.0', id: 2, result: {} });
	const created = await raw.call({ jsonrpc: '2.0', id: 3, method: 'tools/call', params: {
		name: 'heavy_orchestrate', task: { ttl: 60000 },
		arguments: { query: 'Hang [[agent:hang]]', num_agents: 1, timeout: 600 },
	} }, 30000);
	assert.ok(created.result?.task?.taskId, JSON.stringify(created));
	await waitFor(async () => (await mock.stats()).hangs >= 1, 60000, 'the agent to hang');
	await closeAndCheck(raw);
});

test('2,000 pipelined pings and a last one without a newline: 2,001 whole replies',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const raw = rawServer(t, { HEAVY_MAX_LINE_BYTES: '1024' });
	let text = '';
	for (let i = 1; i <= 2000; i++)
		text += JSON.stringify({ jsonrpc: '2.0', id: i, method: 'ping' }) + '\n';
	text += JSON.stringify({ jsonrpc: '2.0', id: 2001, method: 'ping' });
	raw.write(text);
	await closeAndCheck(raw);
	assert.equal(raw.lines.length, 2001, `replies; stderr:\n${raw.stderr()}`);
	raw.lines.forEach((l, i) =>
		assert.deepEqual(JSON.parse(l), { jsonrpc: '2.0', id: i + 1, result: {} }));
});

test('invalid UTF-8 in is -32700; stdout stays UTF-8', { timeout: TEST_TIMEOUT }, async (t) => {
	const raw = rawServer(t);
	await init(raw);
	const call = (name) => Buffer.concat([
		Buffer.from('{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"x'),
		Buffer.from(name), Buffer.from('","arguments":{}}}\n')]);
	for (const [bytes, what] of [
		[[0xc0, 0xaf], 'an overlong "/"'],
		[[0xe0, 0x80, 0xaf], 'an overlong 3-byte form'],
		[[0xed, 0xa0, 0x80], 'an encoded surrogate'],
		[[0xf4, 0x90, 0x80, 0x80], 'past U+10FFFF'],
		[[0xf8, 0x88, 0x80, 0x80, 0x80], 'a 5-byte form'],
		[[0xe2, 0x82], 'a cut sequence'],
	]) {
		raw.write(call(bytes));
		expectError(await raw.next(), undefined, -32700, what);
	}
	// A name cut for the message must not be cut inside a character.
	const long = 'é'.repeat(120);
	const m = await raw.call({ jsonrpc: '2.0', id: 6, method: 'tools/call',
	    params: { name: long, arguments: {} } });
	expectError(m, 6, -32602, 'a long unknown name');
	assert.match(m.error.message, /^Unknown tool: é+$/u);
	assert.deepEqual(await raw.call({ jsonrpc: '2.0', id: '✓ 😀', method: 'ping' }),
	    { jsonrpc: '2.0', id: '✓ 😀', result: {} });
	await closeAndCheck(raw);
});

/* The next line of stdout as written, for what JSON.parse would round. */
async function nextText(raw) {
	await waitFor(() => raw.lines.length > 0 || raw.proc.exitCode !== null, 10000, 'a line');
	assert.deepEqual(raw.notUtf8, [], 'stdout is not UTF-8');
	return raw.lines.shift();
}

test('integer ids json-c holds exactly are echoed byte for byte', { timeout: TEST_TIMEOUT }, async (t) => {
	const raw = rawServer(t);
	await init(raw);
	for (const id of ['9223372036854775807', '9223372036854775808', '18446744073709551615',
	    '-9223372036854775808', '0']) {
		raw.send(`{"jsonrpc":"2.0","id":${id},"method":"ping"}`);
		assert.equal(await nextText(raw), `{"jsonrpc":"2.0","id":${id},"result":{}}`);
	}
	await closeAndCheck(raw);
});

test('ids past uint64/int64 and lone surrogates are refused, never changed',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const raw = rawServer(t);
	await init(raw);
	for (const id of ['18446744073709551616', '-9223372036854775809', '1' + '0'.repeat(30),
	    '"\\ud800"', '"a\\udc00b"', '"\\ud800\\u0041"']) {
		raw.send(`{"jsonrpc":"2.0","id":${id},"method":"ping"}`);
		expectError(await raw.next(), undefined, -32600, `id ${id}`);
	}
	// A well-formed pair is one character, and fine.
	raw.send('{"jsonrpc":"2.0","id":"\\ud83d\\ude00","method":"ping"}');
	assert.deepEqual(await raw.next(), { jsonrpc: '2.0', id: '😀', result: {} });
	// A progress token json-c would change: refused under the request's id.
	raw.send('{"jsonrpc":"2.0","id":7,"method":"tools/list","params":{"_meta":' +
	    '{"progressToken":"\\udbff"}}}');
	expectError(await raw.next(), 7, -32600, 'a lone surrogate progress token');
	raw.send('{"jsonrpc":"2.0","id":8,"method":"tools/list","params":{"_meta":' +
	    '{"progressToken":99999999999999999999999}}}');
	expectError(await raw.next(), 8, -32600, 'a progress token past uint64');
	await closeAndCheck(raw);
});

test('NaN, Infinity and raw control characters are -32700; a NUL ends no name',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const raw = rawServer(t);
	await init(raw);
	const orchestrate = (args) => `{"jsonrpc":"2.0","id":4,"method":"tools/call",` +
	    `"params":{"name":"heavy_orchestrate","arguments":${args}}}`;
	for (const [line, what] of [
		[orchestrate('{"query":"q","timeout":NaN}'), 'timeout: NaN'],
		[orchestrate('{"query":"q","timeout":Infinity}'), 'timeout: Infinity'],
		[orchestrate('{"query":"q","timeout":-Infinity}'), 'timeout: -Infinity'],
		[orchestrate('{"query":"a\tb"}'), 'a raw tab in a string'],
		[orchestrate('{"query":"q",}'), 'a trailing comma'],
		['{"jsonrpc":"2.0","id":4,"method":"ping"}\x00', 'a NUL after the value'],
		["{'jsonrpc':'2.0','id':4,'method':'ping'}", 'single quotes'],
		['{"jsonrpc":"2.0","id":04,"method":"ping"}', 'a leading zero'],
		['{"jsonrpc":"2.0","id":4,"method":"ping"} /* c */', 'a comment'],
	]) {
		raw.send(line);
		expectError(await raw.next(), undefined, -32700, what);
	}
	raw.send('{"jsonrpc":"2.0","id":5,"method":"ping\\u0000junk"}');
	expectError(await raw.next(), 5, -32601, 'ping\\u0000junk');
	raw.send('{"jsonrpc":"2.0","id":6,"method":"tools/call","params":' +
	    '{"name":"heavy_orchestrate\\u0000x","arguments":{"query":"q"}}}');
	expectError(await raw.next(), 6, -32602, 'heavy_orchestrate\\u0000x');
	raw.send('{"jsonrpc":"2.0","id":7,"method":"tools/call","params":' +
	    '{"name":"heavy_orchestrate\\u0000x","arguments":{"query":"q"},"task":{}}}');
	expectError(await raw.next(), 7, -32602, 'heavy_orchestrate\\u0000x as a task');
	await closeAndCheck(raw);
});

test('deep valid JSON: parsed to 256 levels, refused deeper under its id',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const raw = rawServer(t);
	await init(raw);
	const nest = (n) => '['.repeat(n) + ']'.repeat(n);
	// The message is level 1, params 2, "deep" the rest: 256 levels in all.
	raw.send(`{"jsonrpc":"2.0","id":1,"method":"ping","params":{"deep":${nest(254)}}}`);
	assert.deepEqual(await raw.next(), { jsonrpc: '2.0', id: 1, result: {} });
	raw.send(`{"jsonrpc":"2.0","id":2,"method":"ping","params":{"deep":${nest(255)}}}`);
	expectError(await raw.next(), 2, -32600, 'nested 257 levels');
	raw.send(`{"jsonrpc":"2.0","method":"ping","params":{"deep":${nest(10000)}},"id":"deep"}`);
	expectError(await raw.next(), 'deep', -32600, 'nested 10,001 levels');
	raw.send(`{"jsonrpc":"2.0","id":3,"result":{"deep":${nest(10000)}}}`);
	raw.send('{"jsonrpc":"2.0","id":4,"method":"ping"}');
	assert.deepEqual(await raw.next(), { jsonrpc: '2.0', id: 4, result: {} },
	    'a deep response is ignored');
	await closeAndCheck(raw);
});

test('responses from the client are never answered, with an id or none',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const raw = rawServer(t);
	await init(raw);
	raw.send('{"jsonrpc":"2.0","error":{"code":-32700,"message":"Parse error"}}');
	raw.send('{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"x"}}');
	raw.send('{"jsonrpc":"2.0","id":"x","result":{}}');
	raw.send('{"jsonrpc":"2.0","id":9,"method":"ping"}');
	assert.deepEqual(await raw.next(), { jsonrpc: '2.0', id: 9, result: {} });
	await closeAndCheck(raw);
	assert.deepEqual(raw.lines, []);
});

test('id-less errors: no id from 2025-11-25 on, id null before it', { timeout: TEST_TIMEOUT }, async (t) => {
	for (const [version, expectId] of [['2025-11-25', false], ['2025-06-18', true],
	    ['2025-03-26', true], [null, false]]) {
		const raw = rawServer(t);
		if (version)
			await init(raw, version);
		raw.send('not json');
		const m = await raw.next();
		assert.equal(m.error?.code, -32700, JSON.stringify(m));
		if (expectId)
			assert.equal(m.id, null, `${version}: ${JSON.stringify(m)}`);
		else
			assert.ok(!('id' in m), `${version ?? 'before initialize'}: ${JSON.stringify(m)}`);
		await closeAndCheck(raw);
	}
});

test('a bogus cursor on an unpaginated list and non-object arguments are -32602',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const raw = rawServer(t);
	await init(raw);
	let id = 10;
	for (const method of ['tools/list', 'resources/list', 'resources/templates/list',
	    'prompts/list']) {
		const m = await raw.call({ jsonrpc: '2.0', id: ++id, method, params: { cursor: 'bogus' } });
		expectError(m, id, -32602, `${method} with a cursor`);
		const ok = await raw.call({ jsonrpc: '2.0', id: ++id, method, params: { cursor: null } });
		assert.ok(ok.result, `${method}, cursor null: ${JSON.stringify(ok)}`);
	}
	for (const args of [[], 'q', 7, null, true]) {
		const m = await raw.call({ jsonrpc: '2.0', id: ++id, method: 'tools/call',
		    params: { name: 'heavy_orchestrate', arguments: args } });
		expectError(m, id, -32602, `arguments ${JSON.stringify(args)}`);
	}
	await closeAndCheck(raw);
});

test('EOF during a blocking call: it is answered, interrupted, before the exit',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const mock = await startMock();
	t.after(() => mock.stop());
	const raw = rawServer(t, { HEAVY_BASE_URL: mock.baseUrl, HEAVY_WORKER: WORKER });
	await init(raw);
	raw.send({ jsonrpc: '2.0', id: 'slow', method: 'tools/call', params: {
		name: 'heavy_orchestrate',
		arguments: { query: 'Hang [[agent:hang]]', num_agents: 1, timeout: 600 },
	} });
	await waitFor(async () => (await mock.stats()).hangs >= 1, 60000, 'the agent to hang');
	await closeAndCheck(raw);
	const replies = raw.lines.map((l) => JSON.parse(l)).filter((m) => m.id === 'slow');
	assert.equal(replies.length, 1, raw.lines.join('\n'));
	assert.equal(replies[0].result?.isError, true, JSON.stringify(replies[0]));
	assert.match(replies[0].result.content[0].text, /interrupted by shutdown/);
});

test('EOF during tasks/result for a task another heavyd runs: it is answered',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const mock = await startMock();
	t.after(() => mock.stop());
	const env = { HEAVY_BASE_URL: mock.baseUrl, HEAVY_WORKER: WORKER };
	const a = rawServer(t, env);
	await init(a);
	const created = await a.call({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: {
		name: 'heavy_orchestrate', task: { ttl: 60000 },
		arguments: { query: 'Hang [[agent:hang]]', num_agents: 1, timeout: 600 },
	} }, 30000);
	const taskId = created.result?.task?.taskId;
	assert.ok(taskId, JSON.stringify(created));
	await waitFor(async () => (await mock.stats()).hangs >= 1, 60000, 'the agent to hang');
	const b = rawServer(t, env);
	await init(b);
	b.send({ jsonrpc: '2.0', id: 'r', method: 'tasks/result', params: { taskId } });
	// It waits: a ping sent after it is answered first.
	assert.deepEqual(await b.call({ jsonrpc: '2.0', id: 'p', method: 'ping' }, 30000),
	    { jsonrpc: '2.0', id: 'p', result: {} });
	await closeAndCheck(b);
	assert.equal(b.lines.length, 1, b.lines.join('\n'));
	expectError(JSON.parse(b.lines[0]), 'r', -32603, 'tasks/result at shutdown');
	await closeAndCheck(a);
});

test('a cancellation whose requestId json-c would clamp cancels nothing', { timeout: TEST_TIMEOUT }, async (t) => {
	const mock = await startMock();
	t.after(() => mock.stop());
	const raw = rawServer(t, { HEAVY_BASE_URL: mock.baseUrl, HEAVY_WORKER: WORKER });
	await init(raw);
	raw.send('{"jsonrpc":"2.0","id":18446744073709551615,"method":"tools/call","params":' +
	    '{"name":"heavy_orchestrate","arguments":{"query":"Hang [[agent:hang]]",' +
	    '"num_agents":1,"timeout":600}}}');
	await waitFor(async () => (await mock.stats()).hangs >= 1, 60000, 'the agent to hang');
	raw.send('{"jsonrpc":"2.0","method":"notifications/cancelled","params":' +
	    '{"requestId":18446744073709551616}}');
	assert.deepEqual(await raw.call({ jsonrpc: '2.0', id: 'p', method: 'ping' }, 30000),
	    { jsonrpc: '2.0', id: 'p', result: {} }, 'nothing answers the notification');
	await closeAndCheck(raw);
	// Still running at EOF, so answered as interrupted, under its exact id.
	assert.equal(raw.lines.length, 1, raw.lines.join('\n'));
	assert.match(raw.lines[0], /^\{"jsonrpc":"2\.0","id":18446744073709551615,"result":\{/);
	assert.match(raw.lines[0], /interrupted by shutdown/);
});
