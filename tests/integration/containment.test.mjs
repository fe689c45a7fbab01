// What a hostile worker can reach beyond its files, in each sandbox mode
// heavyd supports here (Landlock, and the mount namespace fallback): it
// runs as an unprivileged uid under a root heavyd (and can still use its
// workspace), cannot signal heavyd, the zygote or a spare, cannot make a unix socket
// (so cannot connect to one by its path: docker.sock, D-Bus), and cannot
// send UDP when no endpoint needs a resolver.  Each attempt gets EPERM or
// EACCES, heavyd keeps serving, and the target sees nothing.
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { test } from 'node:test';

import { checkOk, checkShape } from './checks.mjs';
import { HEAVYD, STATE_DIR, readStat, setup, tmpdir, waitFor, HANG, TEST_TIMEOUT } from './lib.mjs';

/* The sandbox filesystem mode heavyd would use with env, or null. */
function fsMode(env) {
	try {
		const out = execFileSync(HEAVYD, ['--check-config'], {
			env: { PATH: process.env.PATH, HEAVY_STATE_DIR: STATE_DIR, OPENROUTER_API_KEY: 'k', ...env },
			encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'],
		});
		return /^sandbox\.filesystem: (.*)$/m.exec(out)?.[1] ?? null;
	} catch {
		return null;
	}
}

// Expected per mode: what the result's sandbox.weaker lists.  Signals,
// unix sockets and UDP are seccomp's in every mode.
const MODES = [
	{ name: 'the default sandbox', env: {} },
	{ name: 'Landlock capped at ABI 2 (Debian 12\'s kernel)', env: { HEAVY_LANDLOCK_ABI: '2' },
	  weaker: ['network'] },
	{ name: 'the mount namespace fallback', env: { HEAVY_SANDBOX_FS: 'mount' }, weaker: ['network'] },
];

for (const mode of MODES) {
	const fsmode = fsMode(mode.env);
	test(`${mode.name}: no signal, unix socket or UDP datagram leaves a worker`, {
		timeout: 60000,
		skip: fsmode ? false : `heavyd does not start with ${JSON.stringify(mode.env)} here`,
	}, async (t) => {
		const dir = tmpdir('contain');
		t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
		const udp = dgram.createSocket('udp4');
		const datagrams = [];
		udp.on('message', (m) => datagrams.push(String(m)));
		await new Promise((r) => udp.bind(0, '127.0.0.1', r));
		t.after(() => udp.close());
		const sock = path.join(dir, 'listener.sock');
		const accepted = [];
		const listener = net.createServer((s) => { accepted.push(1); s.destroy(); });
		await new Promise((r) => listener.listen(sock, r));
		t.after(() => listener.close());

		const { srv } = await setup(t, { worker: 'test', env: mode.env });
		// The zygote is named heavyd-worker until it has renamed itself.
		const zygote = await waitFor(() => srv.descendants().find((p) => p.comm === 'heavyd-zygote'),
		    30000, 'the zygote under heavyd');
		const spare = srv.descendants().find((p) => p.comm === 'heavyd-spare');
		const targets = [srv.pid, zygote.pid, ...(spare ? [spare.pid] : []), -1];
		const marks = [
		    '[[a1:tool:test_ids:{}]]',
		    '[[a1:tool:write_file:{"path":"mine.txt","content":"x"}]]',
		    ...targets.map((pid) => `[[a1:tool:test_signal:${JSON.stringify({ pid })}]]`),
		    `[[a1:tool:test_udp:${JSON.stringify({ port: udp.address().port })}]]`,
		    `[[a1:tool:test_unix:${JSON.stringify({ path: sock })}]]`,
		];
		const { result } = await srv.orchestrate({ query: `Escape ${marks.join(' ')}`, num_agents: 1 },
		    { timeout: HANG });
		const sc = checkShape(result, 1);
		checkOk(sc.agents[0]);
		if (mode.weaker)
			assert.deepEqual(sc.sandbox.weaker, mode.weaker, sc.sandbox.confinement);
		else
			assert.ok(Array.isArray(sc.sandbox.weaker), JSON.stringify(sc.sandbox));
		for (const pid of targets)
			assert.ok(sc.answer.includes(`kill: EPERM`), `kill ${pid}: ${sc.answer}`);
		assert.equal((sc.answer.match(/kill: EPERM/g) ?? []).length, targets.length, sc.answer);
		assert.match(sc.answer, /socket: EACCES[^]*socket: EACCES/, 'UDP and unix sockets refused');
		// Under a root heavyd a worker runs as nobody, and its workspace is its own.
		if (process.getuid() === 0)
			assert.match(sc.answer, /uid=65534 gid=65534 groups=0/);
		else
			assert.match(sc.answer, new RegExp(`uid=${process.getuid()} `));
		assert.match(sc.answer, /wrote 1 bytes to mine\.txt/);
		for (const pid of [srv.pid, zygote.pid])
			assert.ok(readStat(pid), `process ${pid} was killed`);
		if (spare)
			assert.notEqual(readStat(spare.pid)?.state, undefined, 'the spare was killed');
		assert.deepEqual(await srv.client.ping(), {});
		await new Promise((r) => setImmediate(r));
		assert.deepEqual(datagrams, [], 'a datagram left the worker');
		assert.deepEqual(accepted, [], 'the worker reached the unix socket');
		await srv.shutdown();
	});
}

test("a worker can neither forge nor flood heavyd's log: its stderr is labelled and capped",
    { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv } = await setup(t, { worker: 'test' });
	const from = srv.stderr().length;
	const { result } = await srv.orchestrate({ query: 'Shout [[a1:tool:test_stderr:{}]]', num_agents: 1 },
	    { timeout: HANG });
	checkOk(checkShape(result, 1).agents[0]);
	const said = () => srv.stderr().slice(from);
	await waitFor(() => /further output is dropped/.test(said()), 30000, 'the relay to reach its cap');
	assert.match(said(), /^heavyd-worker\[\d+\] task [0-9a-f]{8} agent 1: \?heavyd\[1\]: error: forged by a worker$/m);
	assert.doesNotMatch(said(), /^\r?heavyd\[1\]: error: forged/m, 'a forged line stands as heavyd\'s own');
	assert.doesNotMatch(said(), /\r/, 'a carriage return reached the log');
	// 4 MiB written; the relay keeps 64 KiB of it, and a label per line.
	assert.ok(said().length < 256 << 10, `the log grew by ${said().length} bytes`);
	await srv.shutdown();
});

/* heavyd as root without CAP_SYS_ADMIN (no mount namespace), told that
 * the kernel has no Landlock: what a host without either gives. */
function unconfinedHost() {
	return process.getuid() === 0 ? ['setpriv', '--inh-caps=-all', '--bounding-set=-all', HEAVYD] : [HEAVYD];
}

test('without a filesystem sandbox heavyd refuses to start, naming what is missing and the setting',
    { timeout: TEST_TIMEOUT }, async () => {
	const [cmd, ...args] = unconfinedHost();
	const r = spawnSync(cmd, [...args, '--check-config'], {
		env: { PATH: process.env.PATH, HEAVY_STATE_DIR: STATE_DIR, OPENROUTER_API_KEY: 'k',
		    HEAVY_LANDLOCK_ABI: '0' },
		encoding: 'utf8',
	});
	assert.equal(r.status, 1, r.stderr);
	assert.match(r.stderr, /the worker sandbox is incomplete: no filesystem confinement/);
	assert.match(r.stderr, /sandbox\.require: false \(HEAVY_SANDBOX_REQUIRE=0\)/);
});

test('an unconfined sandbox accepted in so many words is a warning, in heavy://config and in every result',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv } = await setup(t, { command: unconfinedHost(),
	    env: { HEAVY_LANDLOCK_ABI: '0', HEAVY_SANDBOX_REQUIRE: '0' } });
	assert.match(srv.stderr(), /warning: sandbox: filesystem NOT CONFINED/);
	const config = await srv.client.readResource({ uri: 'heavy://config' });
	assert.match(config.contents[0].text, /^sandbox\.weaker: filesystem, network$/m);
	assert.match(config.contents[0].text, /^sandbox\.require: false$/m);
	const { result } = await srv.orchestrate({ query: 'Unconfined', num_agents: 1 });
	const sc = checkShape(result, 1);
	assert.deepEqual(sc.sandbox.weaker, ['filesystem', 'network']);
	assert.match(sc.sandbox.confinement, /filesystem NOT CONFINED/);
	await srv.shutdown();
});
