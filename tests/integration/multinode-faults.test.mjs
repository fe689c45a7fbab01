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
// is lost: a task of the killed node is resumed by the node that takes
// its lease over (or the victim, restarted) and completes.
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

const ROUNDS = IS_VALGRIND ? 5 : 20;	/* a node's start under valgrind takes seconds */

/* Random numbers from a seed (HEAVY_TEST_SEED to repeat a run): mulberry32. */
function random(seed) {
	let a = seed >>> 0;
	return () => {
		a = (a + 0x6d2b79f5) >>> 0;
		let x = Math.imul(a ^ (a >>> 15), a | 1);
		x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
		return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
	};
}

test(`${ROUNDS} rounds of kill -9 of a random node mid-task: no finished result lost, no task completed twice, no task lost`,
    { timeout: 2 * TEST_TIMEOUT }, async (t) => {
	const c = await cluster(t, {});
	const { pg, mock, nodes } = c;
	const nodeOf = async (id) => psql(pg.url, `SELECT node_id FROM tasks WHERE id = '${id}'`);
	const want = new Map();		/* id -> { status, text, tag } */
	const seen = { completed: 0, failed: 0, early: 0, resumed: 0 };
	const seed = Number(process.env.HEAVY_TEST_SEED ?? Date.now() % 1e9);
	const rand = random(seed);
	t.diagnostic(`seed ${seed} (HEAVY_TEST_SEED)`);
	for (let r = 0; r < ROUNDS; r++) {
		// A task in each of three new sessions: on each node, mostly
		// (roundrobin), each with its two agents held at the round's
		// gate (which, once open, lets a resumed agent through too).
		const held = await heldNow(mock);
		const ids = [];
		for (let i = 0; i < 3; i++) {
			const cl = await c.connect();
			ids.push(await startTask(cl, `Round ${r} task ${i} [[agent:gate:r${r}]] [[tag:r${r}t${i}]]`, 2));
		}
		await waitFor(async () => await heldNow(mock) === held + 6, HANG, `round ${r}: its agents at the gate`);
		const where = await Promise.all(ids.map(nodeOf));
		// The victim dies before its task may go on, or races its end.
		const victim = nodes[Math.floor(rand() * nodes.length)];
		const early = rand() < 0.5;
		seen.early += early;
		if (early)
			await victim.kill();
		await mock.openGate(`r${r}`);
		if (!early)
			await victim.kill();
		await victim.start();

		// Every task completes, as a client through the balancer hears
		// it: one of the victim's that was not done, resumed elsewhere.
		const reader = await c.connect();
		for (const [i, id] of ids.entries()) {
			const res = await reader.experimental.tasks.getTaskResult(id, CallToolResultSchema, { timeout: HANG });
			const what = `seed ${seed}, round ${r} (${early ? 'killed first' : 'released first'}), task ${i} on ` +
			    `${where[i]}, ${victim.name} killed: ${text(res)}`;
			assert.notEqual(res.isError, true, what);
			const resumed = res.structuredContent.resumed;
			if (resumed) {
				assert.equal(where[i], victim.name, what);
				assert.equal(resumed.from, `node ${victim.name}`, what);
				seen.resumed++;
			}
			if (early && where[i] === victim.name)
				assert.ok(resumed, what);
			seen.completed++;
			want.set(id, { status: 'completed', text: text(res), tag: `r${r}t${i}`, resumed: !!resumed });
		}
	}
	// Nothing changed since: every result, from every node, as first
	// heard; each task had one synthesis, but for a resumed one whose
	// synthesis the kill cut short (then one more, from the resume).
	await checkEverywhere(c, want);
	const synth = await synthesesByTag(mock);
	for (const [id, w] of want) {
		const n = synth.get(w.tag) ?? 0;
		assert.ok(n === 1 || (w.resumed && n === 2), `task ${id} (${w.tag}, resumed ${w.resumed}): ${n} syntheses`);
	}
	t.diagnostic(`${ROUNDS} rounds (${seen.early} killed before the release): ` +
	    `${seen.completed} tasks completed, ${seen.resumed} of them resumed`);
	assert.equal(seen.completed, 3 * ROUNDS, JSON.stringify(seen));
	assert.ok(seen.resumed > 0, JSON.stringify(seen));
});
