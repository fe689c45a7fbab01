// What a new user meets first: a server that starts without an API key
// and says how to give it one, --check-config's verdict and output, the
// signals a terminal sends, and --version.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

import { CallToolResultSchema, CreateTaskResultSchema } from '@modelcontextprotocol/sdk/types.js';

import {
	HEAVYD, STATE_DIR, TOOL, WORKER, apiKey, descendants, sanitizerEnv, setup, stillAlive, tmpdir, waitFor, HANG, TEST_TIMEOUT
} from './lib.mjs';

const NO_KEY = /no API key: set OPENROUTER_API_KEY, the credential openrouter_api_key, `openrouter\.api_key` or `api_key_file` in /;

/* A config directory of our own, so that no user's config.yaml is read. */
function configHome(t) {
	const dir = tmpdir('xdg');
	t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
	return dir;
}

test('without an API key the server starts; every orchestration says how to set one',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const xdg = configHome(t);
	const where = path.join(xdg, 'heavyd', 'config.yaml');
	const fix = new RegExp(NO_KEY.source + where.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&') + '$');
	const { srv, mock } = await setup(t, { env: { OPENROUTER_API_KEY: undefined, XDG_CONFIG_HOME: xdg } });
	const { tools } = await srv.client.listTools();
	assert.ok(tools.some((x) => x.name === TOOL));
	const cfg = await srv.client.readResource({ uri: 'heavy://config' });
	assert.match(cfg.contents[0].text, /^api_key: \(not set\)$/m);
	assert.ok((await srv.client.listPrompts()).prompts.length > 0);

	const { result } = await srv.orchestrate({ query: 'No key', num_agents: 1 });
	assert.equal(result.isError, true);
	assert.match(result.content[0].text, fix);

	const grok = await srv.client.callTool({ name: 'grok_heavy_orchestrate', arguments: { query: 'q' } },
	    CallToolResultSchema, { timeout: HANG });
	assert.equal(grok.isError, true);
	assert.match(grok.content[0].text, fix);

	const { task } = await srv.client.request({ method: 'tools/call',
	    params: { name: TOOL, arguments: { query: 'As a task' } } },
	    CreateTaskResultSchema, { task: { ttl: 60000 }, timeout: HANG });
	const done = await srv.client.experimental.tasks.getTaskResult(task.taskId, CallToolResultSchema,
	    { timeout: HANG });
	assert.equal(done.isError, true);
	assert.match(done.content[0].text, fix);

	assert.equal((await mock.stats()).requests, 0, 'an LLM call was made without a key');
	const warned = srv.stderr().split('\n').filter((l) => /warning: no API key/.test(l));
	assert.equal(warned.length, 1, srv.stderr());
	await srv.shutdown();
});

test('an empty key is no key; the message names the config file in use', { timeout: TEST_TIMEOUT }, async (t) => {
	const dir = configHome(t);
	const file = path.join(dir, 'config.yaml');
	fs.writeFileSync(path.join(dir, 'key'), '\n');
	fs.writeFileSync(file, `api_key_file: "${path.join(dir, 'key')}"\n`);
	const { srv } = await setup(t, { env: { OPENROUTER_API_KEY: '', HEAVY_CONFIG: file } });
	const { result } = await srv.orchestrate({ query: 'Empty key', num_agents: 1 });
	assert.equal(result.isError, true);
	assert.match(result.content[0].text, /^no API key \(api_key_file .*\/key is empty\): set OPENROUTER_API_KEY/);
	assert.ok(result.content[0].text.endsWith(` in ${file}`), result.content[0].text);
	await srv.shutdown();
});

test('--check-config: 0 when the server can work; else 1 and why; its output is YAML', { timeout: TEST_TIMEOUT }, (t) => {
	const xdg = configHome(t);
	const check = (env, args = []) => spawnSync(HEAVYD, ['--check-config', ...args], {
		env: { PATH: process.env.PATH, XDG_CONFIG_HOME: xdg, HEAVY_STATE_DIR: STATE_DIR, ...env },
		encoding: 'utf8' });
	const ok = check({ OPENROUTER_API_KEY: 'sk-x' });
	assert.equal(ok.status, 0, ok.stderr);
	assert.doesNotMatch(ok.stderr, /^heavyd/m);	// (valgrind may say its own things)
	assert.match(ok.stdout, /^api_key: \(set in OPENROUTER_API_KEY, masked\)$/m);
	assert.match(ok.stdout, /^sandbox\.filesystem: /m);
	// max_workers: auto by default, sized to this host, with how; a
	// number stays that number.
	assert.match(ok.stdout, /^limits\.max_workers: \d+  # auto: half of \d+ MiB .* a worker: \d+/m);
	const fixed = check({ OPENROUTER_API_KEY: 'sk-x', HEAVY_MAX_WORKERS: '300' });
	assert.match(fixed.stdout, /^limits\.max_workers: 300$/m);

	for (const env of [{}, { OPENROUTER_API_KEY: '' }]) {
		const r = check(env);
		assert.equal(r.status, 1, JSON.stringify(env));
		assert.match(r.stderr, new RegExp(`^heavyd: ${NO_KEY.source}${xdg}/heavyd/config\\.yaml$`, 'm'));
		assert.match(r.stdout, /^api_key: \(not set\)$/m, 'the configuration is printed all the same');
	}
	const key = path.join(xdg, 'key'), conf = path.join(xdg, 'conf.yaml');
	fs.writeFileSync(key, '');
	fs.writeFileSync(conf, `api_key_file: "${key}"\n`);
	const empty = check({}, ['--config', conf]);
	assert.equal(empty.status, 1);
	assert.match(empty.stderr, /^heavyd: no API key \(api_key_file .*\/key is empty\): set .* in .*\/conf\.yaml$/m);
	assert.match(empty.stdout, /^# effective configuration \(file: .*conf\.yaml\)$/m);

	for (const dir of ['/proc/heavyd-cannot-be-here', '/sys/kernel']) {
		const r = check({ OPENROUTER_API_KEY: 'sk-x', HEAVY_STATE_DIR: dir });
		assert.equal(r.status, 1, `state directory ${dir} was accepted`);
		assert.match(r.stderr, new RegExp(`^heavyd: state directory ${dir}.*: .*set --state-dir DIR or HEAVY_STATE_DIR\\)$`, 'm'));
	}
});

test('errors name what the user set: the variable, the config file, the key', { timeout: TEST_TIMEOUT }, (t) => {
	const dir = configHome(t);
	const run = (env, args = ['--check-config']) => spawnSync(HEAVYD, args, {
		env: { PATH: process.env.PATH, XDG_CONFIG_HOME: dir, HEAVY_STATE_DIR: STATE_DIR,
		    OPENROUTER_API_KEY: 'sk-x', ...env }, encoding: 'utf8' });
	let r = run({ HEAVY_BASE_URL: 'not-a-url' });
	assert.equal(r.status, 1);
	assert.match(r.stderr, /error: HEAVY_BASE_URL: expected an http:\/\/ or https:\/\/ URL, got "not-a-url"/);
	r = run({}, ['--config', '/nonexistent', '--check-config']);
	assert.equal(r.status, 1);
	assert.match(r.stderr, /error: config file \/nonexistent: No such file or directory$/m);
	const file = path.join(dir, 'config.yaml');
	fs.writeFileSync(file, 'openrouter:\n  modle: x\n');
	r = run({ HEAVY_CONFIG: file });
	assert.match(r.stderr, /config\.yaml:2: openrouter\.modle: unknown key; did you mean `openrouter\.model`\?$/m);
	// The server itself stops on the same errors, saying the same.
	r = run({ HEAVY_NUM_AGENTS: ' 4' }, []);
	assert.equal(r.status, 1);
	assert.match(r.stderr, /HEAVY_NUM_AGENTS: expected an integer from 1 to 16, got " 4"/);
});

/*
 * heavyd in a process group of its own, as a shell puts a command it runs
 * in a terminal: the zygote shares it.  Returns raw JSON-RPC over pipes.
 */
function spawnGroup(t) {
	const proc = spawn(HEAVYD, [], {
		detached: true, stdio: ['pipe', 'pipe', 'pipe'],
		env: { PATH: process.env.PATH, HEAVY_STATE_DIR: STATE_DIR, OPENROUTER_API_KEY: apiKey(),
		    ...sanitizerEnv() },
	});
	let stderr = '', stdout = '';
	proc.stderr.setEncoding('utf8');
	proc.stderr.on('data', (d) => { stderr += d; });
	proc.stdout.setEncoding('utf8');
	proc.stdout.on('data', (d) => { stdout += d; });
	const exited = new Promise((r) => proc.once('exit', (code, signal) => r({ code, signal })));
	t.after(() => { try { process.kill(-proc.pid, 'SIGKILL'); } catch { /* gone */ } });
	let id = 0;
	return {
		proc, exited, stderr: () => stderr,
		/* Sends a request and waits for its response (by id). */
		async call(method, params = {}) {
			const want = ++id;
			proc.stdin.write(JSON.stringify({ jsonrpc: '2.0', id: want, method, params }) + '\n');
			return waitFor(() => stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l))
			    .find((m) => m.id === want), 20000, `the response to ${method}`);
		},
	};
}

test('SIGHUP reloads, the zygote unharmed; ^C (SIGINT to the group) shuts down cleanly, no "zygote lost"',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const h = spawnGroup(t);
	const init = await h.call('initialize', { protocolVersion: '2025-06-18', capabilities: {},
	    clientInfo: { name: 'signals', version: '1' } });
	assert.ok(init.result, JSON.stringify(init));
	// The zygote is in the group: the point of the test is that it gets the signals too.
	await waitFor(() => descendants(h.proc.pid).some((p) => p.comm === 'heavyd-zygote' &&
	    p.pgrp === h.proc.pid), 20000, 'the zygote in heavyd\'s process group');

	process.kill(-h.proc.pid, 'SIGHUP');
	await waitFor(() => /info: SIGHUP received; reloading the configuration/.test(h.stderr()) &&
	    /info: reload: nothing changed/.test(h.stderr()), 20000, 'the reload');
	assert.deepEqual((await h.call('ping')).result, {});
	assert.ok(descendants(h.proc.pid).some((p) => p.comm === 'heavyd-zygote'), 'the zygote died of SIGHUP');

	const before = descendants(h.proc.pid);
	process.kill(-h.proc.pid, 'SIGINT');
	assert.deepEqual(await h.exited, { code: 0, signal: null }, h.stderr());
	assert.match(h.stderr(), /info: SIGINT received; shutting down/);
	assert.doesNotMatch(h.stderr(), /zygote (lost|exited)/);
	await waitFor(() => stillAlive(before).length === 0, 20000, 'every process of the server to go');
});

test('--version and -V: the version and the commit built from', () => {
	const run = (bin, arg) => spawnSync(bin, [arg], { encoding: 'utf8' });
	const v = run(HEAVYD, '--version');
	assert.equal(v.status, 0, v.stderr);
	assert.match(v.stdout, /^heavyd 0\.2\.0 \(([0-9a-f]{7,40}|unknown)\)\n$/);
	assert.equal(run(HEAVYD, '-V').stdout, v.stdout);
	// Built together, the worker beside it says the same.
	const w = run(WORKER, '--version');
	assert.equal(w.status, 0, w.stderr);
	assert.equal(w.stdout, v.stdout.replace(/^heavyd /, 'heavyd-worker '));
	assert.equal(run(WORKER, '-V').stdout, w.stdout);
	// And heavyd-egress, the program apart that alone maps libcurl.
	const e = run(path.join(path.dirname(WORKER), 'heavyd-egress'), '--version');
	assert.equal(e.status, 0, e.stderr);
	assert.equal(e.stdout, v.stdout.replace(/^heavyd /, 'heavyd-egress '));
});

// The API keys and the clients' bearer tokens pass through heavyd's
// memory: it is not dumpable (no core file, no ptrace by a process of its
// own user).  The kernel shows it: a non-dumpable process's /proc files
// belong to root even when it runs as another user.
test('heavyd is not dumpable: its /proc files are root\'s while it runs as nobody',
    { timeout: 30000, skip: process.getuid() !== 0 && 'needs root, to run heavyd as nobody' },
    async (t) => {
	if (spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'test',
	    '-x', HEAVYD]).status !== 0) {
		t.skip(`nobody cannot run ${HEAVYD} (a wrapper in a private directory)`);
		return;
	}
	const dir = tmpdir('nodump');
	t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
	fs.chownSync(dir, 65534, 65534);
	const child = spawn('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups',
	    'env', `HOME=${dir}`, `XDG_CONFIG_HOME=${dir}`, `HEAVY_STATE_DIR=${dir}`,
	    'OPENROUTER_API_KEY=sk-not-used', HEAVYD], { stdio: ['pipe', 'ignore', 'pipe'] });
	let stderr = '';
	child.stderr.on('data', (d) => { stderr += d; });
	const exited = new Promise((resolve) => child.on('exit', resolve));
	t.after(() => child.kill('SIGKILL'));
	// It has read its configuration and started serving once it logs the sandbox.
	await waitFor(() => /sandbox: /.test(stderr), undefined, `heavyd to start: ${stderr}`);
	assert.match(fs.readFileSync(`/proc/${child.pid}/status`, 'latin1'),
	    /^Uid:\t65534\t65534\t/m, 'it runs as nobody');
	assert.equal(fs.statSync(`/proc/${child.pid}/environ`).uid, 0, 'not dumpable');
	child.stdin.end();
	assert.equal(await exited, 0, stderr);
});
