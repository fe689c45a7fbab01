// heavyd ask: one orchestration from the shell, against the mock.  On a
// pseudo-terminal (util-linux script) it redraws one line per agent; on a
// pipe it writes no escape codes.  Exit codes: 0 answered, 1 LLM or
// configuration failure, 2 usage, 124 timed out, 128+N signal N.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

import { HEAVYD, IS_ASAN, WORKER, apiKey, assertNoSanitizerReport, describe, descendants,
	STATE_DIR, sanitizerEnv, startMock, stillAlive, tmpdir, waitFor } from './lib.mjs';
import { HANG, SOON, TEST_TIMEOUT } from './lib.mjs';

const HAVE_SCRIPT = spawnSync('script', ['--version']).status === 0;
const ESC = '\x1b';

function askEnv(mock, extra = {}) {
	const cfgHome = tmpdir('ask-xdg'); // no stray config file
	return {
		PATH: process.env.PATH,
		XDG_CONFIG_HOME: cfgHome,
		HEAVY_STATE_DIR: STATE_DIR,
		OPENROUTER_API_KEY: apiKey(),
		HEAVY_WORKER: WORKER,
		HEAVY_RETRY_BASE_MS: '50',
		...(mock ? { HEAVY_BASE_URL: mock.baseUrl } : {}),
		...sanitizerEnv(),
		...extra,
	};
}

/* Runs heavyd ask on pipes; o.onStderr sees stderr as it comes. */
function ask(args, env, o = {}) {
	const t0 = Date.now();
	const proc = spawn(HEAVYD, ['ask', ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
	let stdout = '', stderr = '';
	proc.stdout.setEncoding('utf8');
	proc.stderr.setEncoding('utf8');
	proc.stdout.on('data', (d) => { stdout += d; });
	proc.stderr.on('data', (d) => { stderr += d; o.onStderr?.(stderr); });
	const done = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({
		code, signal, stdout, stderr, elapsed: Date.now() - t0,
	})));
	const timer = setTimeout(() => proc.kill('SIGKILL'), o.limit ?? HANG);
	done.finally(() => clearTimeout(timer));
	return { proc, done: done.then(async (r) => {
		await new Promise((res) => setImmediate(res)); // last data events
		return { ...r, stdout, stderr };
	}) };
}

const sh = (s) => `'${s.replace(/'/g, "'\\''")}'`;

/* Runs heavyd ask inside a pseudo-terminal; everything it writes comes back. */
function askPty(args, env) {
	const cmd = [HEAVYD, 'ask', ...args].map(sh).join(' ');
	const r = spawnSync('script', ['-qfec', cmd, '/dev/null'], {
		env: { ...env, TERM: 'xterm' }, encoding: 'utf8', timeout: HANG,
		stdio: ['pipe', 'pipe', 'pipe'], input: '',
	});
	return { code: r.status, out: r.stdout, err: r.stderr };
}

function noSanitizer(r) {
	if (IS_ASAN)
		assertNoSanitizerReport(r.stderr ?? r.out, 'heavyd ask');
}

test('on a pseudo-terminal, one line per agent is redrawn in place', { timeout: TEST_TIMEOUT }, async (t) => {
	if (!HAVE_SCRIPT) {
		t.skip('util-linux script (bsdutils) is not installed: no pseudo-terminal to test with');
		return;
	}
	const mock = await startMock();
	t.after(() => mock.stop());
	// The lines are redrawn every 100 ms: each state below lasts 1.5 s,
	// fifteen redraws, so a busy machine still shows every one.
	const q = 'Slow [[agent:latency:1500]] [[a2:tool:calculate:{"expression":"6*7"}]]';
	const r = askPty(['--num-agents', '3', q], askEnv(mock));
	assert.equal(r.code, 0, r.out);
	const out = r.out;
	assert.ok(out.includes(`${ESC}[2K`), 'no line clearing');
	assert.match(out, new RegExp(`${ESC}\\[4A`), 'no cursor-up redraw over 1 + 3 lines');
	// Every state an agent line goes through, as make_it_heavy.py shows them.
	const plain = out.replace(/\x1b\[[0-9;]*[A-Za-z]/g, '');
	assert.match(plain, /heavyd: planning, 3 agents/);
	for (const k of [1, 2, 3]) {
		assert.match(plain, new RegExp(`agent ${k}\\s+queued`), plain.slice(0, 2000));
		assert.match(plain, new RegExp(`agent ${k}\\s+running`), plain.slice(0, 2000));
		assert.match(plain, new RegExp(`agent ${k}\\s+done\\s+\\d+\\.\\ds`), plain.slice(-2000));
	}
	assert.match(plain, /agent 2\s+running\s+calculate/, 'the current step is not shown');
	assert.match(plain, /heavyd: done, 3 agents, \d+\.\ds/);
	assert.match(plain, /Synthesized answer over 3 responses\./);
	noSanitizer(r);
});

test('on a pseudo-terminal, a failed agent shows as failed with its reason', { timeout: TEST_TIMEOUT }, async (t) => {
	if (!HAVE_SCRIPT) {
		t.skip('util-linux script (bsdutils) is not installed: no pseudo-terminal to test with');
		return;
	}
	const mock = await startMock();
	t.after(() => mock.stop());
	const r = askPty(['--num-agents', '2', 'One fails [[a1:status:400]]'], askEnv(mock));
	assert.equal(r.code, 0, r.out);
	const plain = r.out.replace(/\x1b\[[0-9;]*[A-Za-z]/g, '');
	assert.match(plain, /agent 1\s+failed\s+\d+\.\ds HTTP 400/);
	assert.match(plain, /agent 2\s+done/);
});

test('on a pipe: the answer on stdout, short progress on stderr, no escape codes', { timeout: TEST_TIMEOUT }, async (t) => {
	const mock = await startMock();
	t.after(() => mock.stop());
	const r = await ask(['--num-agents', '3', 'Why is the sky blue?'], askEnv(mock)).done;
	assert.equal(r.code, 0, r.stderr);
	assert.equal(r.stdout, 'Synthesized answer over 3 responses.\n');
	assert.ok(!r.stdout.includes(ESC) && !r.stderr.includes(ESC), JSON.stringify(r.stderr));
	assert.match(r.stderr, /questions ready/);
	assert.match(r.stderr, /agent 3 done/);
	for (const line of r.stderr.trim().split('\n'))
		assert.ok(line.length < 200, `long progress line: ${line}`);
	noSanitizer(r);

	const j = await ask(['--json', '--num-agents', '2', '--strategy', 'consensus', 'JSON please'],
	    askEnv(mock)).done;
	assert.equal(j.code, 0, j.stderr);
	const sc = JSON.parse(j.stdout);
	assert.match(sc.answer, /^Synthesized answer over 2 responses\./);
	assert.equal(sc.agents.length, 2);
	assert.equal(sc.synthesized, true);
});

test('exit codes: usage 2, all agents failed 1, a 401 1, no key 1, timeout 124', { timeout: TEST_TIMEOUT }, async (t) => {
	const mock = await startMock();
	t.after(() => mock.stop());
	const env = askEnv(mock);
	for (const args of [[], ['--num-agents', '0', 'q'], ['--timeout', 'soon', 'q'],
	    ['--strategy', 'vote', 'q'], ['--bogus', 'q'], ['--model'], ['--model', 'has space', 'q']]) {
		const r = await ask(args, env).done;
		assert.equal(r.code, 2, `${JSON.stringify(args)}: ${r.stderr}`);
		assert.match(r.stderr, /heavyd ask: /, JSON.stringify(args));
		assert.equal(r.stdout, '');
	}
	const before = (await mock.stats()).requests;
	const u = await ask(['--num-agents', '0', 'q'], env).done;
	assert.match(u.stderr, /--num-agents: expected an integer from 1 to 16/);
	assert.equal((await mock.stats()).requests, before, 'a usage error still called the LLM');

	const failed = await ask(['--num-agents', '3', 'All fail [[agent:status:400]]'], env).done;
	assert.equal(failed.code, 1, failed.stderr);
	assert.match(failed.stderr, /All 3 agents failed/);
	assert.equal(failed.stdout, '');

	const key = await ask(['Bad key [[all:status:401]]'], env).done;
	assert.equal(key.code, 1, key.stderr);
	assert.match(key.stderr, /401/);

	const nokey = await ask(['q'], { ...env, OPENROUTER_API_KEY: '' }).done;
	assert.equal(nokey.code, 1, nokey.stderr);
	assert.match(nokey.stderr, /^heavyd ask: no API key: set OPENROUTER_API_KEY, the credential openrouter_api_key, `openrouter\.api_key` or `api_key_file` in /m);

	const slow = await ask(['--timeout', '3', '--num-agents', '2', 'Hangs [[agent:hang]]'], env).done;
	assert.equal(slow.code, 124, slow.stderr);
	assert.match(slow.stderr, /timed out/);
	assert.ok(slow.elapsed >= 2000, `exited after ${slow.elapsed} ms`);
	noSanitizer(slow);
});

test('--config is honoured after ask too', { timeout: TEST_TIMEOUT }, async (t) => {
	const mock = await startMock();
	t.after(() => mock.stop());
	const dir = tmpdir('ask-config');
	const file = path.join(dir, 'config.yaml');
	fs.writeFileSync(file, 'orchestrator:\n  parallel_agents: 2\n');
	const r = await ask(['--json', '--config', file, 'From the file'], askEnv(mock)).done;
	assert.equal(r.code, 0, r.stderr);
	assert.equal(JSON.parse(r.stdout).agents.length, 2);
	fs.writeFileSync(file, 'orchestrator:\n  parallel_agents: 99\n');
	const bad = await ask(['--config', file, 'q'], askEnv(mock)).done;
	assert.equal(bad.code, 1, bad.stderr);
	assert.match(bad.stderr, /config\.yaml:2: orchestrator\.parallel_agents/);
	fs.rmSync(dir, { recursive: true, force: true });
});

for (const sig of ['SIGINT', 'SIGTERM']) {
	test(`${sig} kills the workers and exits 128+N`, { timeout: TEST_TIMEOUT }, async (t) => {
		const mock = await startMock();
		t.after(() => mock.stop());
		let ready;
		const questions = new Promise((r) => { ready = r; });
		const run = ask(['--num-agents', '3', '--timeout', '60', 'Hangs [[agent:hang]]'], askEnv(mock),
		    { onStderr: (s) => { if (/questions ready/.test(s)) ready(); } });
		await questions;
		await waitFor(() => descendants(run.proc.pid).filter((p) => p.comm === 'heavyd-worker').length >= 3,
		    undefined, 'three agent workers');
		const procs = descendants(run.proc.pid);
		run.proc.kill(sig);
		const r = await run.done;
		assert.equal(r.code, sig === 'SIGINT' ? 130 : 143, r.stderr);
		assert.match(r.stderr, new RegExp(`interrupted by ${sig}`));
		let left = procs;
		try {
			await waitFor(() => (left = stillAlive(procs)).length === 0, SOON, 'children to exit');
		} catch {
			assert.fail(`left behind after ${sig}: ${describe(left)}`);
		}
		noSanitizer(r);
	});
}
