// MCP Tasks (2025-11-25) through the SDK client: the capability and tool
// negotiation, a task-augmented heavy_orchestrate answered at once,
// tasks/get, tasks/result (blocking; the blocking call's result),
// notifications/tasks/status, progress through the task, tasks/cancel,
// tasks/list (pagination, the owner's tasks only) and ttl.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

import {
	CallToolResultSchema, CreateTaskResultSchema, TaskStatusNotificationSchema,
} from '@modelcontextprotocol/sdk/types.js';

import { checkProgress, checkShape } from './checks.mjs';
import {
	BUILD, HEAVYD, TOOL, describe, rpcError, setup, sleep, startMock, startServer, stillAlive, tmpdir, waitFor,
} from './lib.mjs';
import { HANG, SOON, TEST_TIMEOUT, jobsAlive } from './lib.mjs';

const RELATED = 'io.modelcontextprotocol/related-task';
const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
const POLL = 100;	// HEAVY_POLL_INTERVAL_MS in these tests
const ENV = { HEAVY_POLL_INTERVAL_MS: String(POLL) };

/* heavy_orchestrate as a task: the CreateTaskResult, and how long it took. */
export async function startTask(srv, args, o = {}) {
	const t0 = Date.now();
	const res = await srv.client.request({ method: 'tools/call', params: { name: TOOL, arguments: args } },
	    CreateTaskResultSchema, { task: o.task ?? { ttl: 60000 }, onprogress: o.onprogress, timeout: HANG });
	return { ...res, took: Date.now() - t0 };
}

const tasks = (srv) => srv.client.experimental.tasks;
const result = (srv, id, timeout = 20000) =>
	tasks(srv).getTaskResult(id, CallToolResultSchema, { timeout });

/* Every notifications/tasks/status the client receives. */
function watchStatus(srv) {
	const seen = [];
	srv.client.setNotificationHandler(TaskStatusNotificationSchema, (n) => seen.push(n.params));
	return seen;
}

async function callTool(srv, name, args = {}) {
	const r = await srv.client.callTool({ name, arguments: args }, CallToolResultSchema, { timeout: HANG });
	return { r, sc: r.structuredContent, text: r.content?.[0]?.text ?? '' };
}

test('the tasks capability; taskSupport on heavy_orchestrate only; the others are -32601',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv } = await setup(t);
	assert.deepEqual(srv.client.getServerCapabilities().tasks,
	    { list: {}, cancel: {}, requests: { tools: { call: {} } } });
	const { tools } = await srv.client.listTools();
	for (const tool of tools)
		assert.deepEqual(tool.execution, tool.name === TOOL ? { taskSupport: 'optional' } : undefined,
		    tool.name);
	const asTask = (name, task = { ttl: 5000 }) => srv.client.request({ method: 'tools/call',
	    params: { name, arguments: {} } }, CreateTaskResultSchema, { task });
	const e = await rpcError(asTask('get_agent_tools'));
	assert.equal(e.code, -32601);
	assert.match(e.message, /get_agent_tools does not support task-augmented calls/);
	assert.equal((await rpcError(asTask('no_such_tool'))).code, -32602);
	const ttl = await rpcError(asTask(TOOL, { ttl: 'soon' }));
	assert.equal(ttl.code, -32602);
	assert.match(ttl.message, /task\.ttl/);
	for (const id of ['0123456789abcdef0123456789abcdef', 'not-an-id', '']) {
		for (const call of [tasks(srv).getTask(id), result(srv, id), tasks(srv).cancelTask(id)]) {
			const x = await rpcError(call);
			assert.equal(x.code, -32602, `${id}: ${x.message}`);
			assert.match(x.message, /Task not found/);
		}
	}
	await srv.shutdown();
});

test('a task-augmented call answers at once; tasks/get, tasks/result, status and progress follow',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv, mock } = await setup(t, { env: ENV });
	const statuses = watchStatus(srv);
	const progress = [];
	// The agents wait for the mock's gate: the task runs until the test opens it.
	const q = 'Tasked [[agent:gate]] [[agent:latency:800]] [[a2:tool:calculate:{"expression":"6*7"}]]';
	const { task, took, _meta } = await startTask(srv, { query: q, num_agents: 3, timeout: 60 },
	    { onprogress: (p) => progress.push(p) });
	// At once: before any agent of the task has answered (on the wire,
	// whatever the machine's speed).
	const created = srv.wire.findIndex((w) => w.dir === 'in' && w.m.result?.task?.taskId === task.taskId);
	const agentDone = srv.wire.findIndex((w) => w.dir === 'in' && w.m.method === 'notifications/progress' &&
	    /agent \d+ done/i.test(w.m.params?.message ?? ''));
	assert.ok(created >= 0 && (agentDone < 0 || created < agentDone),
	    `CreateTaskResult (after ${took} ms) came after an agent answered`);
	assert.equal(task.status, 'working');
	assert.match(task.taskId, /^[0-9a-f]{32}$/);
	assert.match(task.createdAt, ISO);
	assert.match(task.lastUpdatedAt, ISO);
	assert.equal(task.ttl, 60000);
	assert.equal(task.pollInterval, POLL);
	assert.match(_meta['io.modelcontextprotocol/model-immediate-response'], new RegExp(task.taskId));

	const working = await tasks(srv).getTask(task.taskId);
	assert.equal(working.status, 'working');
	assert.match(working.statusMessage, /^(planning|agents)/);
	assert.equal(working.createdAt, task.createdAt);

	// tasks/result blocks until the task ends: its answer is the whole
	// result (below), after every progress notification of the task.
	const asked = srv.wire.length;
	const waiting = result(srv, task.taskId);
	await waitFor(() => srv.wire.slice(asked).some((w) => w.dir === 'out' && w.m.method === 'tasks/result'),
	    undefined, 'tasks/result sent');
	await mock.open();
	const r = await waiting;
	const req = srv.wire.slice(asked).find((w) => w.dir === 'out' && w.m.method === 'tasks/result');
	const answered = srv.wire.findIndex((w) => w.dir === 'in' && w.m.id === req.m.id && w.m.method === undefined);
	const lastProgress = srv.wire.findLastIndex((w) => w.dir === 'in' && w.m.method === 'notifications/progress' &&
	    w.m.params?._meta?.[RELATED]?.taskId === task.taskId);
	assert.ok(answered > lastProgress, 'tasks/result answered before the task ended');
	assert.deepEqual(r._meta?.[RELATED], { taskId: task.taskId });
	assert.notEqual(r.isError, true, JSON.stringify(r));
	const sc = checkShape(r, 3);
	assert.match(sc.answer, /^Synthesized answer over 3 responses\./);

	const done = await tasks(srv).getTask(task.taskId);
	assert.equal(done.status, 'completed');
	assert.equal(done.pollInterval, undefined);
	assert.ok(Date.parse(done.lastUpdatedAt) >= Date.parse(done.createdAt));
	await waitFor(() => statuses.find((s) => s.taskId === task.taskId && s.status === 'completed'),
	    undefined, 'the completed status notification');
	assert.equal(statuses.filter((s) => s.taskId === task.taskId).length, 1, JSON.stringify(statuses));

	// The request's progress token kept working, each notice tagged with the task.
	checkProgress(progress, 5);
	const tagged = srv.wire.filter((w) => w.dir === 'in' && w.m.method === 'notifications/progress' &&
	    w.m.params?._meta?.[RELATED]?.taskId === task.taskId);
	assert.ok(tagged.length >= 4, `progress tagged with the task: ${tagged.length}`);

	// The same call, blocking: the same result, field for field.
	const blocking = await srv.orchestrate({ query: q, num_agents: 3, timeout: 60 });
	assert.deepEqual(Object.keys(blocking.sc).sort(), Object.keys(sc).sort());
	assert.deepEqual(blocking.result.content, r.content);
	assert.equal(blocking.result.isError, r.isError);
	const agents = (x) => x.agents.map((a) => [a.index, a.status, a.question, a.model]);
	assert.deepEqual(agents(blocking.sc), agents(sc));
	assert.equal(blocking.sc.strategy, sc.strategy);

	// Asked again, tasks/result returns it again, exactly.
	assert.deepEqual(await result(srv, task.taskId), r);
	await srv.shutdown();
});

test("the SDK's own task stream runs heavy_orchestrate to its result", { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv } = await setup(t, { env: ENV });
	const types = [];
	let final = null;
	for await (const m of tasks(srv).callToolStream({ name: TOOL,
	    arguments: { query: 'Streamed [[agent:latency:300]]', num_agents: 2 } }, CallToolResultSchema,
	    { task: { ttl: 30000 }, timeout: HANG })) {
		types.push(m.type);
		if (m.type === 'error')
			throw m.error;
		if (m.type === 'result')
			final = m.result;
	}
	assert.equal(types[0], 'taskCreated');
	assert.ok(types.includes('taskStatus'), String(types));
	assert.equal(types.at(-1), 'result');
	checkShape(final, 2);
	await srv.shutdown();
});

test('tasks/cancel kills the workers and the task stays cancelled; cancelling again is -32602',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv } = await setup(t, { env: ENV });
	const statuses = watchStatus(srv);
	const { task } = await startTask(srv, { query: 'Hang [[agent:hang]]', num_agents: 3, timeout: 60 });
	await waitFor(() => srv.workers().length >= 3, undefined, 'three agent workers');
	const procs = srv.workers();
	const waiting = result(srv, task.taskId);

	const c = await tasks(srv).cancelTask(task.taskId);
	assert.equal(c.status, 'cancelled');
	assert.equal(c.taskId, task.taskId);
	assert.match(c.statusMessage, /cancelled by tasks\/cancel/);
	let left = procs;
	try {
		await waitFor(() => (left = jobsAlive(procs)).length === 0, SOON, 'the workers to die');
	} catch {
		assert.fail(`workers outlived tasks/cancel: ${describe(left)}`);
	}
	const r = await waiting;
	assert.equal(r.isError, true);
	assert.match(r.content[0].text, /cancelled by tasks\/cancel/);
	assert.deepEqual(r._meta[RELATED], { taskId: task.taskId });
	assert.ok(statuses.some((s) => s.taskId === task.taskId && s.status === 'cancelled'),
	    JSON.stringify(statuses));

	const again = await rpcError(tasks(srv).cancelTask(task.taskId));
	assert.equal(again.code, -32602);
	assert.match(again.message, /Cannot cancel task: already in terminal status 'cancelled'/);
	await sleep(200);
	assert.equal((await tasks(srv).getTask(task.taskId)).status, 'cancelled');
	const p = await callTool(srv, 'get_task_progress', { task_id: task.taskId });
	assert.equal(p.sc.status, 'CANCELLED');
	assert.deepEqual(p.sc.progress.agents.map((a) => a.status), ['cancelled', 'cancelled', 'cancelled']);

	// A completed task cannot be cancelled either.
	const quick = await startTask(srv, { query: 'Quick one', num_agents: 1 });
	await result(srv, quick.task.taskId);
	const late = await rpcError(tasks(srv).cancelTask(quick.task.taskId));
	assert.equal(late.code, -32602);
	assert.match(late.message, /already in terminal status 'completed'/);
	await srv.shutdown();
});

test('bad arguments make a task that fails with the blocking call\'s result', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv } = await setup(t, { env: ENV });
	const statuses = watchStatus(srv);
	const { task } = await startTask(srv, { query: 'q', num_agents: 0 });
	assert.equal(task.status, 'working');
	const r = await result(srv, task.taskId);
	assert.equal(r.isError, true);
	const blocking = await srv.orchestrate({ query: 'q', num_agents: 0 });
	assert.deepEqual(r.content, blocking.result.content);
	assert.match(r.content[0].text, /invalid argument 'num_agents'/);
	const got = await tasks(srv).getTask(task.taskId);
	assert.equal(got.status, 'failed');
	assert.match(got.statusMessage, /num_agents/);
	await waitFor(() => statuses.some((s) => s.taskId === task.taskId && s.status === 'failed'), undefined,
	    'the failed status notification');
	await srv.shutdown();
});

test('tasks/list pages through the tasks, newest first; a bad cursor is -32602', { timeout: TEST_TIMEOUT }, async (t) => {
	const dir = tmpdir('list');
	t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
	const { srv } = await setup(t, { env: { ...ENV, HEAVY_TASKS_PAGE_SIZE: '2', HEAVY_STATE_DIR: dir } });
	const ids = [];
	for (let i = 0; i < 5; i++) {
		ids.push((await startTask(srv, { query: `List ${i}`, num_agents: 1 })).task.taskId);
		await sleep(3);	// distinct creation times
	}
	await Promise.all(ids.map((id) => result(srv, id)));
	const pages = [];
	let cursor;
	do {
		const page = await tasks(srv).listTasks(cursor);
		pages.push(page.tasks.map((x) => x.taskId));
		for (const x of page.tasks) {
			assert.equal(x.status, 'completed');
			assert.match(x.createdAt, ISO);
		}
		cursor = page.nextCursor;
	} while (cursor);
	assert.deepEqual(pages.map((p) => p.length), [2, 2, 1]);
	assert.deepEqual(pages.flat(), [...ids].reverse());
	const bad = await rpcError(tasks(srv).listTasks('not-a-cursor'));
	assert.equal(bad.code, -32602);
	assert.match(bad.message, /cursor/);
	await srv.shutdown();
});

test('ttl: a short one expires the task; a long one is capped; none is the timeout plus HEAVY_TASK_TTL',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv } = await setup(t, { env: { ...ENV, HEAVY_MAX_TASK_TTL: '3600', HEAVY_TASK_TTL: '120' } });
	const short = (await startTask(srv, { query: 'Short-lived', num_agents: 1 }, { task: { ttl: 1200 } })).task;
	assert.equal(short.ttl, 1200);
	const created = Date.parse(short.createdAt);
	await result(srv, short.taskId);
	// Within its ttl it is there (asked in time only on a fast enough machine);
	// past it, it expires.
	const asked = Date.now();
	const got = await tasks(srv).getTask(short.taskId).catch((e) => e);
	if (asked < created + 1000)
		assert.equal(got.status, 'completed', String(got));
	await waitFor(() => tasks(srv).getTask(short.taskId).then(() => false, (e) => e.code === -32602),
	    undefined, 'the task to expire');
	assert.ok(Date.now() >= created + 1200, 'expired before its ttl');
	for (const call of [tasks(srv).getTask(short.taskId), result(srv, short.taskId)]) {
		const e = await rpcError(call);
		assert.equal(e.code, -32602);
		assert.match(e.message, /Task has expired|Task not found/);
	}
	assert.ok(!(await tasks(srv).listTasks()).tasks.some((x) => x.taskId === short.taskId));
	const p = await callTool(srv, 'get_task_progress', { task_id: short.taskId });
	assert.equal(p.r.isError, true);
	assert.match(p.text, /unknown task_id .*expired/);

	assert.equal((await startTask(srv, { query: 'Capped', num_agents: 1 }, { task: { ttl: 1e12 } })).task.ttl,
	    3600 * 1000);
	assert.equal((await startTask(srv, { query: 'Floored', num_agents: 1 }, { task: { ttl: 0 } })).task.ttl, 1000);
	assert.equal((await startTask(srv, { query: 'Default', num_agents: 1, timeout: 30 }, { task: {} })).task.ttl,
	    (30 + 120) * 1000);
	await srv.shutdown();
});

/* Root can run a second heavyd as another user on the same state directory. */
const otherUid = 65534;
const canSwitch = process.getuid?.() === 0 && fs.existsSync('/usr/bin/setpriv');

test("tasks of another owner on the same state directory are neither listed nor found",
    { timeout: TEST_TIMEOUT, skip: canSwitch ? false : 'needs root and setpriv to run a heavyd as another uid' },
    async (t) => {
	const dir = tmpdir('owners');
	fs.chownSync(dir, otherUid, otherUid);
	t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
	const env = { ...ENV, HEAVY_STATE_DIR: dir };
	// The other user's heavyd runs the real binaries (a valgrind wrapper
	// may sit in a directory only root can enter).
	const real = path.dirname(fs.realpathSync(path.join(BUILD, 'heavyd-worker')));
	const mock = await startMock();
	let theirs = null, mine = null;
	t.after(async () => {
		await theirs?.kill();
		await mine?.kill();
		await mock.stop();
	});
	// Theirs first: it makes the state directory's files, as its owner.
	theirs = await startServer({ mock, worker: null,
	    env: { ...env, HEAVY_WORKER: path.join(real, 'heavyd-worker') },
	    command: ['setpriv', `--reuid=${otherUid}`, `--regid=${otherUid}`, '--clear-groups',
		fs.existsSync(path.join(real, 'heavyd')) ? path.join(real, 'heavyd') : HEAVYD] });
	mine = await startServer({ mock, env });

	const their = (await startTask(theirs, { query: 'Theirs', num_agents: 1 })).task.taskId;
	await result(theirs, their);
	const my = (await startTask(mine, { query: 'Mine', num_agents: 1 })).task.taskId;
	await result(mine, my);

	const myList = (await tasks(mine).listTasks()).tasks.map((x) => x.taskId);
	assert.ok(myList.includes(my) && !myList.includes(their), String(myList));
	assert.deepEqual((await tasks(theirs).listTasks()).tasks.map((x) => x.taskId), [their]);
	for (const call of [tasks(mine).getTask(their), result(mine, their), tasks(mine).cancelTask(their)])
		assert.match((await rpcError(call)).message, /Task not found/);
	const p = await callTool(mine, 'get_task_progress', { task_id: their });
	assert.match(p.text, /unknown task_id/);
	const ids = await mine.client.complete({ ref: { type: 'ref/resource', uri: 'heavy://tasks/{id}' },
	    argument: { name: 'id', value: their.slice(0, 6) } });
	assert.ok(!ids.completion.values.includes(their));
	await theirs.shutdown();
	await mine.shutdown();
});
