// SIGTERM drains: no new work ("shutting down, retry later"), the running
// tasks finish and are answered, then heavyd exits 0; past the drain
// timeout what is left is killed and recorded "interrupted by shutdown";
// a second SIGTERM stops at once.  The running tasks are held by the
// mock's gate, so nothing here depends on how fast the machine is.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { CallToolResultSchema } from '@modelcontextprotocol/sdk/types.js';

import { checkShape } from './checks.mjs';
import {
	GRACE, HANG, SOON, TEST_TIMEOUT, TOOL, describe, expire, setup, startServer, startSink,
	stillAlive, waitFor,
} from './lib.mjs';

async function tool(srv, name, args) {
	return srv.client.callTool({ name, arguments: args }, CallToolResultSchema, { timeout: HANG });
}

/* Resolves once the mock holds n agents' calls: the task is running. */
async function held(mock, n) {
	await waitFor(async () => (await mock.stats()).held >= n, HANG, `${n} agents held by the gate`);
}

/* heavyd exits 0 and leaves no process behind. */
async function exitsClean(srv, procs) {
	const ex = await Promise.race([srv.exited, expire(HANG)]);
	assert.deepEqual(ex, { code: 0, signal: null }, `exit status; stderr:\n${srv.stderr()}`);
	let left = procs;
	try {
		await waitFor(() => (left = stillAlive(procs)).length === 0, SOON, 'children to exit');
	} catch {
		assert.fail(`left behind: ${describe(left)}`);
	}
}

test('SIGTERM drains: new calls refused, the running task finishes and is answered, exit 0',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const sink = await startSink(t);
	const { srv, mock } = await setup(t, { env: { NOTIFY_SOCKET: sink.path } });
	await sink.wait(/^READY=1/);
	const call = srv.orchestrate({ query: 'Drained [[agent:gate]]', num_agents: 2 });
	await held(mock, 2);
	process.kill(srv.pid, 'SIGTERM');
	await waitFor(() => /info: SIGTERM received; draining: no new tasks, 1 running, 30 s at most/
	    .test(srv.stderr()), HANG, 'the drain to start');
	await sink.wait(/^STOPPING=1\nSTATUS=draining: 1 task, /);

	// Still serving: a new orchestration is refused (both kinds), the rest answers.
	const late = await tool(srv, TOOL, { query: 'too late' });
	assert.equal(late.isError, true, JSON.stringify(late));
	assert.equal(late.content[0].text, 'shutting down, retry later');
	const grok = await tool(srv, 'grok_heavy_orchestrate', { query: 'too late as well' });
	assert.equal(grok.isError, true, JSON.stringify(grok));
	assert.match(grok.content[0].text, /shutting down, retry later/);
	assert.deepEqual(await srv.client.ping(), {});
	assert.equal(await Promise.race([srv.exited, expire(GRACE)]), null, 'exited while a task ran');
	// No reload while stopping: systemd would take its READY=1 for a restart.
	process.kill(srv.pid, 'SIGHUP');
	await waitFor(() => /info: SIGHUP received while stopping; not reloading/.test(srv.stderr()),
	    HANG, 'the SIGHUP refused');

	const procs = srv.seen();
	await mock.open();
	const { result } = await call;
	assert.notEqual(result.isError, true, JSON.stringify(result));
	checkShape(result, 2);
	await exitsClean(srv, procs);
	assert.match(srv.stderr(), /info: drained: every task has ended/);
	assert.doesNotMatch(srv.stderr(), /drain timeout/);
	assert.equal(sink.messages().filter((m) => /^(RELOADING|READY)=1/.test(m)).length, 1,
	    `a reload while stopping: ${JSON.stringify(sink.messages())}`);
	const stats = await mock.stats();
	assert.equal(stats.planner, 1, `the refused calls reached the LLM: ${JSON.stringify(stats)}`);
});

test('SIGTERM with nothing running exits at once', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv } = await setup(t);
	const procs = srv.seen();
	process.kill(srv.pid, 'SIGTERM');
	await exitsClean(srv, procs);
	assert.match(srv.stderr(), /draining: no new tasks, 0 running/);
	assert.match(srv.stderr(), /drained: every task has ended/);
});

test('past the drain timeout the task is killed and recorded "interrupted by shutdown"',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv, mock } = await setup(t, { env: { HEAVY_DRAIN_TIMEOUT: '1' } });
	const started = await tool(srv, 'grok_heavy_orchestrate',
	    { query: 'Never released [[agent:gate]]', num_agents: 2 });
	assert.notEqual(started.isError, true, JSON.stringify(started));
	const id = started.structuredContent.task_id;
	const call = srv.orchestrate({ query: 'Blocking, never released [[agent:gate]]', num_agents: 2 });
	await held(mock, 4);
	const procs = srv.seen();
	process.kill(srv.pid, 'SIGTERM');
	const { result } = await call;
	assert.equal(result.isError, true, JSON.stringify(result));
	assert.match(result.content[0].text, /^interrupted by shutdown/);
	await exitsClean(srv, procs);
	assert.match(srv.stderr(), /warning: drain timeout \(1 s\): interrupting 2 running task\(s\)/);

	// The store has it, for the next heavyd of this state directory.
	const next = await startServer({ mock });
	t.after(() => next.kill());
	const p = await tool(next, 'get_task_progress', { task_id: id });
	assert.equal(p.structuredContent.status, 'FAILED', JSON.stringify(p.structuredContent));
	assert.match(p.structuredContent.error, /^interrupted by shutdown/);
	await next.shutdown();
});

test('a second SIGTERM stops at once, long before the drain timeout', { timeout: TEST_TIMEOUT },
    async (t) => {
	const { srv, mock } = await setup(t, { env: { HEAVY_DRAIN_TIMEOUT: '3600' } });
	const call = srv.orchestrate({ query: 'Held [[agent:gate]]', num_agents: 2 });
	await held(mock, 2);
	const procs = srv.seen();
	process.kill(srv.pid, 'SIGTERM');
	await waitFor(() => /draining: no new tasks, 1 running, 3600 s at most/.test(srv.stderr()),
	    HANG, 'the drain to start');
	process.kill(srv.pid, 'SIGTERM');
	const { result } = await call;
	assert.equal(result.isError, true, JSON.stringify(result));
	assert.match(result.content[0].text, /^interrupted by shutdown/);
	await exitsClean(srv, procs);
	assert.match(srv.stderr(), /info: SIGTERM received; stopping at once/);
});
