// What a session is told and offered: the initialize instructions, the
// tools' annotations, tools.compat hiding make-it-heavy's six tools, and
// MCP Tasks only for clients that negotiated 2025-11-25 or later.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

import { CallToolResultSchema, CreateTaskResultSchema, McpError } from '@modelcontextprotocol/sdk/types.js';

import {
	IS_ASAN, TOOL, WORKER, apiKey, assertNoSanitizerReport, rpcError, setup, spawnRaw, startMock, tmpdir, TEST_TIMEOUT
} from './lib.mjs';

const MKH = ['grok_heavy_orchestrate', 'get_task_progress', 'list_active_tasks',
    'get_agent_tools', 'configure_orchestrator', 'cancel_task'];

/* The annotations each tool must carry (absent keys: no claim). */
const HINTS = {
	heavy_orchestrate: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true },
	grok_heavy_orchestrate: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true },
	get_task_progress: { readOnlyHint: true, openWorldHint: false },
	list_active_tasks: { readOnlyHint: true, openWorldHint: false },
	get_agent_tools: { readOnlyHint: true, openWorldHint: false },
	configure_orchestrator: { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: false },
	cancel_task: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
};

test('initialize has instructions; every tool has its annotations', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv } = await setup(t, { noMock: true });
	const text = srv.client.getInstructions();
	assert.equal(typeof text, 'string', 'no instructions in the initialize result');
	for (const word of [TOOL, 'progress', 'minutes', 'grok_heavy_orchestrate', 'get_task_progress',
	    'MCP task'])
		assert.ok(text.includes(word), `instructions lack "${word}": ${text}`);

	const { tools } = await srv.client.listTools();
	assert.deepEqual(tools.map((x) => x.name).sort(), [TOOL, ...MKH].sort());
	for (const tool of tools) {
		const a = tool.annotations;
		assert.ok(a, `${tool.name} has no annotations`);
		assert.equal(a.title, tool.title, `${tool.name}: annotations.title`);
		const { title, ...hints } = a;
		assert.deepEqual(hints, HINTS[tool.name], `${tool.name}: ${JSON.stringify(a)}`);
	}
	await srv.shutdown();
});

test('tools.compat: false (from the file) hides the six make-it-heavy tools; calling one is "Unknown tool"',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const dir = tmpdir('compat');
	t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
	const file = path.join(dir, 'config.yaml');
	fs.writeFileSync(file, 'tools:\n  compat: false\n');
	const { srv } = await setup(t, { noMock: true, env: { HEAVY_CONFIG: file } });

	const { tools } = await srv.client.listTools();
	assert.deepEqual(tools.map((x) => x.name), [TOOL]);
	const text = srv.client.getInstructions();
	assert.ok(!text.includes('grok_heavy_orchestrate'), `instructions name a hidden tool: ${text}`);
	for (const name of MKH) {
		const e = await rpcError(srv.client.callTool({ name, arguments: {} }));
		assert.ok(e instanceof McpError, String(e));
		assert.equal(e.code, -32602, `${name}: ${e.message}`);
		assert.match(e.message, new RegExp(`Unknown tool: ${name}\\b`));
		// Task-augmented, it is the same unknown tool, not "taskSupport forbidden".
		const te = await rpcError(srv.client.request({ method: 'tools/call',
		    params: { name, arguments: {} } }, CreateTaskResultSchema, { task: { ttl: 5000 } }));
		assert.equal(te.code, -32602, `${name} as a task: ${te.message}`);
	}
	await srv.shutdown();
});

test('HEAVY_TOOLS_COMPAT=0 hides them too; a bad value stops heavyd, naming it', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv } = await setup(t, { noMock: true, env: { HEAVY_TOOLS_COMPAT: '0' } });
	assert.deepEqual((await srv.client.listTools()).tools.map((x) => x.name), [TOOL]);
	await srv.shutdown();

	const raw = spawnRaw({ OPENROUTER_API_KEY: apiKey(), HEAVY_TOOLS_COMPAT: 'maybe' });
	t.after(() => raw.kill());
	const ex = await raw.exited;
	assert.notEqual(ex.code, 0, JSON.stringify(ex));
	assert.match(raw.stderr(), /HEAVY_TOOLS_COMPAT: expected 1 or 0/);
});

/* initialize over raw lines with protocolVersion, then initialized. */
async function rawInit(raw, version) {
	const init = await raw.call({
		jsonrpc: '2.0', id: 'init', method: 'initialize',
		params: { protocolVersion: version, capabilities: {}, clientInfo: { name: 'raw', version: '0' } },
	});
	raw.send({ jsonrpc: '2.0', method: 'notifications/initialized' });
	return init.result;
}

test('an older protocol version gets no tasks capability; its task-augmented call runs as a plain one',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const mock = await startMock();
	const raw = spawnRaw({
		OPENROUTER_API_KEY: apiKey(), HEAVY_BASE_URL: mock.baseUrl, HEAVY_WORKER: WORKER,
	});
	t.after(async () => { raw.kill(); await mock.stop(); });

	const init = await rawInit(raw, '2025-06-18');
	assert.equal(init?.protocolVersion, '2025-06-18', JSON.stringify(init));
	assert.equal(init.capabilities.tasks, undefined, JSON.stringify(init.capabilities));
	assert.ok(init.capabilities.tools, JSON.stringify(init.capabilities));
	assert.equal(typeof init.instructions, 'string');
	assert.ok(!init.instructions.includes('MCP task'), init.instructions);

	// The spec: a receiver that did not declare the capability processes
	// the request normally, ignoring the task metadata.
	const res = await raw.call({
		jsonrpc: '2.0', id: 2, method: 'tools/call',
		params: { name: TOOL, arguments: { query: 'Plain, please', num_agents: 1 }, task: { ttl: 60000 } },
	}, 20000);
	assert.equal(res.id, 2, JSON.stringify(res));
	assert.equal(res.result?.task, undefined, `a CreateTaskResult: ${JSON.stringify(res)}`);
	CallToolResultSchema.parse(res.result);
	assert.notEqual(res.result.isError, true, JSON.stringify(res.result));
	assert.match(res.result.structuredContent.answer, /\S/);
	assert.equal((await mock.stats()).planner, 1);

	// tasks/* do not exist in that version.
	for (const [i, method] of ['tasks/list', 'tasks/get', 'tasks/result', 'tasks/cancel'].entries()) {
		const r = await raw.call({ jsonrpc: '2.0', id: 10 + i, method,
		    params: { taskId: '0123456789abcdef0123456789abcdef' } });
		assert.equal(r.error?.code, -32601, `${method}: ${JSON.stringify(r)}`);
	}
	raw.proc.stdin.end();
	assert.deepEqual(await raw.exited, { code: 0, signal: null }, raw.stderr());
	if (IS_ASAN)
		assertNoSanitizerReport(raw.stderr(), 'heavyd');
});

test('2025-11-25 gets the tasks capability over raw lines too', { timeout: TEST_TIMEOUT }, async (t) => {
	const raw = spawnRaw({ OPENROUTER_API_KEY: apiKey(), HEAVY_BASE_URL: 'http://127.0.0.1:9/v1' });
	t.after(() => raw.kill());
	const init = await rawInit(raw, '2025-11-25');
	assert.deepEqual(init.capabilities.tasks, { list: {}, cancel: {}, requests: { tools: { call: {} } } });
	assert.ok(init.instructions.includes('MCP task'), init.instructions);
	const r = await raw.call({ jsonrpc: '2.0', id: 3, method: 'tasks/list', params: {} });
	assert.ok(Array.isArray(r.result?.tasks), JSON.stringify(r));
	raw.proc.stdin.end();
	assert.deepEqual(await raw.exited, { code: 0, signal: null }, raw.stderr());
});
