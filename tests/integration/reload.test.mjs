// SIGHUP reloads the configuration file: RELOADING=1 and READY=1 around
// it, what changed logged (and what waits for a restart), the new
// settings in force; a file that does not load is logged with its
// FILE:LINE: key: why, and the configuration in force stays.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

import { HANG, TEST_TIMEOUT, setup, startSink, tmpdir, waitFor } from './lib.mjs';

test('SIGHUP: a good file is taken, a broken one is refused and the one in force stays',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const dir = tmpdir('reload');
	const file = path.join(dir, 'config.yaml');
	fs.writeFileSync(file, 'limits:\n  drain_timeout: 3600\n');
	const sink = await startSink(t);
	const { srv, mock } = await setup(t, { env: { HEAVY_CONFIG: file, NOTIFY_SOCKET: sink.path } });
	const ready = await sink.wait(/^READY=1/);

	fs.writeFileSync(file, 'openrouter:\n  model: reloaded/model\nlog:\n  format: json\n' +
	    'limits:\n  drain_timeout: 1\n  max_workers: 8\n');
	process.kill(srv.pid, 'SIGHUP');
	const reloading = await sink.wait(/^RELOADING=1\nMONOTONIC_USEC=\d+$/, ready + 1, 'RELOADING=1');
	await sink.wait(/^READY=1\nSTATUS=0 tasks, 0 workers, 1 session$/, reloading + 1,
	    'READY=1 after the reload');
	await waitFor(() => /info: reload: changed: model, planner_model, synthesis_model, agent_models, limits.drain_timeout$/m.test(srv.stderr()),
	    HANG, 'the reload logged');
	assert.match(srv.stderr(),
	    /warning: reload: in force only after a restart: limits.max_workers, log.format$/m);
	assert.deepEqual(await srv.client.ping(), {}, 'still serving');

	// Broken: an unknown key.  Logged, and nothing taken.
	fs.writeFileSync(file, 'limits:\n  drain_timeout: 3600\n  max_taks: 5\n');
	const before = sink.messages().length;
	process.kill(srv.pid, 'SIGHUP');
	const again = await sink.wait(/^RELOADING=1/, before, 'RELOADING=1 again');
	await sink.wait(/^READY=1/, again + 1, 'READY=1 after the failed reload');
	const line = `warning: reload failed: ${file}:3: limits.max_taks: unknown limit; did you ` +
	    'mean `limits.max_tasks`?; the configuration in force stays';
	await waitFor(() => srv.stderr().includes(line), HANG, 'the failure logged');

	// The drain timeout in force is still 1 s, not the broken file's 3600.
	const call = srv.orchestrate({ query: 'Held [[agent:gate]]', num_agents: 2 });
	await waitFor(async () => (await mock.stats()).held >= 2, HANG, 'agents held');
	process.kill(srv.pid, 'SIGTERM');
	const { result } = await call;
	assert.equal(result.isError, true, JSON.stringify(result));
	assert.match(result.content[0].text, /^interrupted by shutdown/);
	assert.deepEqual(await srv.exited, { code: 0, signal: null }, srv.stderr());
	assert.match(srv.stderr(), /warning: drain timeout \(1 s\): interrupting 1 running task/);
	assert.doesNotMatch(srv.stderr(), /^\{/m, 'log.format changed without a restart');
});
