// Three heavyd nodes on one PostgreSQL database (a throw-away cluster)
// behind HAProxy on loopback, as README's "Several nodes" shows it:
// sessions spread over the nodes and stay on theirs; a session's id sent
// to another node is told apart from an unknown one (404 either way, the
// former naming its node); a task created through one node is read and
// awaited through another; kill -9 of the node that runs a task, and the
// client's tasks/result through the balancer gets its result from the node
// that took its lease over and resumed it, only its unfinished agent run
// again (or, with resume: false, the task marked interrupted).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { CallToolResultSchema } from '@modelcontextprotocol/sdk/types.js';

import { HANG, TEST_TIMEOUT, startMock, waitFor } from './lib.mjs';
import { psql, session, sessionKey, startHaproxy, startNode, startTask } from './multinode.mjs';
import { startPg } from './pg.mjs';

/* A ping in session sid, straight to node n: its status and error. */
async function pingOn(n, sid) {
	const r = await fetch(n.url, { method: 'POST', body: JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'ping' }),
	    headers: { 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream',
		'Mcp-Session-Id': sid, 'MCP-Protocol-Version': '2025-11-25' } });
	return { status: r.status, error: (await r.json()).error };
}

test('three nodes behind HAProxy: a task read and awaited through another node; kill -9 of its node and the balancer still answers',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const pg = await startPg(t);
	const mock = await startMock();
	t.after(() => mock.stop());
	const keyFile = sessionKey(t);
	const nodes = [];
	for (const name of ['node-1', 'node-2', 'node-3'])
		nodes.push(await startNode(t, pg, mock, name, { keyFile }));
	const lb = await startHaproxy(t, nodes);
	const nodeOf = async (id) => psql(pg.url, `SELECT node_id FROM tasks WHERE id = '${id}'`);

	// Sessions until two run on different nodes (each its own, by its id).
	const clients = [], on = [];
	t.after(() => Promise.all(clients.map((c) => c.close().catch(() => {}))));
	for (let i = 0; i < 6 && new Set(on).size < 2; i++) {
		const c = await session(lb.url);
		clients.push(c);
		on.push(await nodeOf(await startTask(c, `Where am I ${i}`)));
		// The session's next task runs on the same node.
		assert.equal(await nodeOf(await startTask(c, `Still here ${i}`)), on.at(-1));
	}
	const j = on.findIndex((n) => n !== on[0]);
	assert.ok(j > 0, `sessions on ${on}`);
	const [c1, c2] = [clients[0], clients[j]];

	// c1's session id, sent straight to c2's node: a 404 as for any
	// session that node does not hold (the client starts anew), but one
	// that names the node it belongs to; a forged id is simply unknown.
	const [n1, n2] = [on[0], on[j]].map((name) => nodes.find((n) => n.name === name));
	assert.match(c1.sid(), new RegExp(`^${on[0]}\\.[0-9a-f]{64}$`));
	const foreign = await pingOn(n2, c1.sid());
	assert.equal(foreign.status, 404);
	assert.equal(foreign.error.code, -32001);
	assert.equal(foreign.error.message, `Session not found: a session of node ${on[0]}, not this one ` +
	    '(is the balancer\'s stickiness on Mcp-Session-Id off?)');
	await waitFor(() => n2.stderr().includes(`warning: http: Session not found: a session of node ${on[0]}`),
	    HANG, 'the log line');
	const forged = await pingOn(n2, c1.sid().replace(on[0], on[j]));
	assert.deepEqual([forged.status, forged.error.message], [404, 'Session not found']);
	assert.equal((await pingOn(n1, c1.sid())).status, 200, 'on its own node');

	// Created through node on[0], read and awaited through node on[j].
	const held = await startTask(c1, 'Held [[agent:gate]]');
	assert.equal(await nodeOf(held), on[0]);
	assert.equal((await c2.experimental.tasks.getTask(held)).status, 'working');
	const waiting = c2.experimental.tasks.getTaskResult(held, CallToolResultSchema, { timeout: HANG });
	await mock.open();
	const r = await waiting;
	assert.notEqual(r.isError, true, JSON.stringify(r.content));

	// kill -9 of the node that runs a task: another takes its lease over
	// and resumes it (agent 1's answer kept, agent 2 run again), and the
	// client on another node hears the result through the balancer.  One
	// with resume: false is marked interrupted instead.
	// (The gates were opened above: shut them again.)
	assert.equal((await fetch(mock.baseUrl.replace(/\/v1$/, '/reset'), { method: 'POST' })).status, 200);
	const resumed = await startTask(c1, 'Resumed [[a2:gate:d]]', 2);
	const doomed = await startTask(c1, 'Doomed [[agent:hang]]', 1, { resume: false });
	const victim = nodes.find((n) => n.name === on[0]);
	assert.equal(await nodeOf(resumed), on[0]);
	await waitFor(async () => await psql(pg.url, `SELECT count(*) FROM task_agents WHERE task_id = '${resumed}' ` +
	    "AND idx = 1 AND status = 'ok'") === '1', HANG, "agent 1's answer in the store");
	const seen = c2.experimental.tasks.getTaskResult(doomed, CallToolResultSchema, { timeout: HANG });
	const seenResumed = c2.experimental.tasks.getTaskResult(resumed, CallToolResultSchema, { timeout: HANG });
	assert.equal((await c2.experimental.tasks.getTask(doomed)).status, 'working');
	const planned = (await mock.stats()).planner;
	victim.proc.kill('SIGKILL');
	await mock.openGate('d');
	const r2 = await seen;
	assert.equal(r2.isError, true);
	assert.match(r2.content[0].text, /interrupted: its node stopped renewing its lease/);
	assert.notEqual(await nodeOf(doomed), on[0], 'the node that took it over');
	const r3 = await seenResumed;
	assert.notEqual(r3.isError, true, JSON.stringify(r3.content));
	const sc = r3.structuredContent;
	assert.equal(sc.resumed.from, `node ${on[0]}`);
	assert.equal(sc.resumed.why, 'its node stopped renewing its lease');
	assert.equal(sc.resumed.planner_rerun, false);
	assert.deepEqual(sc.resumed.rerun, [2]);
	assert.deepEqual(sc.resumed.kept, [1]);
	assert.equal((await mock.stats()).planner, planned, 'no second planner call');
	assert.notEqual(await nodeOf(resumed), on[0], 'the node that resumed it');
	// The balancer takes the dead node out: new sessions are served.
	const c3 = await session(lb.url);
	clients.push(c3);
	assert.notEqual(await nodeOf(await startTask(c3, 'After the kill')), on[0]);
});
