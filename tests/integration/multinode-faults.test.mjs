// Three heavyd nodes on one PostgreSQL database behind HAProxy
// (multinode.mjs), and what goes wrong under them.  The database restarts
// mid-run: every node's /readyz says 503 and then 200 again, and every
// task a client was given, running or ended meanwhile or asked for during
// the outage, ends with its result, readable from every node.  Then
// rounds of kill -9 of a random node with a task on each node, before or
// just after the tasks may go on, the node restarted at once: no task
// that completed loses its result (readable from every node, unchanged,
// at the end), none completes twice (the mock's synthesis calls per task,
// by its [[tag]]; two agents each, so that a synthesis runs), and none
// is lost: a task of the killed node ends
// failed as interrupted (resumption is for later), never anything else.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { CallToolResultSchema } from '@modelcontextprotocol/sdk/types.js';

import { HANG, IS_VALGRIND, TEST_TIMEOUT, startMock, waitFor } from './lib.mjs';
import { psql, session, sessionKey, startHaproxy, startNode, startTask } from './multinode.mjs';
import { startPg } from './pg.mjs';

/* The cluster: pg, the mock, three nodes (opts to startNode), HAProxy. */
async function cluster(t, opts) {
	const pg = await startPg(t);
	const mock = await startMock();
	t.after(() => mock.stop());
	const keyFile = sessionKey(t);
	const nodes = [];
	for (const name of ['node-1', 'node-2', 'node-3'])
		nodes.push(await startNode(t, pg, mock, name, { keyFile, ...opts }));
	const lb = await startHaproxy(t, nodes);
	const clients = [];
	t.after(() => Promise.all(clients.map((c) => c.close().catch(() => {}))));
	const connect = async (url = lb.url) => {
		const c = await session(url);
		clients.push(c);
		return c;
	};
	return { pg, mock, nodes, lb, connect };
}

/* How many synthesis calls the mock saw for each [[tag:...]]. */
async function synthesesByTag(mock) {
	const n = new Map();
	for (const a of (await mock.stats()).arrivals) {
		const m = /^synthesis:(.+)$/.exec(a);
		if (m)
			n.set(m[1], (n.get(m[1]) ?? 0) + 1);
	}
	return n;
}

const heldNow = async (mock) => (await mock.stats()).held;
const text = (r) => r.content.map((c) => c.text).join('\n');

/* Every task of want (id -> { status, text }) as each node tells it. */
async function checkEverywhere(c, want) {
	for (const n of c.nodes) {
		const reader = await c.connect(n.url);
		for (const [id, w] of want) {
			const task = await reader.experimental.tasks.getTask(id);
			assert.equal(task.status, w.status, `task ${id} on ${n.name}`);
			const r = await reader.experimental.tasks.getTaskResult(id, CallToolResultSchema, { timeout: HANG });
			assert.equal(r.isError === true, w.status === 'failed', `task ${id} on ${n.name}: ${text(r)}`);
			assert.equal(text(r), w.text, `task ${id}'s result on ${n.name}`);
		}
	}
	const rows = await psql(c.pg.url, `SELECT id || ' ' || status FROM tasks WHERE id IN ` +
	    `(${[...want.keys()].map((id) => `'${id}'`).join(',')})`);
	assert.deepEqual(rows.split('\n').sort(), [...want].map(([id, w]) => `${id} ${w.status}`).sort());
}

test('a database restart mid-run: every node goes not ready and ready again, and every task ends with its result',
    { timeout: TEST_TIMEOUT }, async (t) => {
	// Leases longer than the outage: it costs none.  Calls made during it
	// wait for the store, not for HTTP.
	const c = await cluster(t, { leaseMs: 60000, env: {
		HEAVY_HTTP_REQUEST_TIMEOUT: '3600', HEAVY_STORE_RETRY_MAX_MS: '200' } });
	const { pg, mock, nodes } = c;
	const clients = [];
	for (let i = 0; i < 3; i++)
		clients.push(await c.connect());
	const given = new Map();	/* id -> tag */
	for (const [i, cl] of clients.entries())
		for (let k = 0; k < 2; k++)
			given.set(await startTask(cl, `Across the restart ${i}.${k} [[agent:gate]] [[tag:d${i}${k}]]`, 2),
			    `d${i}${k}`);
	await waitFor(async () => await heldNow(mock) === 12, HANG, 'the twelve agents at the gate');

	await pg.stop();
	for (const n of nodes)
		await waitFor(async () => await n.readyz() === 503, HANG, `${n.name}'s /readyz 503`);
	// The tasks end meanwhile, their ends held by the nodes ...
	await mock.release();
	await waitFor(async () => {
		const s = await synthesesByTag(mock);
		return [...given.values()].every((tag) => s.get(tag) === 1);
	}, HANG, 'the six syntheses', 100);
	// ... and new work waits for the database.
	const late = clients.map((cl, i) => startTask(cl, `During the outage ${i} [[tag:o${i}]]`, 2));
	await pg.start();
	for (const n of nodes)
		await waitFor(async () => await n.readyz() === 200, HANG, `${n.name}'s /readyz 200 again`);
	for (const [i, id] of (await Promise.all(late)).entries())
		given.set(id, `o${i}`);

	const want = new Map();
	for (const [id, tag] of given) {
		const r = await clients[0].experimental.tasks.getTaskResult(id, CallToolResultSchema, { timeout: HANG });
		assert.notEqual(r.isError, true, `task ${id} (${tag}): ${text(r)}`);
		want.set(id, { status: 'completed', text: text(r) });
	}
	await checkEverywhere(c, want);
	const synth = await synthesesByTag(mock);
	for (const tag of given.values())
		assert.equal(synth.get(tag), 1, `the syntheses of ${tag}`);
});
