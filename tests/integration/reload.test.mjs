// SIGHUP reloads the configuration file: RELOADING=1 and READY=1 around
// it, what changed logged (and what waits for a restart), the new
// settings in force; a file that does not load is logged with its
// FILE:LINE: key: why, and the configuration in force stays.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

import { HANG, TEST_TIMEOUT, setup, startSink, tmpdir, waitFor } from './lib.mjs';

/* The JSON lines of stderr, parsed (the text lines skipped). */
function jsonLines(text) {
	return text.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
}

test('SIGHUP: a good file is taken, a broken one is refused and the one in force stays',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const dir = tmpdir('reload');
	const file = path.join(dir, 'config.yaml');
	fs.writeFileSync(file, 'limits:\n  drain_timeout: 3600\n');
	const sink = await startSink(t);
	const { srv, mock } = await setup(t, { env: { HEAVY_CONFIG: file, NOTIFY_SOCKET: sink.path } });
	const ready = await sink.wait(/^READY=1/);

	fs.writeFileSync(file, 'log:\n  format: json\nlimits:\n  drain_timeout: 1\n  max_workers: 8\n');
	process.kill(srv.pid, 'SIGHUP');
	const reloading = await sink.wait(/^RELOADING=1\nMONOTONIC_USEC=\d+$/, ready + 1, 'RELOADING=1');
	await sink.wait(/^READY=1\nSTATUS=0 tasks, 0 workers, 1 session$/, reloading + 1,
	    'READY=1 after the reload');
	await waitFor(() => /info: reload: changed: limits.drain_timeout, log.format/.test(srv.stderr()),
	    HANG, 'the reload logged');
	assert.match(srv.stderr(),
	    /warning: reload: in force only after a restart: limits.max_workers/);
	assert.deepEqual(await srv.client.ping(), {}, 'still serving');

	// Broken: an unknown key.  Logged (as JSON now), and nothing taken.
	fs.writeFileSync(file, 'log:\n  format: text\nlimits:\n  drain_timeout: 3600\n' +
	    '  max_taks: 5\n');
	const before = sink.messages().length;
	process.kill(srv.pid, 'SIGHUP');
	const again = await sink.wait(/^RELOADING=1/, before, 'RELOADING=1 again');
	await sink.wait(/^READY=1/, again + 1, 'READY=1 after the failed reload');
	const failed = await waitFor(() => jsonLines(srv.stderr()).find((l) =>
	    /^reload failed/.test(l.msg)), HANG, 'the failure logged, as JSON');
	assert.equal(failed.level, 'warning');
	assert.equal(failed.msg, `reload failed: ${file}:5: limits.max_taks: unknown limit; did you ` +
	    'mean `limits.max_tasks`?; the configuration in force stays');

	// The drain timeout in force is still 1 s, not the broken file's 3600.
	const call = srv.orchestrate({ query: 'Held [[agent:gate]]', num_agents: 2 });
	await waitFor(async () => (await mock.stats()).held >= 2, HANG, 'agents held');
	process.kill(srv.pid, 'SIGTERM');
	const { result } = await call;
	assert.equal(result.isError, true, JSON.stringify(result));
	assert.match(result.content[0].text, /^interrupted by shutdown/);
	assert.deepEqual(await srv.exited, { code: 0, signal: null }, srv.stderr());
	assert.ok(jsonLines(srv.stderr()).some((l) => /^drain timeout \(1 s\)/.test(l.msg)),
	    srv.stderr());
});
