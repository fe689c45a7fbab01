// scripts/bench cluster: three heavyd nodes on PostgreSQL (a throw-away
// cluster, scripts/pg-cluster) behind HAProxy, against one node on SQLite,
// on this machine, in this run, their phases alternating (the machine
// varies from run to run): orchestrations per second (the mock answers at
// once), tasks/get per second, the store's write latency (p50, p99, from
// heavyd_store_write_duration_seconds, interpolated within its buckets),
// and the time from kill -9 of a node to its task taken over by another
// (its lease expired, the row claimed) and to that task running again
// there (its agent's LLM call at the mock), with the default lease.
// Knobs (environment): CLUSTER_ROUNDS (2), CLUSTER_ORCH (200
// orchestrations a phase), CLUSTER_AGENTS (4), CLUSTER_CONC (20 clients),
// CLUSTER_GET_SECS (5), CLUSTER_KILLS (3), CLUSTER_LEASE_MS (the default,
// 30000), CLUSTER_PEER (a build directory, e.g. of another commit: three
// more nodes of its heavyd on a database of their own in the same
// PostgreSQL, behind a HAProxy of their own, a third setup alternating
// with the others), CLUSTER_ENV (NAME=VALUE,... for this build's nodes).
// Run with node from tests/integration (its SDK).
import { HANG, TOOL, startMock, waitFor } from '../integration/lib.mjs';
import {
	CallToolResultSchema, psql, session, sessionKey, startHaproxy, startNode, startTask,
} from '../integration/multinode.mjs';
import { startPg } from '../integration/pg.mjs';

const env = (k, d) => Number(process.env[k] ?? d);
const ROUNDS = env('CLUSTER_ROUNDS', 2), ORCH = env('CLUSTER_ORCH', 200);
const AGENTS = env('CLUSTER_AGENTS', 4), CONC = env('CLUSTER_CONC', 20);
const GET_SECS = env('CLUSTER_GET_SECS', 5), KILLS = env('CLUSTER_KILLS', 3);
const LEASE_MS = process.env.CLUSTER_LEASE_MS ? Number(process.env.CLUSTER_LEASE_MS) : undefined;
const PEER = process.env.CLUSTER_PEER;
const NODE_ENV = Object.fromEntries((process.env.CLUSTER_ENV ?? '').split(',').filter(Boolean)
    .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));

const cleanups = [];
const t = { after: (fn) => cleanups.push(fn) };

/* n sessions at url. */
async function clients(url, n = CONC) {
	const cs = [];
	for (let i = 0; i < n; i++)
		cs.push(await session(url));
	return cs;
}

/* ORCH orchestrations by CONC clients at once: per second. */
async function orchestrate(cs, tag) {
	let next = 0;
	const t0 = performance.now();
	await Promise.all(cs.map(async (c) => {
		while (next < ORCH) {
			const i = next++;
			const r = await c.request({ method: 'tools/call', params: { name: TOOL,
			    arguments: { query: `Bench ${tag} ${i}`, num_agents: AGENTS } } },
			    CallToolResultSchema, { timeout: HANG });
			if (r.isError)
				throw new Error(`orchestration ${i}: ${JSON.stringify(r.content)}`);
		}
	}));
	return ORCH / ((performance.now() - t0) / 1000);
}

/* tasks/get of the ids, round and round, for GET_SECS: per second. */
async function gets(cs, ids) {
	let n = 0;
	const end = performance.now() + GET_SECS * 1000;
	const t0 = performance.now();
	await Promise.all(cs.map(async (c, k) => {
		for (let i = k; performance.now() < end; i++) {
			await c.experimental.tasks.getTask(ids[i % ids.length]);
			n++;
		}
	}));
	return n / ((performance.now() - t0) / 1000);
}

/* The store-write histogram of nodes, summed: le (s) -> count. */
async function storeHistogram(nodes) {
	const h = new Map();
	for (const n of nodes) {
		const text = await (await fetch(`http://127.0.0.1:${n.port}/metrics`)).text();
		for (const m of text.matchAll(/^heavyd_store_write_duration_seconds_bucket\{[^}]*le="([^"]+)"\} (\d+)$/gm))
			h.set(m[1], (h.get(m[1]) ?? 0) + Number(m[2]));
	}
	return h;
}

/* Quantile q (ms) of the writes between histograms a and b. */
function quantile(a, b, q) {
	const les = [...b.keys()].filter((le) => le !== '+Inf').map(Number).sort((x, y) => x - y);
	const count = (le) => (b.get(String(le)) ?? 0) - (a.get(String(le)) ?? 0);
	const total = (b.get('+Inf') ?? 0) - (a.get('+Inf') ?? 0);
	if (total === 0)
		return NaN;
	let lo = 0, below = 0;
	for (const le of les) {
		const c = count(le);
		if (c >= q * total)
			return 1000 * (lo + (le - lo) * (q * total - below) / Math.max(c - below, 1));
		lo = le;
		below = c;
	}
	return 1000 * lo;	/* beyond the last bucket: at least that */
}

/*
 * kill -9 of the node that runs a held task: ms until another takes it
 * over (the row's epoch bumped), and until it runs again there (its agent
 * asks the mock again); then it is let go and must end resumed.
 */
async function killToResumed(c) {
	const id = await startTask(c.lbClient, 'Bench kill [[agent:gate]]', 1);
	await waitFor(async () => (await c.mock.stats()).held > 0, HANG, 'the agent at the gate');
	const where = await psql(c.pg.url, `SELECT node_id FROM tasks WHERE id = '${id}'`);
	const victim = c.nodes.find((n) => n.name === where);
	const other = c.nodes.find((n) => n !== victim);
	const watcher = await session(other.url);
	const waiting = watcher.experimental.tasks.getTaskResult(id, CallToolResultSchema, { timeout: 10 * HANG });
	if ((await watcher.experimental.tasks.getTask(id)).status !== 'working')
		throw new Error('the held task ended');
	const agents = (await c.mock.stats()).agent;
	const t0 = performance.now();
	await victim.kill();
	await waitFor(async () => Number(await psql(c.pg.url, `SELECT lease_epoch FROM tasks WHERE id = '${id}'`)) > 0,
	    10 * HANG, 'the takeover', 50);
	const taken = performance.now() - t0;
	await waitFor(async () => (await c.mock.stats()).agent > agents, 10 * HANG, 'its agent again', 50);
	const running = performance.now() - t0;
	await c.mock.release();
	const r = await waiting;
	if (r.isError || !r.structuredContent?.resumed)
		throw new Error(`the killed node's task: ${JSON.stringify(r)}`);
	await watcher.close();
	await victim.start();
	c.lbClient = await session(c.lb.url);	/* its session may have died */
	return { taken, running };
}

/* Three nodes of the build in PEER, on a database of their own. */
async function peerSetup(pg, mock, keyFile, leaseMs) {
	await psql(pg.url, 'CREATE DATABASE peer');
	const url = new URL(pg.url);
	url.pathname = '/peer';
	const db = { ...pg, url: url.href };
	const opts = { keyFile, leaseMs, heavyd: `${PEER}/heavyd`,
	    env: { HEAVY_WORKER: `${PEER}/heavyd-worker` } };
	const nodes = [];
	for (const name of ['peer-1', 'peer-2', 'peer-3'])
		nodes.push(await startNode(t, db, mock, name, opts));
	const lb = await startHaproxy(t, nodes);
	return { name: `3 nodes, PostgreSQL, HAProxy: ${PEER}`, url: lb.url, nodes };
}

async function main() {
	const mock = await startMock('bench-mock');
	t.after(() => mock.stop());
	const pg = await startPg(t, 'bench-pg');
	const keyFile = sessionKey(t);
	const opts = { keyFile, env: NODE_ENV, ...(LEASE_MS ? { leaseMs: LEASE_MS } : { leaseMs: 30000 }) };
	const nodes = [];
	for (const name of ['node-1', 'node-2', 'node-3'])
		nodes.push(await startNode(t, pg, mock, name, opts));
	const lb = await startHaproxy(t, nodes);
	const lite = await startNode(t, null, mock, 'sqlite');
	const setups = [
		{ name: '3 nodes, PostgreSQL, HAProxy', url: lb.url, nodes },
		{ name: '1 node, SQLite', url: lite.url, nodes: [lite] },
	];
	if (PEER)
		setups.push(await peerSetup(pg, mock, keyFile, opts.leaseMs));
	console.log(`== cluster: ${ORCH} ${AGENTS}-agent orchestrations by ${CONC} clients a phase (0 ms mock); ` +
	    `tasks/get for ${GET_SECS} s; ${ROUNDS} rounds, the two setups alternating`);
	for (const s of setups) {
		s.cs = await clients(s.url);
		s.ids = [];
		for (let i = 0; i < 3 * CONC; i++)
			s.ids.push(await startTask(s.cs[i % CONC], `Bench pool ${i}`, 1));
		s.orch = []; s.get = []; s.p50 = []; s.p99 = [];
	}
	for (let r = 0; r < ROUNDS; r++)
		for (const s of setups) {
			const before = await storeHistogram(s.nodes);
			s.orch.push(await orchestrate(s.cs, `${r}`));
			const after = await storeHistogram(s.nodes);
			s.p50.push(quantile(before, after, 0.5));
			s.p99.push(quantile(before, after, 0.99));
			s.get.push(await gets(s.cs, s.ids));
			console.log(`-- round ${r + 1}, ${s.name}: ${s.orch.at(-1).toFixed(1)} orchestrations/s, ` +
			    `${s.get.at(-1).toFixed(0)} tasks/get/s, store writes p50 ${s.p50.at(-1).toFixed(2)} ms, ` +
			    `p99 ${s.p99.at(-1).toFixed(2)} ms`);
		}
	for (const s of setups)
		await Promise.all(s.cs.map((c) => c.close().catch(() => {})));
	const c = { mock, pg, nodes, lb, lbClient: await session(lb.url) };
	const kills = [];
	for (let k = 0; k < KILLS; k++) {
		kills.push(await killToResumed(c));
		console.log(`-- kill -9 ${k + 1}: its task taken over by another node after ` +
		    `${(kills.at(-1).taken / 1000).toFixed(2)} s, running again there after ` +
		    `${(kills.at(-1).running / 1000).toFixed(2)} s (lease ${opts.leaseMs} ms)`);
	}
	console.log(`\n| each round | ${setups.map((s) => s.name).join(' | ')} |\n|---|${setups.map(() => '---|').join('')}`);
	const row = (label, k, f) => console.log(`| ${label} | ${setups.map((s) => s[k].map(f).join(', ')).join(' | ')} |`);
	row('orchestrations/s', 'orch', (v) => v.toFixed(1));
	row('tasks/get per s', 'get', (v) => v.toFixed(0));
	row('store write p50, ms', 'p50', (v) => v.toFixed(2));
	row('store write p99, ms', 'p99', (v) => v.toFixed(2));
	const peer = PEER ? ' not measured |' : '';
	console.log(`| kill -9 to the task taken over elsewhere, s | ${kills.map((v) => (v.taken / 1000).toFixed(1))
	    .join(', ')} | n/a: resumed when it starts again |${peer}`);
	console.log(`| kill -9 to the task running again elsewhere, s | ${kills.map((v) => (v.running / 1000)
	    .toFixed(1)).join(', ')} | n/a |${peer}`);
}

let status = 0;
try {
	await main();
} catch (e) {
	console.error(`bench cluster: ${e.stack ?? e}`);
	status = 1;
} finally {
	for (const fn of cleanups.reverse())
		await Promise.resolve().then(fn).catch(() => {});
}
process.exit(status);
