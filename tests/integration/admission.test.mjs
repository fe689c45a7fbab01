// Admission: past a cap a call fails fast with "busy, retry later", and the
// server keeps serving; the caps are per server, per session and on the
// queue of workers waiting for a slot.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { setup, waitFor } from './lib.mjs';
import { TEST_TIMEOUT } from './lib.mjs';

const HANGING = { query: 'Hang [[agent:hang]]', num_agents: 2, timeout: 60 };

function busy(result, re) {
	assert.equal(result.isError, true, JSON.stringify(result));
	assert.match(result.content[0].text, re);
}

test('one session cannot run more than max_session_tasks at once', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv } = await setup(t, { env: { HEAVY_MAX_SESSION_TASKS: '2' } });
	const held = [1, 2].map(() => srv.client.callTool({ name: 'grok_heavy_orchestrate', arguments: HANGING }));
	const ids = (await Promise.all(held)).map((r) => r.structuredContent.task_id);
	const t0 = Date.now();
	const { result } = await srv.orchestrate({ query: 'one more', num_agents: 1 });
	// Waiting for a slot would take until a held task's agents time out (45 s).
	assert.ok(Date.now() - t0 < 30000, `refused after ${Date.now() - t0} ms: not at once`);
	busy(result, /^busy: this session already runs 2 orchestrations \(max_session_tasks\); retry later$/);
	await srv.client.callTool({ name: 'cancel_task', arguments: { task_id: ids[0] } });
	const again = await srv.orchestrate({ query: 'now it fits', num_agents: 1 });
	assert.notEqual(again.result.isError, true, JSON.stringify(again.result));
	await srv.client.callTool({ name: 'cancel_task', arguments: { task_id: ids[1] } });
	await srv.shutdown();
});

test('a full worker queue refuses new tasks until it drains', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv } = await setup(t, { env: { HEAVY_MAX_WORKERS: '2', HEAVY_MAX_QUEUED_WORKERS: '1' } });
	const r = await srv.client.callTool({ name: 'grok_heavy_orchestrate',
	    arguments: { query: 'Hang [[agent:hang]]', num_agents: 3, timeout: 60 } });
	const id = r.structuredContent.task_id;
	// Two agents hold both slots; the third waits.
	await waitFor(async () => {
		const p = await srv.client.callTool({ name: 'get_task_progress', arguments: { task_id: id } });
		return p.structuredContent.status === 'RUNNING';
	}, undefined, 'the task to run');
	await waitFor(() => srv.workers().length >= 2, undefined, 'two agents in both slots');
	const { result } = await srv.orchestrate({ query: 'more', num_agents: 1 });
	busy(result, /^busy: [12] workers are waiting for a free slot \(max_queued_workers\); retry later$/);
	await srv.client.callTool({ name: 'cancel_task', arguments: { task_id: id } });
	const ok = await srv.orchestrate({ query: 'drained', num_agents: 1 });
	assert.notEqual(ok.result.isError, true, JSON.stringify(ok.result));
	await srv.shutdown();
});
