// MCP lifecycle, raw JSON-RPC error handling, argument validation and
// startup without an API key.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { McpError } from '@modelcontextprotocol/sdk/types.js';

import {
	IS_ASAN, TOOL, apiKey, assertNoSanitizerReport, descendants, setup,
	spawnRaw, stillAlive, waitFor, describe,
} from './lib.mjs';
import { HANG, SOON, TEST_TIMEOUT, expire } from './lib.mjs';

test('lifecycle: initialize, ping, logging, tools/list', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv } = await setup(t, { listTools: false, noMock: true });
	const { client } = srv;

	const info = client.getServerVersion();
	assert.equal(info?.name, 'heavyd');
	assert.equal(typeof info.version, 'string');
	assert.ok(info.version.length > 0, 'serverInfo.version is empty');
	assert.equal(typeof info.description, 'string', 'serverInfo.description');

	const caps = client.getServerCapabilities();
	assert.ok(caps?.tools, `capabilities.tools missing: ${JSON.stringify(caps)}`);
	assert.ok(caps?.logging, `capabilities.logging missing: ${JSON.stringify(caps)}`);

	assert.deepEqual(await client.ping(), {});
	await client.setLoggingLevel('debug');
	await client.setLoggingLevel('warning');

	const { tools } = await client.listTools();
	const tool = tools.find((x) => x.name === TOOL);
	assert.ok(tool, `tools/list lacks ${TOOL}: ${JSON.stringify(tools)}`);
	assert.equal(typeof tool.description, 'string');
	const is = tool.inputSchema;
	assert.equal(is.type, 'object');
	assert.deepEqual(is.required, ['query']);
	assert.equal(is.properties.query.type, 'string');
	assert.equal(is.properties.num_agents.type, 'integer');
	assert.equal(is.properties.num_agents.minimum, 1);
	assert.equal(is.properties.num_agents.maximum, 16);
	assert.equal(is.properties.num_agents.default, 4);
	assert.equal(is.properties.timeout.type, 'number');
	assert.equal(is.properties.timeout.minimum, 1);
	assert.equal(is.properties.timeout.maximum, 86400);
	assert.equal(is.properties.timeout.default, 300);
	assert.equal(is.properties.model.type, 'string');
	const os = tool.outputSchema;
	assert.ok(os, 'outputSchema missing');
	assert.equal(os.type, 'object');
	for (const k of ['answer', 'synthesized', 'planner_fallback', 'agents', 'usage', 'elapsed_ms'])
		assert.ok(os.properties?.[k], `outputSchema lacks property ${k}`);

	await srv.shutdown();
});

test('malformed JSON-RPC lines get the right errors and the server keeps serving',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const raw = spawnRaw({
		OPENROUTER_API_KEY: apiKey(),
		HEAVY_BASE_URL: 'http://127.0.0.1:9/v1',
		HEAVY_MAX_LINE_BYTES: '1024',
	});
	t.after(() => raw.kill());
	const expectError = (m, id, code, what) => {
		assert.equal(m.jsonrpc, '2.0', `${what}: ${JSON.stringify(m)}`);
		assert.ok(m.error, `${what}: expected an error, got ${JSON.stringify(m)}`);
		// 2025-11-25 has no id: null; an error with no id to give has none.
		if (id === null)
			assert.ok(!('id' in m), `${what}: an id, in ${JSON.stringify(m)}`);
		else
			assert.equal(m.id, id, `${what}: id, in ${JSON.stringify(m)}`);
		if (code !== undefined)
			assert.equal(m.error.code, code, `${what}: code, in ${JSON.stringify(m)}`);
		assert.equal(typeof m.error.message, 'string');
	};

	// Before initialize: only initialize and ping are served.
	expectError(await raw.call({ jsonrpc: '2.0', id: 0, method: 'tools/list' }), 0,
	    undefined, 'tools/list before initialize');
	assert.deepEqual(await raw.call({ jsonrpc: '2.0', id: 'p0', method: 'ping' }),
	    { jsonrpc: '2.0', id: 'p0', result: {} });

	expectError(await raw.call('not json'), null, -32700, 'not json');
	expectError(await raw.call('[1,2]'), null, -32600, 'a JSON array');

	// An unknown protocol version is answered with the latest.
	const init = await raw.call({
		jsonrpc: '2.0', id: 1, method: 'initialize',
		params: {
			protocolVersion: '2099-01-01', capabilities: {},
			clientInfo: { name: 'raw', version: '0' },
		},
	});
	assert.equal(init.id, 1, JSON.stringify(init));
	assert.ok(init.result, JSON.stringify(init));
	assert.equal(init.result.protocolVersion, '2025-11-25');
	assert.equal(init.result.serverInfo.name, 'heavyd');
	assert.ok(init.result.capabilities.tools);
	raw.send({ jsonrpc: '2.0', method: 'notifications/initialized' });

	expectError(await raw.call({ jsonrpc: '2.0', id: 5, method: 'nope' }), 5, -32601,
	    'unknown method');
	expectError(await raw.call({ jsonrpc: '2.0', id: 6, method: 'tools/call', params: {} }),
	    6, -32602, 'tools/call without a name');
	expectError(await raw.call({
		jsonrpc: '2.0', id: 9, method: 'tools/call',
		params: { name: 'no_such_tool', arguments: {} },
	}), 9, -32602, 'unknown tool');

	const long = JSON.stringify({
		jsonrpc: '2.0', id: 7, method: 'ping', params: { pad: 'x'.repeat(4096) },
	});
	expectError(await raw.call(long), null, -32600, 'an over-long line');

	assert.deepEqual(await raw.call({ jsonrpc: '2.0', id: 8, method: 'ping' }),
	    { jsonrpc: '2.0', id: 8, result: {} });
	const list = await raw.call({ jsonrpc: '2.0', id: 10, method: 'tools/list' });
	assert.equal(list.id, 10);
	assert.ok(list.result.tools.some((x) => x.name === TOOL), JSON.stringify(list));

	const kids = descendants(raw.pid);
	raw.proc.stdin.end();
	const ex = await Promise.race([raw.exited, expire(HANG)]);
	assert.ok(ex, `heavyd did not exit within ${HANG / 1000} s of stdin EOF`);
	assert.deepEqual(ex, { code: 0, signal: null }, `exit status; stderr:\n${raw.stderr()}`);
	assert.equal(raw.lines.length, 0, `unexpected output: ${raw.lines.join('\n')}`);
	await waitFor(() => stillAlive(kids).length === 0, SOON,
	    `descendants to exit: ${describe(stillAlive(kids))}`);
	if (IS_ASAN)
		assertNoSanitizerReport(raw.stderr(), 'heavyd');
});

test('a supported older protocol version is echoed', { timeout: TEST_TIMEOUT }, async (t) => {
	const raw = spawnRaw({ OPENROUTER_API_KEY: apiKey(), HEAVY_BASE_URL: 'http://127.0.0.1:9/v1' });
	t.after(() => raw.kill());
	const init = await raw.call({
		jsonrpc: '2.0', id: 1, method: 'initialize',
		params: {
			protocolVersion: '2025-03-26', capabilities: {},
			clientInfo: { name: 'raw', version: '0' },
		},
	});
	assert.equal(init.result?.protocolVersion, '2025-03-26', JSON.stringify(init));
	raw.proc.stdin.end();
	assert.deepEqual(await raw.exited, { code: 0, signal: null });
	if (IS_ASAN)
		assertNoSanitizerReport(raw.stderr(), 'heavyd');
});

test('invalid tool arguments give isError naming the argument', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv, mock } = await setup(t);
	const cases = [
		[{ query: 'q', num_agents: 0 }, 'num_agents'],
		[{ query: 'q', num_agents: 17 }, 'num_agents'],
		[{ query: 'q', num_agents: 'x' }, 'num_agents'],
		[{ query: 'q', num_agents: 2.5 }, 'num_agents'],
		[{ num_agents: 2 }, 'query'],
		[{ query: 42 }, 'query'],
		[{ query: 'q', timeout: -1 }, 'timeout'],
		[{ query: 'q', timeout: 0 }, 'timeout'],
		[{ query: 'q', timeout: 86401 }, 'timeout'],
		[{ query: 'q', model: 7 }, 'model'],
	];
	for (const [args, name] of cases) {
		const r = await srv.client.callTool({ name: TOOL, arguments: args });
		const what = `arguments ${JSON.stringify(args)}`;
		assert.equal(r.isError, true, `${what}: ${JSON.stringify(r)}`);
		assert.equal(r.content?.[0]?.type, 'text', what);
		assert.match(r.content[0].text, new RegExp(`\\b${name}\\b`), `${what}: ${r.content[0].text}`);
		assert.match(r.content[0].text, /invalid argument/i, `${what}: ${r.content[0].text}`);
	}
	await assert.rejects(srv.client.callTool({ name: 'no_such_tool', arguments: { query: 'q' } }),
	    (e) => e instanceof McpError && e.code === -32602);
	assert.equal((await mock.stats()).requests, 0, 'invalid calls reached the LLM');
	assert.deepEqual(await srv.client.ping(), {});
	await srv.shutdown();
});

test('without OPENROUTER_API_KEY heavyd serves, says why once, and refuses orchestrations', { timeout: TEST_TIMEOUT }, async (t) => {
	const raw = spawnRaw({ HEAVY_BASE_URL: 'http://127.0.0.1:9/v1' });
	t.after(() => raw.kill());
	const init = await raw.call({ jsonrpc: '2.0', id: 1, method: 'initialize', params: {
		protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } });
	assert.ok(init.result, JSON.stringify(init));
	const r = await raw.call({ jsonrpc: '2.0', id: 2, method: 'tools/call',
	    params: { name: 'heavy_orchestrate', arguments: { query: 'q' } } });
	assert.equal(r.result.isError, true, JSON.stringify(r));
	assert.match(r.result.content[0].text, /^no API key: set OPENROUTER_API_KEY, /);
	raw.proc.stdin.end();
	assert.deepEqual(await raw.exited, { code: 0, signal: null }, raw.stderr());
	assert.equal(raw.stderr().match(/warning: no API key/g)?.length, 1, raw.stderr());
	if (IS_ASAN)
		assertNoSanitizerReport(raw.stderr(), 'heavyd');
});
