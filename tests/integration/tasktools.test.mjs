// make-it-heavy's task-id tools through the SDK client: a background task
// followed to its result, cancel_task killing workers, list_active_tasks,
// unknown ids, per-session defaults, get_agent_tools, admission.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { CallToolResultSchema } from '@modelcontextprotocol/sdk/types.js';

import { checkShape } from './checks.mjs';
import { describe, setup, sleep, startServer, stillAlive, waitFor } from './lib.mjs';
import { GRACE, HANG, SOON, TEST_TIMEOUT, jobsAlive } from './lib.mjs';

const ID = /^[0-9a-f]{32}$/;

/* Calls a tool; returns the result and its structuredContent. */
async function call(srv, name, args = {}) {
	const result = await srv.client.callTool({ name, arguments: args }, CallToolResultSchema,
	    { timeout: HANG });
	if (!result.isError) {
		assert.ok(result.structuredContent, `${name}: no structuredContent: ${JSON.stringify(result)}`);
		assert.deepEqual(JSON.parse(result.content[0].text), result.structuredContent,
		    `${name}: the text is not the structured result`);
	}
	return { result, sc: result.structuredContent, text: result.content?.[0]?.text ?? '' };
}

async function start(srv, args) {
	const t0 = Date.now();
	const r = await call(srv, 'grok_heavy_orchestrate', args);
	assert.notEqual(r.result.isError, true, r.text);
	assert.match(r.sc.task_id, ID);
	return { ...r.sc, startedIn: Date.now() - t0 };
}

const progress = async (srv, id) => (await call(srv, 'get_task_progress', { task_id: id })).sc;

/* Polls get_task_progress until status is one of want; returns it. */
async function until(srv, id, want, ms = HANG) {
	let last;
	try {
		return await waitFor(async () => {
			last = await progress(srv, id);
			return want.includes(last.status) ? last : null;
		}, ms, `task ${id} to reach ${want}`, 50);
	} catch (e) {
		e.message += `; last: ${JSON.stringify(last)}`;
		throw e;
	}
}

test('tools/list has every make-it-heavy tool with closed schemas', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv } = await setup(t);
	const { tools } = await srv.client.listTools();
	const names = tools.map((x) => x.name);
	for (const n of ['heavy_orchestrate', 'grok_heavy_orchestrate', 'get_task_progress',
	    'list_active_tasks', 'get_agent_tools', 'configure_orchestrator', 'cancel_task']) {
		const tool = tools.find((x) => x.name === n);
		assert.ok(tool, `${n} missing from ${names}`);
		assert.equal(tool.inputSchema.additionalProperties, false, n);
		assert.equal(tool.outputSchema?.type, 'object', n);
	}
	const g = tools.find((x) => x.name === 'grok_heavy_orchestrate').inputSchema.properties;
	assert.deepEqual(Object.keys(g).sort(), ['aggregation_strategy', 'num_agents', 'query', 'resume', 'timeout']);
	assert.deepEqual(g.aggregation_strategy.enum, ['consensus', 'ranked', 'best', 'incremental']);
	await srv.shutdown();
});

test('grok_heavy_orchestrate returns at once; get_task_progress follows it to COMPLETED',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv, mock } = await setup(t);
	// Agent 1 waits for the mock's gate: the task runs until the test has seen it.
	const q = 'Slow agents [[agent:latency:700]] [[a1:gate]] [[a2:tool:calculate:{"expression":"6*7"}]]';
	const t0 = Date.now();
	const s = await start(srv, { query: q, num_agents: 3, timeout: 60, aggregation_strategy: 'consensus' });
	// At once: the task had not ended when it answered (and below: it
	// answered in less time than the task took).
	assert.ok(['INITIALIZED', 'RUNNING'].includes(s.status), s.status);

	const running = await until(srv, s.task_id, ['RUNNING']);
	assert.equal(running.result, null);
	assert.equal(running.error, null);
	assert.equal(running.progress.agents.length, 3);
	for (const a of running.progress.agents)
		assert.ok(['running', 'ok'].includes(a.status), JSON.stringify(a));
	assert.equal(running.tool, 'grok_heavy_orchestrate');

	const list = (await call(srv, 'list_active_tasks')).sc;
	assert.equal(list.total_active, 1, JSON.stringify(list));
	assert.equal(list.active_tasks[0].task_id, s.task_id);
	assert.equal(list.active_tasks[0].agent_count, 3);
	assert.equal(list.active_tasks[0].query, q);

	// The calculate call shows as agent 2's current step while it runs.
	const step = await waitFor(async () => {
		const p = await progress(srv, s.task_id);
		return p.progress.agents[1].step === 'calculate' ? p : p.status === 'COMPLETED' ? 'late' : null;
	}, undefined, "agent 2's step", 50);
	assert.notEqual(step, 'late', 'never saw agent 2 at its calculate step');
	await mock.open();

	const done = await until(srv, s.task_id, ['COMPLETED', 'FAILED']);
	assert.equal(done.status, 'COMPLETED', JSON.stringify(done));
	assert.equal(done.error, null);
	const sc = checkShape({ content: [{ type: 'text', text: done.result.answer }],
	    structuredContent: done.result }, 3);
	assert.match(sc.answer, /^Synthesized answer over 3 responses\./);
	// In seconds: at least the two 700 ms LLM calls in a row, at most the
	// wall time the test has seen.
	const wall = (Date.now() - t0) / 1000;
	assert.ok(done.execution_time >= 1.2 && done.execution_time <= wall,
	    `execution_time ${done.execution_time}, wall ${wall} s`);
	assert.ok(s.startedIn < done.execution_time * 1000,
	    `took ${s.startedIn} ms to answer, the task ran ${done.execution_time} s: not at once`);
	assert.equal(done.progress.phase, 'done');
	assert.deepEqual(done.progress.agents.map((a) => a.status), ['ok', 'ok', 'ok']);
	assert.equal((await call(srv, 'list_active_tasks')).sc.total_active, 0);
	assert.equal((await mock.stats()).synthesis, 1);
	await srv.shutdown();
});

test('cancel_task kills the workers and the task is CANCELLED', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv } = await setup(t);
	const s = await start(srv, { query: 'Everyone hangs [[agent:hang]]', num_agents: 3, timeout: 60 });
	await until(srv, s.task_id, ['RUNNING']);
	await waitFor(() => srv.workers().length >= 3, undefined, 'three agent workers');
	const procs = srv.workers();

	const c = await call(srv, 'cancel_task', { task_id: s.task_id });
	assert.notEqual(c.result.isError, true, c.text);
	assert.deepEqual({ status: c.sc.status, cancelled: c.sc.cancelled }, { status: 'CANCELLED', cancelled: true });
	let left = procs;
	try {
		await waitFor(() => (left = jobsAlive(procs)).length === 0, SOON, 'the workers to die');
	} catch {
		assert.fail(`workers outlived cancel_task: ${describe(left)}`);
	}
	const p = await progress(srv, s.task_id);
	assert.equal(p.status, 'CANCELLED');
	assert.match(p.error, /cancel/);
	assert.deepEqual(p.progress.agents.map((a) => a.status), ['cancelled', 'cancelled', 'cancelled']);
	assert.equal((await call(srv, 'list_active_tasks')).sc.total_active, 0);

	const again = await call(srv, 'cancel_task', { task_id: s.task_id });
	assert.notEqual(again.result.isError, true, again.text);
	assert.equal(again.sc.cancelled, false);
	assert.match(again.sc.message, /already finished/);
	await srv.shutdown();
});

test('heavy_orchestrate calls are registered: listed, and cancel_task ends the blocking call',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv } = await setup(t);
	const call1 = srv.orchestrate({ query: 'Blocking [[agent:hang]]', num_agents: 2, timeout: 60 },
	    { timeout: HANG });
	const listed = await waitFor(async () => {
		const l = (await call(srv, 'list_active_tasks')).sc;
		return l.active_tasks.length === 1 ? l.active_tasks[0] : null;
	}, undefined, 'the call in list_active_tasks');
	assert.equal(listed.tool, 'heavy_orchestrate');
	await waitFor(() => srv.workers().length >= 2, undefined, 'two agent workers');
	const procs = srv.workers();
	const c = await call(srv, 'cancel_task', { task_id: listed.task_id });
	assert.equal(c.sc.status, 'CANCELLED');
	const { result } = await call1;
	assert.equal(result.isError, true, JSON.stringify(result));
	assert.match(result.content[0].text, /cancelled/i);
	await waitFor(() => jobsAlive(procs).length === 0, SOON, 'the workers to die');

	// notifications/cancelled marks the record CANCELLED too.
	const ac = new AbortController();
	const call2 = srv.orchestrate({ query: 'Abort me [[agent:hang]]', num_agents: 2, timeout: 60 },
	    { signal: ac.signal, timeout: HANG });
	call2.catch(() => {});
	const second = await waitFor(async () => {
		const l = (await call(srv, 'list_active_tasks')).sc;
		return l.active_tasks.length === 1 ? l.active_tasks[0] : null;
	}, undefined, 'the second call in list_active_tasks');
	ac.abort('test cancels');
	await assert.rejects(call2);
	const p = await waitFor(async () => {
		const x = await progress(srv, second.task_id);
		return x.status === 'CANCELLED' ? x : null;
	}, undefined, 'CANCELLED after notifications/cancelled');
	assert.match(p.error, /client/);
	await sleep(GRACE); // a grace period for stray messages (shutdown() checks)
	await srv.shutdown();
});

test('unknown, malformed and missing ids and bad arguments are clear errors', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv } = await setup(t);
	const unknown = '0123456789abcdef0123456789abcdef';
	for (const tool of ['get_task_progress', 'cancel_task']) {
		const u = await call(srv, tool, { task_id: unknown });
		assert.equal(u.result.isError, true);
		assert.match(u.text, new RegExp(`unknown task_id ${unknown}.*expired`));
		const m = await call(srv, tool, { task_id: 'not-a-task' });
		assert.equal(m.result.isError, true);
		assert.match(m.text, /invalid argument 'task_id'/);
		const n = await call(srv, tool, {});
		assert.match(n.text, /invalid argument 'task_id': required/);
	}
	const bad = [
		[{ num_agents: 2 }, /'query': required/],
		[{ query: 'q', num_agents: 0 }, /'num_agents'/],
		[{ query: 'q', timeout: 0 }, /'timeout'/],
		[{ query: 'q', aggregation_strategy: 'vote' }, /'aggregation_strategy': expected consensus, ranked, best/],
		[{ query: 'q', model: 'x' }, /'model': unknown argument/],
	];
	for (const [args, re] of bad) {
		const r = await call(srv, 'grok_heavy_orchestrate', args);
		assert.equal(r.result.isError, true, JSON.stringify(args));
		assert.match(r.text, re);
	}
	const l = await call(srv, 'list_active_tasks', { all: true });
	assert.match(l.text, /invalid argument 'all'/);
	assert.equal((await call(srv, 'list_active_tasks')).sc.total_active, 0);
	await srv.shutdown();
});

test('get_agent_tools lists the enabled agent tools', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv } = await setup(t);
	const { sc } = await call(srv, 'get_agent_tools');
	const names = sc.available_tools.map((x) => x.name);
	assert.ok(names.includes('calculate') && names.includes('mark_task_complete'), String(names));
	assert.equal(sc.total_tools, names.length);
	for (const x of sc.available_tools) {
		assert.ok(x.description.length > 10, JSON.stringify(x));
		assert.equal(x.inputSchema.type, 'object', JSON.stringify(x));
	}
	await srv.shutdown();
});

test('configure_orchestrator changes this session only; a running task keeps its settings',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const env = { HEAVY_TASK_TIMEOUT: '20' };
	const { srv, mock } = await setup(t, { env });
	let other = null;
	t.after(() => other?.kill());

	// Session defaults: 4 agents, 20 s.  T1 starts before the change.  The
	// two timeouts are far apart, so that T1 is still running when T2 ends
	// however slow the machine (T2's agents are killed at 1.5 s, T1's at 15).
	const t1 = await start(srv, { query: 'First [[agent:hang]]' });
	const cfg = await call(srv, 'configure_orchestrator', { parallel_agents: 2, task_timeout: 2 });
	assert.deepEqual(cfg.sc.current_config, { parallel_agents: 2, task_timeout: 2, aggregation_strategy: 'consensus' });
	assert.deepEqual(cfg.sc.updates, { parallel_agents: 2, task_timeout: 2 });
	const t2 = await start(srv, { query: 'Second [[agent:hang]]' });

	const d2 = await until(srv, t2.task_id, ['FAILED', 'COMPLETED']);
	assert.equal(d2.result.agents.length, 2, 'T2 did not take the new parallel_agents');
	assert.ok(d2.execution_time < 10, `T2 ran ${d2.execution_time} s with a 2 s timeout (the old one: 20 s)`);
	const p1 = await progress(srv, t1.task_id);
	assert.equal(p1.status, 'RUNNING', 'T1 ended with T2: it took the new timeout');
	assert.equal(p1.progress.agents.length, 4);
	const d1 = await until(srv, t1.task_id, ['FAILED', 'COMPLETED']);
	assert.equal(d1.result.agents.length, 4);
	assert.ok(d1.execution_time >= 14, `T1 ran ${d1.execution_time} s: not its own 20 s`);

	// heavy_orchestrate in this session takes the session's defaults too.
	const h = await srv.orchestrate({ query: 'Blocking default' });
	assert.equal(h.sc.agents.length, 2);

	// A second session (its own server) has the configured defaults.
	other = await startServer({ mock, env });
	const seen = await call(other, 'configure_orchestrator', {});
	assert.deepEqual(seen.sc.current_config, { parallel_agents: 4, task_timeout: 20, aggregation_strategy: 'consensus' });
	assert.deepEqual(seen.sc.updates, {});
	const o = await start(other, { query: 'Other session' });
	const od = await until(other, o.task_id, ['COMPLETED', 'FAILED']);
	assert.equal(od.result.agents.length, 4);
	await other.shutdown();
	other = null;
	await srv.shutdown();
});

test('admission and retention: max_tasks for both tools, max_retained_tasks evicts the oldest',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv } = await setup(t, { env: { HEAVY_MAX_TASKS: '1', HEAVY_MAX_RETAINED_TASKS: '1' } });
	const s = await start(srv, { query: 'Holds the slot [[agent:hang]]', num_agents: 1, timeout: 60 });
	const busy = await call(srv, 'grok_heavy_orchestrate', { query: 'another' });
	assert.equal(busy.result.isError, true);
	assert.match(busy.text, /busy.*retry later/);
	const busy2 = await srv.orchestrate({ query: 'blocking' });
	assert.equal(busy2.result.isError, true);
	assert.match(busy2.result.content[0].text, /busy.*retry later/);
	await call(srv, 'cancel_task', { task_id: s.task_id });

	const a = await start(srv, { query: 'quick one', num_agents: 1 });
	await until(srv, a.task_id, ['COMPLETED']);
	const b = await start(srv, { query: 'quick two', num_agents: 1 });
	await until(srv, b.task_id, ['COMPLETED']);
	// Only one finished record is kept: the cancelled one and a are gone.
	for (const gone of [s.task_id, a.task_id]) {
		const r = await call(srv, 'get_task_progress', { task_id: gone });
		assert.equal(r.result.isError, true, `${gone} is still kept`);
		assert.match(r.text, /unknown task_id/);
	}
	await srv.shutdown();
});
