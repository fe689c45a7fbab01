// heavyd under systemd, with systemd's sockets faked: the notify protocol
// (READY, STATUS, WATCHDOG, STOPPING) to a datagram socket the test binds,
// and socket activation (LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES) with a
// listening socket the test hands over.  The real systemd is the VM stage's.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import { test } from 'node:test';

import { checkShape } from './checks.mjs';
import {
	HANG, HEAVYD, STATE_DIR, TEST_TIMEOUT, apiKey, descendants, expire, sanitizerEnv, setup,
	spawnRaw, startSink, waitFor,
} from './lib.mjs';

test('READY once it serves, STATUS as tasks run, WATCHDOG from the loop, STOPPING at the end',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const sink = await startSink(t);
	const { srv, mock } = await setup(t, {
		env: { NOTIFY_SOCKET: sink.path, WATCHDOG_USEC: '200000' },
	});
	const ready = await sink.wait(/^READY=1\nSTATUS=0 tasks, 0 workers, 1 session$/);
	// Every half WATCHDOG_USEC from the event loop: several, not one at start.
	await waitFor(() => sink.messages().filter((m) => m === 'WATCHDOG=1').length >= 4,
	    HANG, 'WATCHDOG=1 again and again');

	const call = srv.orchestrate({ query: 'Counted [[agent:gate]]', num_agents: 2 });
	await waitFor(async () => (await mock.stats()).held >= 2, HANG, 'both agents held');
	const busy = await sink.wait(/^STATUS=1 task, [1-9]\d* workers?, 1 session$/, ready + 1,
	    'the status of one running task');
	await mock.open();
	const { result } = await call;
	assert.notEqual(result.isError, true, JSON.stringify(result));
	checkShape(result, 2);
	await sink.wait(/^STATUS=0 tasks, 0 workers, 1 session$/, busy + 1, 'the status once it ended');

	const before = sink.messages().length;
	await srv.shutdown();
	await sink.wait(/^STOPPING=1\nSTATUS=/, before, 'STOPPING=1');
	assert.equal(sink.messages().filter((m) => /^READY=1/.test(m)).length, 1,
	    `READY=1 once: ${JSON.stringify(sink.messages())}`);
});

test('malformed NOTIFY_SOCKET, WATCHDOG_USEC or LISTEN_FDS: heavyd refuses to start, naming it',
    { timeout: TEST_TIMEOUT }, async () => {
	const cases = [
		[{ NOTIFY_SOCKET: 'relative/path' }, /NOTIFY_SOCKET: expected an absolute path/],
		[{ NOTIFY_SOCKET: '/run/x', WATCHDOG_USEC: '30s' }, /WATCHDOG_USEC: expected a positive/],
		[{ LISTEN_PID: '1', LISTEN_FDS: 'two' }, /socket activation: LISTEN_FDS: expected a number/],
		[{ LISTEN_FDS: '1' }, /socket activation: LISTEN_FDS is set without LISTEN_PID/],
	];
	for (const [env, re] of cases) {
		const raw = spawnRaw({ OPENROUTER_API_KEY: apiKey(), ...env });
		const ex = await Promise.race([raw.exited, expire(HANG)]);
		assert.deepEqual(ex, { code: 1, signal: null }, `${JSON.stringify(env)}: ${raw.stderr()}`);
		assert.match(raw.stderr(), re, JSON.stringify(env));
	}
});

/* The flags of a descriptor of a process, from /proc/PID/fdinfo. */
function fdFlags(pid, fd) {
	const m = /^flags:\s+([0-7]+)$/m.exec(fs.readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'));
	return parseInt(m[1], 8);
}

test('socket activation: the socket handed over at fd 3 is taken non-blocking and close-on-exec, no child has it, and heavyd serves MCP on it',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const server = net.createServer();
	await new Promise((r) => server.listen(0, '127.0.0.1', r));
	t.after(() => server.listening && server.close());
	const lfd = server._handle.fd;
	assert.ok(lfd > 2, 'no descriptor for the listening socket');
	// LISTEN_PID must be heavyd's own: the shell execs it, keeping its pid.
	const proc = spawn('/bin/sh', ['-c', 'export LISTEN_PID=$$; exec "$0"', HEAVYD], {
		stdio: ['pipe', 'pipe', 'pipe', lfd],
		env: {
			PATH: process.env.PATH, HEAVY_STATE_DIR: STATE_DIR, OPENROUTER_API_KEY: apiKey(),
			LISTEN_FDS: '1', LISTEN_FDNAMES: 'http', ...sanitizerEnv(),
		},
	});
	t.after(() => proc.kill('SIGKILL'));
	let stderr = '';
	proc.stderr.setEncoding('utf8');
	proc.stderr.on('data', (d) => { stderr += d; });
	proc.stdout.resume();
	const exited = new Promise((r) => proc.once('exit', (code, signal) => r({ code, signal })));
	await waitFor(() => /socket activation: descriptor 3, named http/.test(stderr), HANG,
	    'the socket taken');
	const O_NONBLOCK = 0o4000, O_CLOEXEC = 0o2000000;
	const flags = fdFlags(proc.pid, 3);
	assert.ok(flags & O_NONBLOCK, `fd 3 is blocking: ${flags.toString(8)}`);
	assert.ok(flags & O_CLOEXEC, `fd 3 would be inherited: ${flags.toString(8)}`);
	const inode = fs.readlinkSync(`/proc/${proc.pid}/fd/3`);
	assert.match(inode, /^socket:\[\d+\]$/);
	// A child between fork and exec still holds every descriptor (close-on-exec
	// acts at the exec), and under valgrind posix_spawn is a fork that takes
	// its time: look once both children heavyd starts (the zygote, then
	// egress) are there and each runs its own program.
	const exe = (pid) => { try { return fs.readlinkSync(`/proc/${pid}/exe`); } catch { return ''; } };
	const own = exe(proc.pid);
	await waitFor(() => {
		const kids = descendants(proc.pid);
		return ['heavyd-zygote', 'heavyd-egress'].every((c) => kids.some((p) => p.comm === c)) &&
		    kids.every((p) => exe(p.pid) !== own);
	}, HANG, 'the zygote and egress, past their exec');
	for (const p of descendants(proc.pid)) {
		let fds = [];
		try { fds = fs.readdirSync(`/proc/${p.pid}/fd`); } catch { /* gone: it holds nothing */ }
		for (const fd of fds) {
			let target = '';
			try { target = fs.readlinkSync(`/proc/${p.pid}/fd/${fd}`); } catch { /* gone */ }
			assert.notEqual(target, inode, `${p.comm} ${p.pid} has the listening socket`);
		}
	}
	// It serves MCP over HTTP on it (and not on stdin): ours closed, a
	// connection to the port can only be heavyd's.
	const port = server.address().port;
	await new Promise((r) => server.close(r));
	const res = await fetch(`http://127.0.0.1:${port}/mcp`, {
		method: 'POST',
		headers: { 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream' },
		body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: {
			protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 't', version: '1' } } }),
	});
	assert.equal(res.status, 200, stderr);
	assert.match(res.headers.get('mcp-session-id'), /^[\w.:@-]{1,64}\.[0-9a-f]{64}$/);
	assert.equal((await res.json()).result.serverInfo.name, 'heavyd');
	proc.kill('SIGTERM');		/* nothing runs: the drain ends at once */
	assert.deepEqual(await Promise.race([exited, expire(HANG)]), { code: 0, signal: null }, stderr);
});
