// Run in the VM stage's guest only (tests/vm/jobs/units): heavyd.service
// and heavyd.socket as `make install` put them, under the guest's real
// systemd 252, as the README's "Under systemd" section sets them up (the
// API key in /etc/credstore, the endpoint in /etc/heavyd/config.yaml: the
// mock LLM).  Socket activation and an orchestration over HTTP, READY and
// STATUS, per-worker cgroups under Delegate=yes, native journal entries,
// the online security score, reload with a changed and with a broken file,
// stop with drain, and the watchdog restarting a stalled heavyd.  The
// tests run in order and share the one heavyd.service of the guest.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import { after, before, test } from 'node:test';

// The SDK is tests/integration's (scripts/npm-deps installs it there);
// this directory has no node_modules of its own.
import { Client } from '../integration/node_modules/@modelcontextprotocol/sdk/dist/esm/client/index.js';
import { StreamableHTTPClientTransport } from '../integration/node_modules/@modelcontextprotocol/sdk/dist/esm/client/streamableHttp.js';
import { CallToolResultSchema } from '../integration/node_modules/@modelcontextprotocol/sdk/dist/esm/types.js';

import { checkOk, checkShape } from '../integration/checks.mjs';
import { HANG, TEST_TIMEOUT, allProcs, startMock, waitFor } from '../integration/lib.mjs';

const ORIGIN = 'http://127.0.0.1:8080';	/* heavyd.socket's ListenStream */
const MCP = `${ORIGIN}/mcp`;
const V = '2025-11-25';
const UNITDIR = '/usr/local/lib/systemd/system';	/* make install's, PREFIX=/usr/local */
const CONFIG = '/etc/heavyd/config.yaml';
const CREDSTORE = '/etc/credstore';
const DROPIN = '/run/systemd/system/heavyd.service.d';
const CGROUP = '/sys/fs/cgroup/system.slice/heavyd.service';
const show = (x) => JSON.stringify(x, null, 1);

/* ------------------------------------------------------------ systemd */

function run(cmd, args) {
	return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

const systemctl = (...args) => run('systemctl', args);

/* systemctl show UNIT -p A,B,...: { A: '...', B: '...' } */
function props(unit, ...names) {
	const out = {};
	for (const line of systemctl('show', unit, '-p', names.join(',')).split('\n')) {
		const i = line.indexOf('=');
		if (i > 0)
			out[line.slice(0, i)] = line.slice(i + 1);
	}
	return out;
}

/* heavyd.service's journal entries (journalctl -o json), after a cursor. */
function journal(after) {
	const args = ['-u', 'heavyd.service', '-o', 'json', '--no-pager'];
	if (after)
		args.push(`--after-cursor=${after}`);
	return run('journalctl', args).split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

/* Where the journal of heavyd.service ends now. */
function cursor() {
	return journal().at(-1)?.__CURSOR;
}

/* The first entry after `from` that fn accepts, waited for. */
function journalWait(from, fn, what) {
	return waitFor(() => journal(from).find(fn), HANG, `the journal: ${what}; it has:\n` +
	    journal(from).map((e) => e.MESSAGE).join('\n'));
}

const heavydSays = (re) => (e) => e.SYSLOG_IDENTIFIER === 'heavyd' && re.test(e.MESSAGE);
const systemdSays = (re) => (e) => e._PID === '1' && e.UNIT === 'heavyd.service' && re.test(e.MESSAGE);

/* The configuration the README's "Under systemd" asks for, plus extra lines. */
let mock;
function writeConfig(extra = '') {
	fs.writeFileSync(CONFIG, `openrouter:\n  base_url: "${mock.baseUrl}"\n` +
	    `limits:\n  retry_base_ms: 50\n${extra}`);
}

/*
 * GET path on a connection of its own: fetch's pool could hand it one
 * kept alive to a heavyd that is gone since (stopped, or killed).
 */
function get(path) {
	return new Promise((resolve, reject) => {
		http.get(`${ORIGIN}${path}`, { agent: false }, (res) => {
			let body = '';
			res.setEncoding('utf8');
			res.on('data', (d) => { body += d; });
			res.on('end', () => resolve({ status: res.statusCode, body }));
		}).on('error', reject);
	});
}

/* heavyd.service is up: the socket's first connection started it. */
async function started() {
	assert.equal((await get('/healthz')).status, 200, 'GET /healthz');
	const p = props('heavyd.service', 'ActiveState', 'SubState', 'MainPID');
	assert.equal(p.ActiveState, 'active', show(p));
	return Number(p.MainPID);
}

/* ---------------------------------------------------------- MCP, raw */

function post(body, headers = {}) {
	return fetch(MCP, {
		method: 'POST',
		headers: {
			'Content-Type': 'application/json',
			Accept: 'application/json, text/event-stream', ...headers,
		},
		body: JSON.stringify(body),
	});
}

/* The JSON-RPC response with this id, from a JSON or an SSE answer. */
async function answer(res, id) {
	if ((res.headers.get('content-type') ?? '').startsWith('application/json'))
		return res.json();
	const reader = res.body.getReader();
	const dec = new TextDecoder();
	let buf = '';
	for (;;) {
		const { value, done } = await reader.read();
		assert.ok(!done, `the stream ended without the response to ${id}: ${buf}`);
		buf += dec.decode(value, { stream: true }).replace(/\r\n/g, '\n');
		let i;
		while ((i = buf.indexOf('\n\n')) >= 0) {
			const data = buf.slice(0, i).split('\n').filter((l) => l.startsWith('data:'))
			    .map((l) => l.slice(5).trimStart()).join('\n');
			buf = buf.slice(i + 2);
			const m = data ? JSON.parse(data) : null;
			if (m && m.id === id && ('result' in m || 'error' in m)) {
				await reader.cancel();
				return m;
			}
		}
	}
}

/* An MCP session over the 2025-11-25 handshake. */
async function session() {
	const r = await post({
		jsonrpc: '2.0', id: 1, method: 'initialize',
		params: { protocolVersion: V, capabilities: {}, clientInfo: { name: 'units', version: '1' } },
	});
	assert.equal(r.status, 200, `initialize: HTTP ${r.status}`);
	const sid = r.headers.get('mcp-session-id');
	assert.equal((await answer(r, 1)).result.protocolVersion, V);
	const headers = { 'Mcp-Session-Id': sid, 'MCP-Protocol-Version': V };
	const n = await post({ jsonrpc: '2.0', method: 'notifications/initialized' }, headers);
	assert.equal(n.status, 202, 'notifications/initialized');
	let next = 2;
	return {
		async request(method, params) {
			const id = next++;
			const res = await post({ jsonrpc: '2.0', id, method, params }, headers);
			assert.equal(res.status, 200, `${method}: HTTP ${res.status}: ${await res.clone().text()}`);
			const m = await answer(res, id);
			assert.ok(m.result, `${method}: ${show(m)}`);
			return m.result;
		},
		call(name, args) {
			return this.request('tools/call', { name, arguments: args });
		},
		async close() {
			const res = await fetch(MCP, { method: 'DELETE', headers });
			await res.text();
		},
	};
}

/* The mock holds n agents' calls at its gate: a task is running. */
async function held(n) {
	await waitFor(async () => (await mock.stats()).held >= n, HANG, `${n} agents held by the gate`);
}

async function resetMock() {
	const r = await fetch(mock.baseUrl.replace(/\/v1$/, '/reset'), { method: 'POST' });
	assert.equal(r.status, 200, 'POST /reset');
}

/* The live workers of heavyd.service (running a job, not spares). */
function unitWorkers() {
	return allProcs().filter((p) => p.comm === 'heavyd-worker').map((p) => {
		try {
			return { ...p, cgroup: fs.readFileSync(`/proc/${p.pid}/cgroup`, 'utf8').trim() };
		} catch {
			return null;
		}
	}).filter((p) => p && p.cgroup.startsWith('0::/system.slice/heavyd.service/'));
}

/* ------------------------------------------------------------ set up */

before(async () => {
	mock = await startMock('units-mock');
	fs.mkdirSync(CREDSTORE, { recursive: true, mode: 0o700 });
	fs.writeFileSync(`${CREDSTORE}/openrouter_api_key`, 'sk-or-vm-units-not-a-real-key\n',
	    { mode: 0o600 });
	fs.mkdirSync('/etc/heavyd', { recursive: true });
	writeConfig();
	systemctl('daemon-reload');
});

after(async () => {
	for (const args of [['stop', 'heavyd.socket', 'heavyd.service'], ['reset-failed', 'heavyd.service']]) {
		try { systemctl(...args); } catch { /* reported by the tests */ }
	}
	fs.rmSync(DROPIN, { recursive: true, force: true });
	fs.rmSync(CONFIG, { force: true });
	fs.rmSync(`${CREDSTORE}/openrouter_api_key`, { force: true });
	try { systemctl('daemon-reload'); } catch { /* nothing to undo */ }
	await mock?.stop();
});

/* ------------------------------------------------------------- tests */

test('make install put heavyd.service and heavyd.socket where systemd reads them', () => {
	for (const unit of ['heavyd.service', 'heavyd.socket']) {
		const p = props(unit, 'LoadState', 'FragmentPath', 'UnitFileState');
		assert.equal(p.LoadState, 'loaded', `${unit}: ${show(p)}`);
		assert.equal(p.FragmentPath, `${UNITDIR}/${unit}`, `${unit}: ${show(p)}`);
	}
	const p = props('heavyd.service', 'ExecStart', 'Type', 'NotifyAccess', 'Delegate',
	    'KillMode', 'DynamicUser');
	assert.match(p.ExecStart, /path=\/usr\/local\/bin\/heavyd ;/, show(p));
	assert.deepEqual([p.Type, p.NotifyAccess, p.Delegate, p.KillMode, p.DynamicUser],
	    ['notify', 'main', 'yes', 'mixed', 'yes'], show(p));
});

test('heavyd.socket starts heavyd at the first connection; an orchestration over HTTP succeeds',
    { timeout: TEST_TIMEOUT }, async () => {
	systemctl('start', 'heavyd.socket');
	let p = props('heavyd.socket', 'ActiveState', 'SubState', 'Listen');
	assert.deepEqual([p.ActiveState, p.SubState], ['active', 'listening'], show(p));
	assert.match(p.Listen, /^127\.0\.0\.1:8080 \(Stream\)$/, show(p));
	p = props('heavyd.service', 'ActiveState');
	assert.equal(p.ActiveState, 'inactive', `heavyd runs before any connection: ${show(p)}`);
	const from = cursor();

	const client = new Client({ name: 'vm-units', version: '1.0.0' }, { capabilities: {} });
	const transport = new StreamableHTTPClientTransport(new URL(MCP));
	await client.connect(transport, { timeout: HANG });
	const result = await client.callTool({ name: 'heavy_orchestrate',
	    arguments: { query: 'Socket-activated: processes or threads?', num_agents: 2 } },
	    CallToolResultSchema, { timeout: HANG });
	await transport.terminateSession();
	await client.close();
	assert.notEqual(result.isError, true, show(result));
	const sc = checkShape(result, 2);
	sc.agents.forEach(checkOk);
	assert.equal(sc.synthesized, true, show(sc));
	assert.match(sc.sandbox.confinement, /^Landlock ABI 2, .*seccomp.*; cgroup on$/, show(sc.sandbox));

	// (Without the credential the call would have answered how to set a key.)
	p = props('heavyd.service', 'ActiveState', 'SubState', 'MainPID', 'TriggeredBy', 'WatchdogUSec');
	assert.deepEqual([p.ActiveState, p.SubState, p.TriggeredBy, p.WatchdogUSec],
	    ['active', 'running', 'heavyd.socket', '30s'], show(p));
	assert.equal(fs.readFileSync(`/proc/${p.MainPID}/comm`, 'utf8').trim(), 'heavyd');
	await journalWait(from, heavydSays(/^socket activation: descriptor 3, named http$/),
	    'heavyd took the socket of heavyd.socket');
	const stats = await mock.stats();
	assert.ok(stats.agent >= 2 && stats.synthesis >= 1, `the mock was not asked: ${show(stats)}`);
});

test('READY once it serves (Type=notify), then STATUS lines as tasks run and end',
    { timeout: TEST_TIMEOUT }, async () => {
	await started();
	const p = props('heavyd.service', 'StatusText', 'ActiveState', 'SubState', 'InvocationID');
	assert.deepEqual([p.ActiveState, p.SubState], ['active', 'running'], show(p));
	assert.match(p.StatusText, /^\d+ tasks?, \d+ workers?, \d+ sessions?$/, show(p));
	// systemd says "Started" only at READY=1, which came after the listener.
	const run = journal().filter((e) => (e._SYSTEMD_INVOCATION_ID ?? e.INVOCATION_ID) === p.InvocationID);
	const listening = run.findIndex(heavydSays(/^listening on http:\/\/127\.0\.0\.1:8080\/mcp$/));
	const ready = run.findIndex(systemdSays(/^Started heavyd\.service/));
	assert.ok(listening >= 0 && ready > listening, `READY=1 before the listener:\n${run.map((e) => e.MESSAGE).join('\n')}`);

	await resetMock();
	const s = await session();
	const call = s.call('heavy_orchestrate', { query: 'Status [[agent:gate]]', num_agents: 2 });
	await held(2);
	const busy = await waitFor(() => {
		const t = props('heavyd.service', 'StatusText').StatusText;
		return /^1 task, [2-9]\d* workers, 1 session$/.test(t) && t;
	}, HANG, 'STATUS=1 task, N workers, 1 session');
	await mock.open();
	const result = await call;
	assert.notEqual(result.isError, true, show(result));
	await waitFor(() => props('heavyd.service', 'StatusText').StatusText === '0 tasks, 0 workers, 1 session',
	    HANG, `STATUS back to no task (it said "${busy}")`);
	await s.close();
	await waitFor(() => props('heavyd.service', 'StatusText').StatusText === '0 tasks, 0 workers, 0 sessions',
	    HANG, 'STATUS with the session gone');
});

test('per-worker cgroups under Delegate=yes, inside the unit\'s own cgroup', { timeout: TEST_TIMEOUT },
    async () => {
	const main = await started();
	const p = props('heavyd.service', 'ControlGroup', 'Delegate', 'InvocationID');
	assert.equal(p.ControlGroup, '/system.slice/heavyd.service', show(p));
	const line = journal().find((e) => e._SYSTEMD_INVOCATION_ID === p.InvocationID &&
	    heavydSays(/^sandbox: /)(e));
	assert.match(line?.MESSAGE ?? '(none)', /^sandbox: Landlock ABI 2, .*; cgroup on$/,
	    'the startup line of this heavyd');
	// heavyd and its zygote moved to a leaf; the controllers are on below.
	assert.equal(fs.readFileSync(`/proc/${main}/cgroup`, 'utf8').trim(),
	    '0::/system.slice/heavyd.service/heavyd');
	assert.deepEqual(fs.readFileSync(`${CGROUP}/cgroup.subtree_control`, 'utf8').trim().split(' ').sort(),
	    ['memory', 'pids']);
	assert.deepEqual(fs.readFileSync(`${CGROUP}/workers/cgroup.subtree_control`, 'utf8').trim().split(' ').sort(),
	    ['memory', 'pids']);

	await resetMock();
	const s = await session();
	const call = s.call('heavy_orchestrate', { query: 'Contained [[agent:gate]]', num_agents: 2 });
	await held(2);
	const workers = await waitFor(() => { const w = unitWorkers(); return w.length >= 2 && w; },
	    HANG, 'two workers of heavyd.service');
	for (const w of workers) {
		const dir = `${CGROUP}/workers/w${w.pid}`;
		assert.equal(w.cgroup, `0::/system.slice/heavyd.service/workers/w${w.pid}`, show(w));
		const read = (f) => fs.readFileSync(`${dir}/${f}`, 'utf8').trim();
		assert.deepEqual([read('memory.max'), read('pids.max'), read('memory.oom.group')],
		    [String(1 << 30), '32', '1'], `${dir}: heavyd's defaults (limits.worker_memory, worker_pids)`);
	}
	await mock.open();
	const result = await call;
	assert.notEqual(result.isError, true, show(result));
	await s.close();
	// The zygote removes a worker's cgroup after the reap.
	await waitFor(() => workers.every((w) => !fs.existsSync(`${CGROUP}/workers/w${w.pid}`)), HANG,
	    'the workers\' cgroups removed');
});

test('journalctl -u heavyd -o json: native entries with PRIORITY, a task\'s line with HEAVYD_TASK_ID',
    { timeout: TEST_TIMEOUT }, async () => {
	await started();
	const from = cursor();
	const s = await session();
	// Agent 1's first LLM call fails once: heavyd logs the retry, with the task's id.
	const r = await s.call('grok_heavy_orchestrate', { query: 'Journaled [[a1:flaky:503:1]]', num_agents: 1 });
	const id = r.structuredContent?.task_id;
	assert.match(id ?? '', /^[0-9a-f]{32}$/, show(r));
	await waitFor(async () => {
		const p = await s.call('get_task_progress', { task_id: id });
		return ['COMPLETED', 'FAILED', 'CANCELLED'].includes(p.structuredContent?.status) &&
		    p.structuredContent.status;
	}, HANG, 'the task to end').then((status) => assert.equal(status, 'COMPLETED'));
	await s.close();
	// The retry's line, not the audit lines of the polls, which carry the id too.
	const retry = await journalWait(from, (e) => e.HEAVYD_TASK_ID === id &&
	    e.MESSAGE?.startsWith(`task ${id}: agent 1: retrying in `),
	    `the retry's entry with HEAVYD_TASK_ID=${id}`);
	assert.match(retry.MESSAGE, new RegExp(`^task ${id}: agent 1: retrying in `), show(retry));
	assert.equal(retry.PRIORITY, '6', show(retry));
	assert.equal(retry.SYSLOG_IDENTIFIER, 'heavyd', show(retry));
	assert.equal(retry._TRANSPORT, 'journal', `not a native entry: ${show(retry)}`);
	assert.equal(retry._SYSTEMD_UNIT, 'heavyd.service', show(retry));
	const ours = journal().filter((e) => e._SYSTEMD_UNIT === 'heavyd.service');
	assert.ok(ours.length > 0);
	for (const e of ours) {
		assert.match(e.PRIORITY ?? '', /^[0-7]$/, `no PRIORITY: ${show(e)}`);
		assert.equal(e._TRANSPORT, 'journal', `a line on the stream, not an entry: ${show(e)}`);
	}
});

test('systemd-analyze security heavyd.service (online): exposure at most 1.5', () => {
	let out;
	try {
		out = run('systemd-analyze', ['security', '--no-pager', 'heavyd.service']);
	} catch (e) {
		out = `${e.stdout}${e.stderr}`;
	}
	const m = /Overall exposure level for heavyd\.service: (\d+\.\d+)/.exec(out);
	assert.ok(m, out);
	assert.ok(Number(m[1]) <= 1.5, `exposure ${m[1]}:\n${out.split('\n').filter((l) => l.startsWith('✗')).join('\n')}`);
});

/* A new session's orchestration without num_agents: how many agents it had. */
async function defaultAgents(tag) {
	const s = await session();
	const r = await s.call('heavy_orchestrate', { query: `Default agents, ${tag}` });
	await s.close();
	assert.notEqual(r.isError, true, show(r));
	return r.structuredContent.agents.length;
}

test('systemctl reload heavyd: a changed file is taken, heavyd stays up', { timeout: TEST_TIMEOUT },
    async () => {
	const pid = await started();
	assert.equal(await defaultAgents('before'), 4, 'the default of limits.num_agents');
	const from = cursor();
	writeConfig('orchestrator:\n  parallel_agents: 3\n');
	systemctl('reload', 'heavyd.service');
	await journalWait(from, heavydSays(/^reload: changed: limits\.num_agents$/), 'the change logged');
	await journalWait(from, systemdSays(/^Reloaded heavyd\.service/), 'systemd saw the reload end');
	const p = props('heavyd.service', 'ActiveState', 'SubState', 'MainPID', 'NRestarts');
	assert.deepEqual([p.ActiveState, p.SubState, Number(p.MainPID)], ['active', 'running', pid], show(p));
	assert.equal(await defaultAgents('after the reload'), 3, 'the new default is in force');
});

test('systemctl reload heavyd: a broken file is refused with FILE:LINE, the one in force stays',
    { timeout: TEST_TIMEOUT }, async () => {
	const pid = await started();
	const from = cursor();
	writeConfig('orchestrator:\n  parallel_agents: 2\n  max_taks: 5\n');
	systemctl('reload', 'heavyd.service');
	const e = await journalWait(from, heavydSays(/^reload failed: /), 'the refusal logged');
	assert.match(e.MESSAGE, /^reload failed: \/etc\/heavyd\/config\.yaml:7: orchestrator\.max_taks: unknown key; the configuration in force stays$/,
	    show(e));
	assert.equal(e.PRIORITY, '4', show(e));
	await journalWait(from, systemdSays(/^Reloaded heavyd\.service/), 'systemd saw the reload end');
	const p = props('heavyd.service', 'ActiveState', 'SubState', 'MainPID');
	assert.deepEqual([p.ActiveState, p.SubState, Number(p.MainPID)], ['active', 'running', pid], show(p));
	assert.equal(await defaultAgents('after the broken reload'), 3, 'the configuration in force changed');
	writeConfig();
});

test('systemctl stop heavyd drains: the running call is answered, new requests get 503, Result=success',
    { timeout: TEST_TIMEOUT }, async () => {
	await started();
	await resetMock();
	const s = await session();
	const call = s.call('heavy_orchestrate', { query: 'Drained [[agent:gate]]', num_agents: 2 });
	await held(2);
	const from = cursor();
	const stop = spawn('systemctl', ['stop', 'heavyd.service'], { stdio: ['ignore', 'ignore', 'pipe'] });
	let stopErr = '';
	stop.stderr.setEncoding('utf8');
	stop.stderr.on('data', (d) => { stopErr += d; });
	const stopped = new Promise((r) => stop.once('exit', (code) => r(code)));
	await journalWait(from, heavydSays(/^SIGTERM received; draining: no new tasks, 1 running, 30 s at most/),
	    'the drain begun');
	const p = await waitFor(() => {
		const q = props('heavyd.service', 'ActiveState', 'SubState', 'StatusText');
		return q.StatusText.startsWith('draining') && q;
	}, HANG, 'STATUS=draining');
	assert.deepEqual([p.ActiveState, p.SubState], ['deactivating', 'stop-sigterm'], show(p));
	assert.match(p.StatusText, /^draining: 1 task, /, show(p));

	// New work is refused while the running call goes on.
	const late = await post({
		jsonrpc: '2.0', id: 1, method: 'initialize',
		params: { protocolVersion: V, capabilities: {}, clientInfo: { name: 'late', version: '1' } },
	});
	assert.equal(late.status, 503, 'a new session while draining');
	assert.ok(Number(late.headers.get('retry-after')) > 0, 'Retry-After');
	assert.match((await late.json()).error?.message ?? '', /shutting down/);
	assert.equal((await get('/readyz')).status, 503, '/readyz while draining');
	assert.equal(props('heavyd.service', 'ActiveState').ActiveState, 'deactivating', 'stopped early');

	await mock.open();
	const result = await call;
	assert.notEqual(result.isError, true, show(result));
	checkShape(result, 2).agents.forEach(checkOk);
	assert.equal(await stopped, 0, `systemctl stop: ${stopErr}`);
	const q = props('heavyd.service', 'ActiveState', 'Result', 'ExecMainStatus', 'ExecMainCode');
	assert.deepEqual([q.ActiveState, q.Result, q.ExecMainStatus], ['inactive', 'success', '0'], show(q));
	await journalWait(from, heavydSays(/^drained: every task has ended$/), 'the drain ended');
	assert.ok(!journal(from).some(heavydSays(/drain timeout/)), 'the drain timed out');
	// systemd removes the unit's cgroup once no process is left in it.
	await waitFor(() => !fs.existsSync(CGROUP), HANG, `${CGROUP} removed`)
	    .catch(() => assert.fail(`left in ${CGROUP}: ${unitWorkers().map((w) => w.pid)}`));
	assert.equal(props('heavyd.socket', 'SubState').SubState, 'listening', 'heavyd.socket');
});

test('the watchdog: a stalled heavyd is killed (Result=watchdog) and restarted', { timeout: TEST_TIMEOUT },
    async () => {
	// The shipped WatchdogSec is 30 s; 6 s here keeps the test short.
	fs.mkdirSync(DROPIN, { recursive: true });
	fs.writeFileSync(`${DROPIN}/50-watchdog-test.conf`, '[Service]\nWatchdogSec=6\n');
	systemctl('daemon-reload');
	const pid = await started();
	const p = props('heavyd.service', 'WatchdogUSec', 'NRestarts', 'WatchdogTimestampMonotonic');
	assert.equal(p.WatchdogUSec, '6s', show(p));
	// heavyd pets it from its loop: the timestamp moves, twice.
	let last = p.WatchdogTimestampMonotonic;
	for (let i = 0; i < 2; i++) {
		last = await waitFor(() => {
			const t = props('heavyd.service', 'WatchdogTimestampMonotonic').WatchdogTimestampMonotonic;
			return t !== last && t !== '0' && t;
		}, HANG, 'WATCHDOG=1');
	}
	assert.equal(props('heavyd.service', 'MainPID').MainPID, String(pid), 'restarted while petting');

	// A loop that never comes back: the whole process stopped.
	const from = cursor();
	process.kill(pid, 'SIGSTOP');
	await journalWait(from, systemdSays(/^heavyd\.service: Watchdog timeout \(limit 6s\)!$/), 'the timeout');
	const failed = await journalWait(from, (e) => e._PID === '1' && e.UNIT_RESULT === 'watchdog',
	    'Failed with result \'watchdog\'');
	assert.match(failed.MESSAGE, /^heavyd\.service: Failed with result 'watchdog'\.$/, show(failed));
	const q = await waitFor(() => {
		const r = props('heavyd.service', 'ActiveState', 'SubState', 'MainPID', 'NRestarts');
		return r.ActiveState === 'active' && Number(r.MainPID) > 0 && Number(r.MainPID) !== pid && r;
	}, HANG, 'heavyd restarted');
	assert.equal(Number(q.NRestarts), Number(p.NRestarts) + 1, show(q));
	assert.ok(!fs.existsSync(`/proc/${pid}`), 'the stalled heavyd lives on');
	await journalWait(from, heavydSays(/^listening on http:\/\/127\.0\.0\.1:8080\/mcp$/), 'the new heavyd');
	assert.equal((await get('/readyz')).status, 200, 'the restarted heavyd is ready');
});
