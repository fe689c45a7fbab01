// Resources (heavy://config, heavy://tools, heavy://tasks/{id}[/result]),
// subscriptions, prompts and completion, through the SDK client.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ResourceUpdatedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';

import { rpcError, setup, waitFor } from './lib.mjs';
import { TEST_TIMEOUT } from './lib.mjs';

const text = (r) => r.contents[0].text;

test('config and tools resources; the key never shows', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv } = await setup(t);
	const caps = srv.client.getServerCapabilities();
	assert.deepEqual(caps.resources, { subscribe: true, listChanged: false });
	assert.ok(caps.prompts && caps.completions);
	const list = await srv.client.listResources();
	assert.deepEqual(list.resources.map((r) => r.uri).sort(), ['heavy://config', 'heavy://tools']);
	const tmpl = await srv.client.listResourceTemplates();
	assert.deepEqual(tmpl.resourceTemplates.map((r) => r.uriTemplate),
	    ['heavy://tasks/{id}', 'heavy://tasks/{id}/result']);
	const cfg = await srv.client.readResource({ uri: 'heavy://config' });
	assert.equal(cfg.contents[0].mimeType, 'text/yaml');
	assert.match(text(cfg), /^api_key: \(set, masked\)$/m);
	// max_workers auto, sized to this host at startup, says how.
	assert.match(text(cfg), /^limits\.max_workers: \d+  # auto: half of \d+ MiB \((physical memory|cgroup memory\.max)\) at 1024 KiB a worker: \d+/m);
	assert.ok(!text(cfg).includes(srv.key), 'the key is in heavy://config');
	assert.match(srv.stderr(), /info: max_workers: auto, \d+ \(half of \d+ MiB/, 'logged at startup');
	const tools = JSON.parse(text(await srv.client.readResource({ uri: 'heavy://tools' })));
	assert.ok(tools.some((x) => x.name === 'calculate' && x.inputSchema.type === 'object'));
	const e = await rpcError(srv.client.readResource({ uri: 'heavy://nope' }));
	assert.equal(e.code, -32002);
	await srv.shutdown();
});

test('a task resource is subscribed to, updated as agents finish, and read as Markdown', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv, mock } = await setup(t);
	const updates = [];
	srv.client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => updates.push(n.params.uri));
	const started = await srv.client.callTool({ name: 'grok_heavy_orchestrate',
	    arguments: { query: 'Held [[agent:gate]] [[agent:latency:700]]', num_agents: 3 } });
	const id = started.structuredContent.task_id;
	const status = `heavy://tasks/${id}`, result = `${status}/result`;
	await srv.client.subscribeResource({ uri: status });
	await srv.client.subscribeResource({ uri: result });
	const early = await rpcError(srv.client.readResource({ uri: result }));
	assert.equal(early.code, -32002);
	assert.match(early.message, /has not finished/);
	const running = JSON.parse(text(await srv.client.readResource({ uri: status })));
	assert.equal(running.task_id, id);
	assert.ok(['INITIALIZED', 'RUNNING'].includes(running.status), running.status);

	await mock.open(); // the agents answer now
	await waitFor(() => updates.includes(result), undefined, 'the result resource to be updated');
	assert.ok(updates.filter((u) => u === status).length >= 2, `status updates: ${updates}`);
	const done = JSON.parse(text(await srv.client.readResource({ uri: status })));
	assert.equal(done.status, 'COMPLETED');
	const md = text(await srv.client.readResource({ uri: result }));
	assert.match(md, new RegExp(`^# Task ${id}: COMPLETED`));
	assert.match(md, /^\| agent \| status \| model \| question \|$/m);
	assert.match(md, /Usage: \d+ tokens in \d+ LLM calls/);

	await srv.client.unsubscribeResource({ uri: status });
	const other = await rpcError(srv.client.subscribeResource({ uri: `heavy://tasks/${'0'.repeat(32)}` }));
	assert.equal(other.code, -32002);
	await srv.shutdown();
});

test('prompts list, fill in and refuse bad arguments; completion offers values', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv } = await setup(t);
	const { prompts } = await srv.client.listPrompts();
	assert.deepEqual(prompts.map((p) => p.name), ['deep_analysis', 'compare_options', 'fact_check']);
	const p = await srv.client.getPrompt({ name: 'fact_check', arguments: { claim: 'The moon is cheese' } });
	assert.match(p.messages[0].content.text, /heavy_orchestrate tool with num_agents 4/);
	assert.match(p.messages[0].content.text, /Fact-check this claim: The moon is cheese/);
	const bad = await rpcError(srv.client.getPrompt({ name: 'fact_check', arguments: {} }));
	assert.equal(bad.code, -32602);
	assert.match(bad.message, /'claim' is required/);

	const c = await srv.client.complete({ ref: { type: 'ref/prompt', name: 'deep_analysis' },
	    argument: { name: 'depth', value: 'd' } });
	assert.deepEqual(c.completion.values, ['deep']);
	const started = await srv.client.callTool({ name: 'grok_heavy_orchestrate', arguments: { query: 'q', num_agents: 1 } });
	const id = started.structuredContent.task_id;
	const ids = await srv.client.complete({ ref: { type: 'ref/resource', uri: 'heavy://tasks/{id}' },
	    argument: { name: 'id', value: id.slice(0, 5) } });
	assert.deepEqual(ids.completion.values, [id]);
	const none = await rpcError(srv.client.complete({ ref: { type: 'ref/resource', uri: 'heavy://config' },
	    argument: { name: 'id', value: '' } }));
	assert.equal(none.code, -32602);
	await srv.shutdown();
});
