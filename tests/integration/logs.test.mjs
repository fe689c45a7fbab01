// Where heavyd's logs go, the zygote's and the workers' relayed lines
// with them: JSON lines (log.format: json), and native journal entries
// when JOURNAL_STREAM names stderr (the journal's socket is one the test
// binds: HEAVY_JOURNAL_SOCKET).  A task's lines carry its id; a worker's,
// its pid and label.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';

import { checkOk, checkShape } from './checks.mjs';
import {
	HANG, HEAVYD, IS_VALGRIND, STATE_DIR, TEST_TIMEOUT, TEST_WORKER, apiKey, expire,
	sanitizerEnv, setup, startMock, startSink, waitFor,
} from './lib.mjs';

// Agent 1's first LLM call fails once (a retry heavyd logs, with the
// task's id), then it forges and floods its stderr (relayed, labelled).
const QUERY = 'Logged [[a1:flaky:503:1]] [[a1:tool:test_stderr:{}]]';
const FORGED = '?heavyd[1]: error: forged by a worker';

/* Lines of stderr, valgrind's own ("==PID==", "--PID--") left out. */
const lines = (text) => text.split('\n').filter((l) => l !== '' &&
    !(IS_VALGRIND && /^(==|--)\d+(==|--) /.test(l)));

test('log.format json: every line of heavyd, its zygote and its workers is one JSON object',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv } = await setup(t, { worker: 'test', env: { HEAVY_LOG_FORMAT: 'json' } });
	const { result } = await srv.orchestrate({ query: QUERY, num_agents: 1 });
	checkOk(checkShape(result, 1).agents[0]);
	await waitFor(() => /further output is dropped/.test(srv.stderr()), HANG, 'the relay\'s cap');
	await srv.shutdown();

	const events = lines(srv.stderr()).map((l) => {
		try {
			return JSON.parse(l);
		} catch {
			assert.fail(`not a JSON line: ${l}`);
		}
	});
	for (const e of events) {
		assert.match(e.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, JSON.stringify(e));
		assert.ok(['error', 'warning', 'info', 'debug'].includes(e.level), JSON.stringify(e));
		assert.equal(typeof e.pid, 'number');
	}
	const retry = events.find((e) => e.prog === 'heavyd' && /: agent 1: retrying in /.test(e.msg));
	assert.ok(retry, `no retry logged: ${srv.stderr().slice(0, 2000)}`);
	assert.match(retry.task_id, /^[0-9a-f]{32}$/);
	assert.ok(retry.msg.startsWith(`task ${retry.task_id}: `), retry.msg);
	const forged = events.find((e) => e.prog === 'heavyd-worker' && e.msg === FORGED);
	assert.ok(forged, 'the worker\'s line was not relayed');
	assert.equal(forged.label, `task ${retry.task_id.slice(0, 8)} agent 1`);
	assert.equal(forged.worker_pid, forged.pid);
	assert.ok(events.some((e) => e.prog === 'heavyd-worker' &&
	    /further output is dropped/.test(e.msg)), 'the cap is not said');
});

/* The fields of a native journal datagram, the binary form decoded. */
function journalFields(d) {
	const b = Buffer.from(d, 'latin1'), f = {};
	for (let i = 0; i < b.length;) {
		const nl = b.indexOf(0x0a, i);
		const line = b.subarray(i, nl).toString('latin1');
		const eq = line.indexOf('=');
		if (eq >= 0) {
			f[line.slice(0, eq)] = line.slice(eq + 1);
			i = nl + 1;
			continue;
		}
		const len = Number(b.readBigUInt64LE(nl + 1));
		f[line] = b.subarray(nl + 9, nl + 9 + len).toString('utf8');
		i = nl + 9 + len + 1;
	}
	return f;
}

test('under journald: native entries with HEAVYD_TASK_ID and HEAVYD_WORKER_PID, nothing on the stream',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const mock = await startMock();
	t.after(() => mock.stop());
	const journal = await startSink(t, 'journal');
	// JOURNAL_STREAM names stderr's device and inode, as systemd sets it.
	const proc = spawn('/bin/sh', ['-c',
	    'export JOURNAL_STREAM=$(stat -L -c %d:%i /proc/self/fd/2); exec "$0"', HEAVYD], {
		stdio: ['pipe', 'pipe', 'pipe'],
		env: {
			PATH: process.env.PATH, HEAVY_STATE_DIR: STATE_DIR, OPENROUTER_API_KEY: apiKey(),
			HEAVY_BASE_URL: mock.baseUrl, HEAVY_WORKER: TEST_WORKER, HEAVY_RETRY_BASE_MS: '50',
			HEAVY_JOURNAL_SOCKET: journal.path, ...sanitizerEnv(),
		},
	});
	t.after(() => proc.kill('SIGKILL'));
	let stderr = '', stdout = '';
	proc.stderr.setEncoding('utf8');
	proc.stderr.on('data', (d) => { stderr += d; });
	proc.stdout.setEncoding('utf8');
	proc.stdout.on('data', (d) => { stdout += d; });
	const exited = new Promise((r) => proc.once('exit', (code, signal) => r({ code, signal })));
	const send = (m) => proc.stdin.write(JSON.stringify({ jsonrpc: '2.0', ...m }) + '\n');
	send({ id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {},
	    clientInfo: { name: 'journal', version: '1' } } });
	send({ method: 'notifications/initialized' });
	send({ id: 2, method: 'tools/call', params: { name: 'heavy_orchestrate',
	    arguments: { query: QUERY, num_agents: 1 } } });
	const reply = await waitFor(() => stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l))
	    .find((m) => m.id === 2), HANG, 'the orchestration\'s reply');
	assert.notEqual(reply.result.isError, true, JSON.stringify(reply));
	const entries = () => journal.messages().map(journalFields);
	await waitFor(() => entries().some((e) => /further output is dropped/.test(e.MESSAGE)), HANG,
	    'the relay\'s cap, in the journal');
	proc.stdin.end();
	assert.deepEqual(await Promise.race([exited, expire(HANG)]), { code: 0, signal: null }, stderr);

	const all = entries();
	const retry = all.find((e) => e.SYSLOG_IDENTIFIER === 'heavyd' && /: agent 1: retrying in /.test(e.MESSAGE));
	assert.ok(retry, JSON.stringify(all.slice(0, 5)));
	assert.equal(retry.PRIORITY, '6');
	assert.match(retry.HEAVYD_TASK_ID, /^[0-9a-f]{32}$/);
	assert.ok(retry.MESSAGE.startsWith(`task ${retry.HEAVYD_TASK_ID}: `), retry.MESSAGE);
	const forged = all.find((e) => e.SYSLOG_IDENTIFIER === 'heavyd-worker' && e.MESSAGE === FORGED);
	assert.ok(forged, 'the worker\'s line is not in the journal');
	assert.match(forged.HEAVYD_WORKER_PID, /^\d+$/);
	assert.equal(forged.SYSLOG_PID, forged.HEAVYD_WORKER_PID);
	assert.equal(forged.HEAVYD_LABEL, `task ${retry.HEAVYD_TASK_ID.slice(0, 8)} agent 1`);
	assert.ok(all.some((e) => e.SYSLOG_IDENTIFIER === 'heavyd' && /sandbox: /.test(e.MESSAGE)),
	    'the startup report is not in the journal');
	assert.deepEqual(lines(stderr), [], 'lines went to the stream as well');
});
