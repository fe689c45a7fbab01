// The task store through the SDK client: two heavyd processes on one state
// directory; kill -9 mid-task and a restart; a shutdown mid-task; a corrupt
// and an unusable store file; the result cache; per-session usage.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

import {
	CallToolResultSchema, CreateTaskResultSchema,
} from '@modelcontextprotocol/sdk/types.js';

import { checkShape } from './checks.mjs';
import {
	PG_ADMIN, TOOL, describe, expire, rpcError, setup, spawnRaw, startServer, stillAlive, tmpdir,
	waitFor,
} from './lib.mjs';
import { HANG, SOON, TEST_TIMEOUT } from './lib.mjs';

const ENV = { HEAVY_POLL_INTERVAL_MS: '100' };
/* Under PostgreSQL (scripts/pg-integration) there is no store file. */
const SQLITE_ONLY = PG_ADMIN ? 'the task store is in PostgreSQL: there is no tasks.db file' : false;

async function startTask(srv, args, ttl = 60000) {
	return (await srv.client.request({ method: 'tools/call', params: { name: TOOL, arguments: args } },
	    CreateTaskResultSchema, { task: { ttl }, timeout: HANG })).task.taskId;
}

const tasks = (srv) => srv.client.experimental.tasks;
const result = (srv, id, timeout = HANG) =>
	tasks(srv).getTaskResult(id, CallToolResultSchema, { timeout });

async function callTool(srv, name, args = {}) {
	const r = await srv.client.callTool({ name, arguments: args }, CallToolResultSchema, { timeout: HANG });
	return { r, sc: r.structuredContent, text: r.content?.[0]?.text ?? '' };
}

/* A state directory of the test's own, removed afterwards. */
function stateDir(t, tag) {
	const dir = tmpdir(tag);
	t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
	return dir;
}

/* Sums the mock's LLM requests. */
const llmRequests = async (mock) => (await mock.stats()).requests;

test("two heavyd processes on one state directory run tasks at once and see each other's",
    { timeout: TEST_TIMEOUT }, async (t) => {
	const env = { ...ENV, HEAVY_STATE_DIR: stateDir(t, 'two') };
	const { srv: a, mock } = await setup(t, { env });
	const b = await startServer({ mock, env });
	t.after(() => b.kill());

	// Both run until the test opens the mock's gate, however slow the machine.
	const ta = await startTask(a, { query: 'From A [[agent:gate]]', num_agents: 2 });
	const tb = await startTask(b, { query: 'From B [[a1:gate]] ' +
	    '[[a2:tool:calculate:{"expression":"6*7"}]]', num_agents: 2 });
	for (const s of [a, b]) {
		const listed = (await tasks(s).listTasks()).tasks;
		assert.deepEqual(listed.map((x) => [x.taskId, x.status]), [[tb, 'working'], [ta, 'working']]);
		const active = (await callTool(s, 'list_active_tasks')).sc;
		assert.deepEqual(active.active_tasks.map((x) => x.task_id).sort(), [ta, tb].sort());
	}
	assert.equal((await tasks(a).getTask(tb)).status, 'working');
	const p = (await callTool(a, 'get_task_progress', { task_id: tb })).sc;
	assert.ok(['INITIALIZED', 'RUNNING'].includes(p.status), p.status);
	assert.equal(p.progress.agents.length, 2);
	// A note (agent 2's tool call) reaches the store too, throttled.
	await waitFor(async () => (await callTool(a, 'get_task_progress', { task_id: tb }))
	    .sc.progress.agents[1].step === 'calculate', undefined, "B's agent 2 at its calculate step, seen from A");

	// Only the process that runs a task can cancel it; the answer says which.
	// (On PostgreSQL the cancel is passed on instead: pgstore.test.mjs.)
	if (!PG_ADMIN) {
		const e = await rpcError(tasks(a).cancelTask(tb));
		assert.equal(e.code, -32602);
		assert.match(e.message, new RegExp(`another heavyd process \\(pid ${b.pid}\\)`));
		const m = await callTool(a, 'cancel_task', { task_id: tb });
		assert.equal(m.r.isError, true);
		assert.match(m.text, new RegExp(`runs in another heavyd process \\(pid ${b.pid}\\)`));
	}

	// A waits for B's task through the store, and gets what B returns.
	const waits = Promise.all([result(a, ta), result(a, tb), result(b, tb)]);
	await mock.open();
	const [ra, rbA, rbB] = await waits;
	checkShape(ra, 2);
	assert.deepEqual(rbA, rbB);
	assert.match(rbA.structuredContent.answer, /^Synthesized answer over 2 responses/);
	assert.equal((await callTool(a, 'get_task_progress', { task_id: tb })).sc.status, 'COMPLETED');
	await b.shutdown();
	await a.shutdown();
});

test('kill -9 mid-task, then a restart: the finished task is readable, the interrupted one (resume: false) failed',
    { timeout: TEST_TIMEOUT }, async (t) => {
	// Notes are written at most every minute here: only the immediate
	// writes of each agent's end can have recorded agent 1.
	const env = { ...ENV, HEAVY_STATE_DIR: stateDir(t, 'crash'), HEAVY_STORE_WRITE_MS: '60000' };
	const { srv: a, mock } = await setup(t, { env });
	const done = await startTask(a, { query: 'Finished before the crash', num_agents: 2 });
	const before = await result(a, done);
	// resume: false keeps the failure as interrupted (resume.test.mjs
	// resumes them instead).
	const hung = await startTask(a, { query: 'Caught by the crash [[a2:hang]]', num_agents: 2,
	    resume: false });
	const grok = (await callTool(a, 'grok_heavy_orchestrate',
	    { query: 'Also caught [[agent:hang]]', num_agents: 1, resume: false })).sc.task_id;
	await waitFor(async () => (await callTool(a, 'get_task_progress', { task_id: hung }))
	    .sc.progress.agents[0].status === 'ok', undefined, 'agent 1 of the hung task to answer');
	await waitFor(() => a.workers().length >= 2, undefined, 'the hanging agents');
	// Kill only once the store holds what the restart must find (the
	// questions of both tasks, agent 1's answer), as read by a second
	// process on the same state directory: not a guess of how long
	// writing them takes.
	const w = await startServer({ mock, env });
	t.after(() => w.kill());
	const stored = async (id) => (await callTool(w, 'get_task_progress', { task_id: id })).sc;
	for (const id of [hung, grok])
		await waitFor(async () => {
			const x = await stored(id);
			return x.progress?.agents?.length > 0 && x.progress.agents.every((ag) => ag.question);
		}, undefined, `the questions of task ${id} in the store`);
	await waitFor(async () => (await stored(hung)).progress.agents[0].status === 'ok', undefined,
	    "agent 1's answer in the store");
	await w.shutdown();
	const procs = a.seen();

	process.kill(a.pid, 'SIGKILL');
	await a.exited;
	let left = [];
	try {
		await waitFor(() => (left = stillAlive(procs)).length === 0, SOON, 'every process of the killed heavyd');
	} catch {
		assert.fail(`processes outlived heavyd's SIGKILL: ${describe(left)}`);
	}
	await a.kill();

	const b = await startServer({ mock, env });
	t.after(() => b.kill());
	// stderr is another pipe than the answers: wait for the line itself.
	await waitFor(() => /task store: \d+ interrupted/.test(b.stderr()), undefined, 'the store log line');
	assert.match(b.stderr(), /task store: 2 interrupted task\(s\) marked failed/);
	assert.deepEqual(await result(b, done), before);
	const dp = (await callTool(b, 'get_task_progress', { task_id: done })).sc;
	assert.equal(dp.status, 'COMPLETED');
	assert.equal(dp.result.answer, before.structuredContent.answer);

	const got = await tasks(b).getTask(hung);
	assert.equal(got.status, 'failed');
	assert.match(got.statusMessage, /^interrupted by restart/);
	const r = await result(b, hung);
	assert.equal(r.isError, true);
	assert.match(r.content[0].text, /^interrupted by restart: the heavyd process that ran this task is gone/);
	for (const id of [hung, grok]) {
		const x = (await callTool(b, 'get_task_progress', { task_id: id })).sc;
		assert.equal(x.status, 'FAILED');
		assert.match(x.error, /^interrupted by restart/);
		assert.equal(x.progress.phase, 'interrupted');
		assert.ok(x.progress.agents.every((ag) => ag.question), JSON.stringify(x.progress));
		assert.equal(x.progress.agents.at(-1).status, 'interrupted', JSON.stringify(x.progress));
	}
	// The agent that had answered before the crash kept its answer.
	const kept = (await callTool(b, 'get_task_progress', { task_id: hung })).sc.progress.agents[0];
	assert.equal(kept.status, 'ok', JSON.stringify(kept));
	assert.match(kept.answer, /^Answer 1: /);
	assert.equal((await callTool(b, 'list_active_tasks')).sc.total_active, 0);
	const md = await b.client.readResource({ uri: `heavy://tasks/${done}/result` });
	assert.match(md.contents[0].text, new RegExp(`^# Task ${done}: COMPLETED`));
	const ids = await b.client.complete({ ref: { type: 'ref/resource', uri: 'heavy://tasks/{id}' },
	    argument: { name: 'id', value: done.slice(0, 8) } });
	assert.deepEqual(ids.completion.values, [done]);

	// A clean shutdown mid-task records the task as interrupted too.
	const stopped = await startTask(b, { query: 'Stopped by a shutdown [[agent:hang]]', num_agents: 1 });
	await waitFor(() => b.workers().length >= 1, undefined, 'the agent');
	await b.shutdown();
	const c = await startServer({ mock, env });
	t.after(() => c.kill());
	const s = await tasks(c).getTask(stopped);
	assert.equal(s.status, 'failed');
	assert.match(s.statusMessage, /^interrupted by shutdown/);
	await c.shutdown();
});

test('a corrupt store is moved aside with a log line, and the server works',
    { timeout: TEST_TIMEOUT, skip: SQLITE_ONLY }, async (t) => {
	const dir = stateDir(t, 'corrupt');
	fs.writeFileSync(path.join(dir, 'tasks.db'), 'x'.repeat(8192));
	const { srv } = await setup(t, { env: { ...ENV, HEAVY_STATE_DIR: dir } });
	await waitFor(() => /was corrupt/.test(srv.stderr()), undefined, 'the corrupt store log line');
	assert.match(srv.stderr(), new RegExp(`task store ${dir}/tasks\\.db was corrupt; moved it to ` +
	    `${dir}/tasks\\.db\\.corrupt-\\d+ and started a fresh one`));
	const aside = fs.readdirSync(dir).filter((f) => f.startsWith('tasks.db.corrupt-'));
	assert.equal(aside.length, 1);
	assert.equal(fs.readFileSync(path.join(dir, aside[0]), 'utf8'), 'x'.repeat(8192), 'kept as it was');
	assert.equal(fs.statSync(path.join(dir, 'tasks.db')).mode & 0o777, 0o600);
	const id = await startTask(srv, { query: 'After the corruption', num_agents: 1 });
	checkShape(await result(srv, id), 1);
	assert.equal((await tasks(srv).getTask(id)).status, 'completed');
	await srv.shutdown();
});

test('a store that cannot be opened stops heavyd with a message naming it',
    { timeout: TEST_TIMEOUT, skip: SQLITE_ONLY }, async (t) => {
	const dir = stateDir(t, 'unusable');
	fs.mkdirSync(path.join(dir, 'tasks.db'));
	const h = spawnRaw({ OPENROUTER_API_KEY: 'sk-test', HEAVY_STATE_DIR: dir });
	t.after(() => h.kill());
	const ex = await Promise.race([h.exited, expire(HANG)]);
	assert.ok(ex, 'heavyd kept running');
	assert.notEqual(ex.code, 0);
	assert.match(h.stderr(), new RegExp(`task store ${dir}/tasks\\.db: `));
});

test('the result cache answers the same call from the store, flagged, without an LLM request',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const env = { ...ENV, HEAVY_CACHE_TTL: '60', HEAVY_STATE_DIR: stateDir(t, 'cache') };
	const { srv, mock } = await setup(t, { env });
	const q = 'Cache me [[agent:latency:200]]';
	const first = await startTask(srv, { query: q, num_agents: 2 });
	const r1 = await result(srv, first);
	assert.equal(r1.structuredContent.cached, false);
	assert.equal(r1.structuredContent.cached_from, null);
	const n = await llmRequests(mock);

	const again = await srv.orchestrate({ query: q, num_agents: 2 });
	assert.equal(again.sc.cached, true);
	assert.equal(again.sc.cached_from, first);
	assert.equal(again.sc.answer, r1.structuredContent.answer);
	assert.deepEqual(again.result.content, r1.content);
	assert.deepEqual(again.sc.session_usage, r1.structuredContent.session_usage,
	    'a cached answer costs nothing');
	const grok = (await callTool(srv, 'grok_heavy_orchestrate', { query: q, num_agents: 2 })).sc;
	assert.match(grok.message, /cache/);
	const gp = await waitFor(async () => {
		const x = (await callTool(srv, 'get_task_progress', { task_id: grok.task_id })).sc;
		return x.status === 'COMPLETED' ? x : null;
	}, undefined, 'the cached grok task');
	assert.equal(gp.result.cached_from, first);
	const tid = await startTask(srv, { query: q, num_agents: 2 });
	assert.equal((await result(srv, tid)).structuredContent.cached_from, first);
	assert.equal(await llmRequests(mock), n, 'a cached answer made an LLM request');

	// Another configuration is another question; an unclean answer is not served again.
	const three = await srv.orchestrate({ query: q, num_agents: 3 });
	assert.equal(three.sc.cached, false);
	// Faster than asking the LLM (agents take 200 ms here), on any machine.
	assert.ok(again.elapsed < three.elapsed,
	    `a cached answer took ${again.elapsed} ms, an uncached one ${three.elapsed} ms`);
	const partial = 'Partial [[a1:status:400]]';
	assert.equal((await srv.orchestrate({ query: partial, num_agents: 2 })).sc.agents[0].status, 'failed');
	assert.equal((await srv.orchestrate({ query: partial, num_agents: 2 })).sc.cached, false);
	const unsynthesized = 'Unsynthesized [[synth:status:400]]';
	assert.notEqual((await srv.orchestrate({ query: unsynthesized, num_agents: 2 })).sc.synthesis_error, null);
	assert.equal((await srv.orchestrate({ query: unsynthesized, num_agents: 2 })).sc.cached, false);
	assert.ok(await llmRequests(mock) > n);
	await srv.shutdown();
});

test("session_usage sums this session's tasks; the cache is off by default", { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv, mock } = await setup(t, { env: ENV });
	const q = 'Usage [[usage:100]]';
	const a = await srv.orchestrate({ query: q, num_agents: 1 });
	const su = (x) => x.sc.session_usage;
	assert.equal(su(a).tasks, 1);
	assert.equal(su(a).total_tokens, a.sc.usage.total_tokens);
	const n = await llmRequests(mock);
	const b = await srv.orchestrate({ query: q, num_agents: 1 });
	assert.equal(b.sc.cached, false);
	assert.ok(await llmRequests(mock) > n, 'the second call ran');
	assert.equal(su(b).tasks, 2);
	for (const k of ['prompt_tokens', 'completion_tokens', 'total_tokens', 'llm_calls'])
		assert.equal(su(b)[k], a.sc.usage[k] + b.sc.usage[k], k);
	const id = await startTask(srv, { query: q, num_agents: 1 });
	const c = (await result(srv, id)).structuredContent;
	assert.equal(c.session_usage.tasks, 3);
	assert.equal(c.session_usage.total_tokens, su(b).total_tokens + c.usage.total_tokens);
	// Another session counts its own.
	const other = await startServer({ mock, env: ENV });
	t.after(() => other.kill());
	const o = await other.orchestrate({ query: q, num_agents: 1 });
	assert.equal(o.sc.session_usage.tasks, 1);
	await other.shutdown();
	await srv.shutdown();
});
