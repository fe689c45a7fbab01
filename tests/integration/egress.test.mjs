// heavyd-egress, the one process that talks to the upstream: a worker
// killed at its deadline leaves no transfer behind in it, and its own death
// fails the calls in flight with a clear cause while heavyd restarts it.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { test } from 'node:test';

import { checkOk, checkShape } from './checks.mjs';
import { describe, readStat, setup, startMock, startServer, tmpdir, waitFor } from './lib.mjs';
import { TEST_TIMEOUT } from './lib.mjs';

const CANCELLED = /heavyd-egress\[\d+\]: info: worker \d+ went away: (\d+) transfers? cancelled/;

function egressOf(srv) {
	return srv.descendants().filter((p) => readStat(p.pid)?.comm === 'heavyd-egress');
}

/*
 * The hanging agent's worker is killed at its deadline; its socket to
 * egress closes, and egress removes the transfer at once, saying so.  The
 * workers that answered leave nothing to cancel.
 */
test('a worker killed mid-call at its deadline has its transfer cancelled by egress', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv } = await setup(t);
	const { result } = await srv.orchestrate(
	    { query: 'One agent hangs [[a2:hang]]', num_agents: 2, timeout: 8 });
	const sc = checkShape(result, 2);
	checkOk(sc.agents[0]);
	assert.equal(sc.agents[1].status, 'timed_out', JSON.stringify(sc.agents[1]));
	await waitFor(() => CANCELLED.test(srv.stderr()), undefined,
	    'egress to cancel the killed worker\'s transfer');
	const lines = [...srv.stderr().matchAll(new RegExp(CANCELLED, 'g'))];
	assert.equal(lines.length, 1, srv.stderr());
	assert.equal(lines[0][1], '1');
	await srv.shutdown();
});

/*
 * An LLM call held by the mock's gate when egress is killed fails at once,
 * naming egress; heavyd starts another, and the next call succeeds.
 */
test('egress killed mid-call fails that call with its cause and is restarted', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv, mock } = await setup(t);
	const [first] = egressOf(srv);
	assert.ok(first, describe(srv.descendants()));
	const call = srv.orchestrate({ query: 'Held [[a1:gate]]', num_agents: 1, timeout: 60 });
	await waitFor(async () => (await mock.stats()).held === 1, undefined,
	    'agent 1\'s call held by the mock');
	process.kill(first.pid, 'SIGKILL');
	const { result } = await call;
	const sc = checkShape(result, 1);
	assert.equal(sc.agents[0].status, 'failed', JSON.stringify(sc.agents[0]));
	assert.match(sc.agents[0].error, /heavyd-egress.*went away during the call/);
	await waitFor(() => /warning: heavyd-egress .*restarting it/.test(srv.stderr()),
	    undefined, 'heavyd to say egress is lost');
	let next;
	await waitFor(() => (next = egressOf(srv).find((p) => p.pid !== first.pid)) !== undefined,
	    undefined, 'a new heavyd-egress');
	const again = await srv.orchestrate({ query: 'After the restart', num_agents: 2 });
	const sc2 = checkShape(again.result, 2);
	sc2.agents.forEach(checkOk);
	assert.ok(egressOf(srv).some((p) => p.pid === next.pid), 'the new egress served it');
	await srv.shutdown();
});

/*
 * The governor: one 429 with Retry-After pauses every call to that
 * upstream, from every worker of every task.  Task A's planner gets the
 * 429; task B starts only once egress has paused, and none of its calls
 * reaches the mock: they wait in egress's line until their deadlines.
 */
test('one 429 with Retry-After pauses every call to that upstream, from every task', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv, mock } = await setup(t);
	const a = srv.orchestrate({ query: 'Limited [[planner:status:429:retry-after=600]]',
	    num_agents: 2, timeout: 10 });
	await waitFor(() => /info: upstream \S+ answered 429: every call to it waits 600\.0 s/.test(srv.stderr()),
	    undefined, 'egress to pause the upstream');
	assert.equal((await mock.stats()).requests, 1);
	const b = srv.orchestrate({ query: 'Another task, later', num_agents: 2, timeout: 10 });
	const [ra, rb] = await Promise.all([a, b]);
	assert.equal((await mock.stats()).requests, 1, 'a call went out during the pause');
	for (const r of [ra, rb])
		assert.doesNotMatch(JSON.stringify(r.result), /Synthesized answer/);
	await srv.shutdown();
});

/*
 * limits.egress_max_calls: with 1, the second agent's call waits in
 * egress while the first is held by the mock, and goes once it is answered.
 */
test('egress_max_calls caps the calls in flight to one upstream', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv, mock } = await setup(t, { env: { HEAVY_EGRESS_MAX_CALLS: '1', HEAVY_DEBUG: '1' } });
	const call = srv.orchestrate({ query: 'One at a time [[agent:gate]]', num_agents: 2, timeout: 60 });
	await waitFor(async () => (await mock.stats()).held === 1, undefined, 'one agent call held');
	// Logged when it joins the line, whether the first is out yet or not:
	// only the cap keeps it there while the first is held.
	await waitFor(() => /heavyd-egress\[\d+\]: debug: an LLM call to \S+ waits for a permit: \d in flight \(limits\.egress_max_calls 1\)/.test(srv.stderr()),
	    undefined, 'the other call to wait in egress');
	const st = await mock.stats();
	assert.equal(st.agent, 1, 'a second agent call went out past the cap');
	await mock.open();
	const { result } = await call;
	const sc = checkShape(result, 2);
	sc.agents.forEach(checkOk);
	assert.equal((await mock.stats()).agent, 2);
	await srv.shutdown();
});

/*
 * The circuit breaker (limits.egress_breaker_failures): two 503s in a row
 * open it; every later call, of this task and the next, fails fast naming
 * it and never reaches the upstream.
 */
test('the circuit breaker opens after failures in a row and fails calls fast, unsent', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv, mock } = await setup(t, { env: { HEAVY_EGRESS_BREAKER_FAILURES: '2',
	    HEAVY_EGRESS_BREAKER_COOLDOWN: '600', HEAVY_MAX_RETRIES: '5' } });
	const a = await srv.orchestrate({ query: 'Down [[planner:status:503]]', num_agents: 1, timeout: 30 });
	// stderr is another pipe than the answers: wait for the line itself.
	await waitFor(() => /info: upstream \S+: circuit breaker open after failures in a row/.test(srv.stderr()),
	    undefined, 'the breaker to open');
	assert.equal((await mock.stats()).requests, 2, 'calls went out past the open breaker');
	assert.match(JSON.stringify(a.result), /circuit breaker of \S+ is open after 2 failures in a row/);
	const b = await srv.orchestrate({ query: 'Another task', num_agents: 1, timeout: 30 });
	assert.match(JSON.stringify(b.result), /circuit breaker of \S+ is open/);
	assert.equal((await mock.stats()).requests, 2, 'the next task reached the upstream');
	await srv.shutdown();
});

/*
 * After its cooldown the breaker lets one call through as a probe
 * (half-open); the probe's success closes it, and tasks succeed again.
 */
test('after its cooldown the breaker sends one probe, whose success closes it', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv } = await setup(t, { env: { HEAVY_EGRESS_BREAKER_FAILURES: '2',
	    HEAVY_EGRESS_BREAKER_COOLDOWN: '1', HEAVY_MAX_RETRIES: '1' } });
	await srv.orchestrate({ query: 'Down [[planner:status:503]]', num_agents: 1, timeout: 30 });
	await waitFor(() => /circuit breaker open/.test(srv.stderr()), undefined, 'the breaker to open');
	await waitFor(async () => {
		const { result } = await srv.orchestrate({ query: 'Up again', num_agents: 1, timeout: 30 });
		return result.structuredContent?.agents?.[0]?.status === 'ok' &&
		    result.structuredContent.planner_error === null;
	}, undefined, 'a task to succeed once the breaker closed', 200);
	await waitFor(() => /circuit breaker closed/.test(srv.stderr()), undefined, 'the breaker to close');
	const log = srv.stderr();
	const at = (re) => log.search(re);
	assert.ok(at(/circuit breaker open/) < at(/circuit breaker half-open/), log);
	assert.ok(at(/circuit breaker half-open/) < at(/circuit breaker closed/), log);
	await srv.shutdown();
});

/* GET /stats of the mock over TLS, trusting its certificate alone. */
function tlsStats(port, ca) {
	return new Promise((resolve, reject) => {
		https.get({ host: '127.0.0.1', port, path: '/stats', ca }, (res) => {
			let body = '';
			res.setEncoding('utf8');
			res.on('data', (d) => { body += d; });
			res.on('end', () => resolve(JSON.parse(body)));
		}).on('error', reject);
	});
}

/*
 * An upstream over HTTPS with its own certificate (the mock's -t): heavyd
 * trusts it through ca_file (HEAVY_CA_FILE) only, never by skipping the
 * verification; egress keeps its connections, so the 6 calls of an
 * orchestration need fewer handshakes than calls.
 */
test('an HTTPS upstream is verified against ca_file, its connections kept alive', { timeout: TEST_TIMEOUT }, async (t) => {
	const dir = tmpdir('tls');
	const cert = path.join(dir, 'cert.pem');
	const mock = await startMock('tls', ['-t', cert]);
	t.after(async () => {
		await mock.stop();
		fs.rmSync(dir, { recursive: true, force: true });
	});
	const ca = fs.readFileSync(cert);
	const url = `https://127.0.0.1:${mock.port}/v1`;

	const bare = await startServer({ env: { HEAVY_BASE_URL: url } });
	t.after(() => bare.kill());
	const { result: refused } = await bare.orchestrate({ query: 'untrusted', num_agents: 2 });
	assert.equal(refused.isError, true, JSON.stringify(refused));
	assert.match(JSON.stringify(refused), /SSL certificate problem: self-signed certificate/);
	await bare.shutdown();

	const srv = await startServer({ env: { HEAVY_BASE_URL: url, HEAVY_CA_FILE: cert } });
	t.after(() => srv.kill());
	const before = await tlsStats(mock.port, ca);
	const { result } = await srv.orchestrate({ query: 'trusted', num_agents: 4 });
	checkOk(checkShape(result, 4).agents[0]);
	const after = await tlsStats(mock.port, ca);
	assert.equal(after.tls, true);
	assert.equal(after.requests - before.requests, 6, JSON.stringify(after));
	// Each stats request is a connection of its own, as is each of the
	// four agents' calls at once at most.
	assert.ok(after.connections - before.connections - 1 < 6,
	    `${after.connections - before.connections - 1} handshakes for 6 calls`);
	await srv.shutdown();
});
