// A full disk under the task store (a 2 MiB tmpfs as the state directory):
// no task id is announced before its row is written, new work is refused
// with the store's reason while it cannot write, and every result a client
// was given is in the store after a clean exit once the disk has room.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { test } from 'node:test';

import { CallToolResultSchema, CreateTaskResultSchema } from '@modelcontextprotocol/sdk/types.js';

import { PG_ADMIN, TOOL, mountTmpfs, setup, startServer, HANG } from './lib.mjs';

const STORE_FULL = /the task store cannot write: .*(full|disk)/;

test('a full disk: ids announced only once stored, new work refused with the cause, nothing acknowledged lost',
    { timeout: 120000, skip: PG_ADMIN ? 'the task store is in PostgreSQL, not on the full disk' : false },
    async (t) => {
	const disk = mountTmpfs(t, 'diskfull', '2m');
	if (disk.why) {
		t.skip(disk.why);
		return;
	}
	// Big queries fill the store fast: every row holds its query.
	const env = { HEAVY_STATE_DIR: disk.dir, HEAVY_POLL_INTERVAL_MS: '100' };
	const { srv, mock } = await setup(t, { env });
	const announced = [], given = new Map(), refused = [];
	for (let i = 0; i < 60 && refused.length < 4; i++) {
		const query = `Fill the disk, call ${i}: ${'lorem ipsum '.repeat(4000)}`;
		if (i % 2) {
			const { result } = await srv.orchestrate({ query, num_agents: 1 }, { timeout: HANG });
			if (result.isError && STORE_FULL.test(result.content[0].text))
				refused.push(result.content[0].text);
			continue;
		}
		let created;
		try {
			created = await srv.client.request({ method: 'tools/call',
			    params: { name: TOOL, arguments: { query, num_agents: 1 } } },
			    CreateTaskResultSchema, { task: { ttl: 600000 }, timeout: HANG });
		} catch (e) {
			assert.equal(e.code, -32603, e.message);
			assert.match(e.message, STORE_FULL);
			refused.push(e.message);
			continue;
		}
		const id = created.task.taskId;
		announced.push(id);
		given.set(id, await srv.client.experimental.tasks.getTaskResult(id, CallToolResultSchema,
		    { timeout: HANG }));
	}
	t.diagnostic(`announced ${announced.length}, refused ${refused.length}: ${refused[0]}`);
	assert.ok(refused.length > 0, `the store never reported a full disk (${announced.length} tasks stored)`);
	assert.ok(announced.length > 0, 'no task was stored before the disk filled');

	// Room again: what was held in memory is written at exit.
	execFileSync('mount', ['-o', 'remount,size=64m', disk.dir]);
	await srv.shutdown();
	assert.doesNotMatch(srv.stderr(), /its result is lost/);

	const b = await startServer({ mock, env });
	t.after(() => b.kill());
	for (const id of announced) {
		const r = await b.client.experimental.tasks.getTaskResult(id, CallToolResultSchema, { timeout: HANG });
		assert.deepEqual(r.content, given.get(id).content, `task ${id}`);
		assert.equal(r.isError, given.get(id).isError, `task ${id}`);
	}
	// And it takes new work again.
	const { result } = await b.orchestrate({ query: 'After the disk was freed', num_agents: 1 });
	assert.equal(result.isError, false, result.content[0].text);
	await b.shutdown();
});
