// Resumption on SQLite (issue 12): a task whose heavyd was killed -9 is
// resumed by the next heavyd on the same state directory, within its
// deadline: the planner's questions and the finished agents' answers are
// kept, only the unfinished agents run again and the synthesis once.
// resume: false, and a deadline passed, keep "interrupted".
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { test } from 'node:test';

import {
	CallToolResultSchema, CreateTaskResultSchema,
} from '@modelcontextprotocol/sdk/types.js';

import {
	PG_ADMIN, TOOL, describe, setup, startServer, stillAlive, tmpdir, waitFor,
} from './lib.mjs';
import { HANG, SOON, TEST_TIMEOUT } from './lib.mjs';

const ENV = { HEAVY_POLL_INTERVAL_MS: '100' };
/* Under PostgreSQL a dead node's task is resumed by takeover instead. */
const SQLITE_ONLY = PG_ADMIN ? 'on PostgreSQL a node resumes by takeover' : false;

async function startTask(srv, args, ttl = 60000) {
	return (await srv.client.request({ method: 'tools/call', params: { name: TOOL, arguments: args } },
	    CreateTaskResultSchema, { task: { ttl }, timeout: HANG })).task.taskId;
}

const tasks = (srv) => srv.client.experimental.tasks;
const result = (srv, id) => tasks(srv).getTaskResult(id, CallToolResultSchema, { timeout: HANG });
const progress = async (srv, id) => (await srv.client.callTool({ name: 'get_task_progress',
    arguments: { task_id: id } }, CallToolResultSchema, { timeout: HANG })).structuredContent;

function stateDir(t, tag) {
	const dir = tmpdir(tag);
	t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
	return dir;
}

/* Waits until a second heavyd on the state directory reads what pred
 * wants in the store (not a guess of how long the writes take). */
async function waitStored(mock, env, t, id, pred, what) {
	const w = await startServer({ mock, env });
	t.after(() => w.kill());
	await waitFor(async () => pred(await progress(w, id)), undefined, what);
	await w.shutdown();
}

/* kill -9, and every process of that heavyd gone. */
async function killHard(srv) {
	const procs = srv.seen();
	process.kill(srv.pid, 'SIGKILL');
	await srv.exited;
	let left = [];
	try {
		await waitFor(() => (left = stillAlive(procs)).length === 0, SOON, 'every process of the killed heavyd');
	} catch {
		assert.fail(`processes outlived heavyd's SIGKILL: ${describe(left)}`);
	}
	await srv.kill();
}

test('kill -9 mid-task: the next heavyd resumes it, running only the unfinished agents',
    { timeout: TEST_TIMEOUT, skip: SQLITE_ONLY }, async (t) => {
	const env = { ...ENV, HEAVY_STATE_DIR: stateDir(t, 'resume'), HEAVY_STORE_WRITE_MS: '60000' };
	const { srv: a, mock } = await setup(t, { env });
	const id = await startTask(a, { query: 'Resume me [[a3:gate:r]]', num_agents: 3 });
	await waitStored(mock, env, t, id, (x) => x.progress?.agents?.length === 3 &&
	    x.progress.agents.every((ag) => ag.question) &&
	    x.progress.agents[0].status === 'ok' && x.progress.agents[1].status === 'ok',
	    'the questions and agents 1 and 2 answered, in the store');
	await waitFor(async () => (await mock.stats()).held >= 1, undefined, 'agent 3 held at its gate');
	const before = await progress(a, id);
	const seen = await mock.stats();
	assert.equal(seen.planner, 1);
	assert.equal(seen.synthesis, 0);
	await killHard(a);
	await mock.openGate('r');

	const b = await startServer({ mock, env });
	t.after(() => b.kill());
	const r = await result(b, id);
	assert.equal(r.isError, false, r.content[0].text);
	const sc = r.structuredContent;
	assert.match(sc.answer, /^Synthesized answer over 3 responses/);
	assert.equal(sc.resumed.why, 'its process died');
	assert.match(sc.resumed.from, new RegExp(`^process ${a.pid} on this host$`));
	assert.equal(sc.resumed.planner_rerun, false);
	assert.deepEqual(sc.resumed.rerun, [3]);
	assert.deepEqual(sc.resumed.kept, [1, 2]);
	assert.deepEqual(sc.agents.map((ag) => ag.status), ['ok', 'ok', 'ok']);
	for (let i = 0; i < 3; i++)
		assert.equal(sc.agents[i].question, before.progress.agents[i].question);
	const after = await mock.stats();
	// The synthesis merged the answers kept from the first run.
	const prompt = after.synthesis_prompts.filter((p) => p.kind === 'synthesis').at(-1).text;
	for (const i of [0, 1])
		assert.ok(prompt.includes(before.progress.agents[i].answer), prompt);
	assert.equal(after.planner, seen.planner, 'no second planner call');
	assert.equal(after.agent, seen.agent + 1, 'agent 3 alone ran again');
	assert.equal(after.synthesis, 1, 'the synthesis ran once');
	// Its usage counts both runs: every call answered, all but agent 3's
	// first, which the kill cut off at its gate.
	assert.equal(sc.usage.llm_calls, after.planner + after.agent - 1 + after.synthesis,
	    JSON.stringify({ usage: sc.usage, after }));
	assert.equal((await tasks(b).getTask(id)).status, 'completed');
	assert.match(b.stderr(), new RegExp(`task ${id}: its process ${a.pid} died; resumed here`));
	await b.shutdown();
});

test('resume: false, or a deadline passed: the task of a killed heavyd fails as interrupted',
    { timeout: TEST_TIMEOUT, skip: SQLITE_ONLY }, async (t) => {
	const env = { ...ENV, HEAVY_STATE_DIR: stateDir(t, 'noresume') };
	const { srv: a, mock } = await setup(t, { env });
	const no = await startTask(a, { query: 'Not resumed [[agent:hang]]', num_agents: 2, resume: false });
	const late = await startTask(a, { query: 'Too late [[agent:hang]]', num_agents: 2, timeout: 8 });
	const deadline = Date.parse((await tasks(a).getTask(late)).createdAt) + 8000;
	await killHard(a);
	const planned = (await mock.stats()).planner;
	// Its deadline is an instant, not a guess of how long anything takes.
	await waitFor(() => Date.now() > deadline + 1000, undefined, "the second task's deadline");

	const b = await startServer({ mock, env });
	t.after(() => b.kill());
	await waitFor(() => /task store: \d+ interrupted/.test(b.stderr()), undefined, 'the store log line');
	assert.match(b.stderr(), /task store: 2 interrupted task\(s\) marked failed/);
	for (const id of [no, late]) {
		const got = await tasks(b).getTask(id);
		assert.equal(got.status, 'failed');
		assert.match(got.statusMessage, /^interrupted by restart/);
	}
	assert.doesNotMatch(b.stderr(), /resumed here/);
	assert.equal((await mock.stats()).planner, planned, 'no planner ran again');
	await b.shutdown();
});
