// Run in the VM stage's guest only (tests/vm/jobs/sandbox): the guest is
// what the stage claims, checked before the suites after it are believed.
// Debian 12's own kernel (6.1) with Landlock at ABI 2 as heavyd probes it,
// systemd 252 as PID 1 with cgroup v2's memory and pids controllers, and a
// heavyd in a Delegate=yes scope with per-worker cgroups on: were any of
// these off, the cgroup and Landlock tests would skip, and this fails.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import { test } from 'node:test';

import { HEAVYD, STATE_DIR } from '../integration/lib.mjs';

/* The sandbox.* lines of heavyd --check-config (through the scope). */
function sandbox(env = {}) {
	const out = execFileSync(HEAVYD, ['--check-config'], {
		env: { PATH: process.env.PATH, HEAVY_STATE_DIR: STATE_DIR, OPENROUTER_API_KEY: 'k', ...env },
		encoding: 'utf8',
	});
	const f = {};
	for (const m of out.matchAll(/^sandbox\.(\w+): (.*)$/gm))
		f[m[1]] = m[2].startsWith('"') ? JSON.parse(m[2]) : m[2];
	return f;
}

test("the kernel is Debian 12's own 6.1", () => {
	assert.match(os.release(), /^6\.1\.\d+-\d+-amd64$/);
	assert.match(fs.readFileSync('/proc/version', 'utf8'), /Debian 6\.1\./);
	assert.match(fs.readFileSync('/etc/debian_version', 'utf8'), /^12\./);
});

test('systemd 252 is PID 1, on cgroup v2 with the memory and pids controllers', () => {
	assert.equal(fs.readFileSync('/proc/1/comm', 'utf8').trim(), 'systemd');
	assert.match(execFileSync('systemctl', ['--version'], { encoding: 'utf8' }), /^systemd 252 /);
	const controllers = fs.readFileSync('/sys/fs/cgroup/cgroup.controllers', 'utf8').split(/\s+/);
	assert.ok(controllers.includes('memory') && controllers.includes('pids'), controllers.join(' '));
});

test('heavyd probes Landlock ABI 2 here: the filesystem confined, no TCP port rules', () => {
	assert.match(fs.readFileSync('/sys/kernel/security/lsm', 'utf8'), /(^|,)landlock(,|$)/);
	const f = sandbox();
	assert.match(f.filesystem, /^Landlock ABI 2: /, f.filesystem);
	assert.equal(f.weaker, 'network', JSON.stringify(f));
	// heavyd-egress: the same ABI, nothing writable; no TCP port rules at
	// ABI 2, so its filter alone refuses bind.
	assert.match(f.egress, /^uid 65533 gid 65533, no capabilities; Landlock ABI 2: nothing writable, TCP bind refused by seccomp only; seccomp allowlist: /,
	    f.egress);
});

test('heavyd in a Delegate=yes scope has per-worker cgroups on', () => {
	const f = sandbox({ HEAVY_WORKER_MEMORY: String(256 << 20), HEAVY_WORKER_PIDS: '16' });
	assert.match(f.cgroup, /^\/sys\/fs\/cgroup\/system\.slice\/run-[^/]+\.scope\/workers\/w<pid>: memory\.max 256 MiB, pids\.max 16, memory\.oom\.group 1$/,
	    f.cgroup);
});
