// The agent tools against the mock: read_file and write_file in the task's
// workspace (and nowhere else), search_web over the mock's SearXNG and
// Brave endpoints, and which tools the model is offered.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

import { HEAVYD, STATE_DIR, readStat, setup, tmpdir } from './lib.mjs';
import { TEST_TIMEOUT } from './lib.mjs';

const marker = (tool, args) => `[[agent:tool:${tool}:${JSON.stringify(args)}]]`;

test('an agent writes a file and reads it back, in the workspace structuredContent names; search_web is not offered without a backend', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv, mock } = await setup(t);
	const text = 'hello from the agent, caf\u00e9';
	const { result } = await srv.orchestrate({
		query: 'Files ' + marker('write_file', { path: 'notes/deep/a.txt', content: text }) +
		    marker('read_file', { path: 'notes/deep/a.txt' }) +
		    marker('search_web', { query: 'cats' }),
		num_agents: 1 });
	assert.notEqual(result.isError, true, JSON.stringify(result));
	const sc = result.structuredContent;
	assert.equal(path.dirname(sc.workspace), path.join(fs.realpathSync(STATE_DIR), 'workspaces'));
	assert.match(path.basename(sc.workspace), /^[0-9a-f]{32}$/);
	assert.equal(fs.statSync(sc.workspace).mode & 0o777, 0o700);
	const file = path.join(sc.workspace, 'notes', 'deep', 'a.txt');
	assert.equal(fs.readFileSync(file, 'utf8'), text);
	assert.deepEqual(fs.readdirSync(path.dirname(file)), ['a.txt'], 'a temporary was left behind');

	const stats = await mock.stats();
	const bytes = Buffer.byteLength(text);
	assert.deepEqual(stats.tool_messages, [
		`wrote ${bytes} bytes to notes/deep/a.txt`,
		text,
		"error: unknown tool 'search_web'",
	]);
	for (const name of ['calculate', 'mark_task_complete', 'read_file', 'write_file'])
		assert.ok(stats.offered[name] > 0, `${name} not offered: ${JSON.stringify(stats.offered)}`);
	assert.equal(stats.offered.search_web, undefined, 'search_web offered without a backend');
	assert.match(sc.answer, new RegExp(`tool results: wrote ${bytes} bytes .* \\| ${text}`));
	await srv.shutdown();
});

test('paths that leave the workspace are refused by the kernel; the task still completes', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv, mock } = await setup(t);
	const { result } = await srv.orchestrate({
		query: 'Escape ' + marker('read_file', { path: '../../etc/passwd' }) +
		    marker('read_file', { path: '/etc/passwd' }) +
		    marker('write_file', { path: '../escaped.txt', content: 'x' }) +
		    marker('read_file', { path: 'x', head: 1, tail: 1 }) +
		    marker('read_file', { path: 'x', lines: 3 }),
		num_agents: 2 });
	assert.notEqual(result.isError, true, JSON.stringify(result));
	const sc = result.structuredContent;
	assert.equal(sc.synthesized, true);
	for (const a of sc.agents)
		assert.equal(a.status, 'ok', JSON.stringify(a));
	const msgs = (await mock.stats()).tool_messages;
	assert.equal(msgs.length, 10, JSON.stringify(msgs));
	// Both agents' calls, interleaved: each answer comes exactly twice.
	const expect = [
		/^error: \.\.\/\.\.\/etc\/passwd: path escapes the workspace/,
		/^error: \/etc\/passwd: path escapes the workspace/,
		/^error: \.\.\/escaped\.txt: path escapes the workspace/,
		/^error: give head or tail, not both$/,
		/^error: argument 'lines' is not accepted; the arguments are: path, head, tail$/,
	];
	for (const re of expect)
		assert.equal(msgs.filter((m) => re.test(m)).length, 2, `${re} in ${JSON.stringify(msgs)}`);
	assert.ok(!msgs.some((m) => m.includes('root:')), 'a file outside the workspace was read');
	assert.ok(!fs.existsSync(path.join(STATE_DIR, 'workspaces', 'escaped.txt')));
	assert.ok(!fs.existsSync(sc.workspace), 'an empty workspace is removed when its task ends');
	await srv.shutdown();
});

test('a task whose workspace cannot be created fails clearly and calls no LLM', { timeout: TEST_TIMEOUT }, async (t) => {
	const state = tmpdir('state-gone');
	t.after(() => fs.rmSync(state, { recursive: true, force: true }));
	const { srv, mock } = await setup(t, { env: { HEAVY_STATE_DIR: state } });
	// heavyd holds the directory open; once it is deleted, mkdirat fails.
	fs.rmSync(path.join(state, 'workspaces'), { recursive: true });
	const { result } = await srv.orchestrate({ query: 'Anything', num_agents: 2 });
	assert.equal(result.isError, true, JSON.stringify(result));
	assert.match(result.content[0].text, /^The orchestration could not start: cannot create the task's workspace: .*No such file or directory/);
	assert.equal(result.structuredContent.agents[0].status, 'failed');
	assert.equal(result.structuredContent.workspace, '');
	assert.equal((await mock.stats()).requests, 0);
	await srv.client.ping();
	await srv.shutdown();
});

test('search_web over the mock SearXNG: title, URL, snippet and the page text reach the model', { timeout: TEST_TIMEOUT }, async (t) => {
	const { startMock } = await import('./lib.mjs');
	const site = await startMock('site');
	t.after(() => site.stop());
	const { srv, mock } = await setup(t, { env: {
		HEAVY_SEARCH_BACKEND: 'searxng',
		HEAVY_SEARCH_URL: `http://127.0.0.1:${site.port}/`,
		HEAVY_SEARCH_ALLOW_PRIVATE: '1',
		HEAVY_MAX_PAGE_BYTES: '65536',
		HEAVY_MAX_EXTRACT_BYTES: '256',
		HEAVY_SEARCH_TIMEOUT: '2',
	} });
	const { result, elapsed } = await srv.orchestrate({
		query: 'Search ' + marker('search_web', { query: 'cats', max_results: 2 }) +
		    marker('search_web', { query: 'paths=/redirect/2,/redirect/5,/big,/binary,/hang' }),
		num_agents: 1 });
	// The agent's own deadline is minutes away: only the search's limit ends the wait.
	// (4 minutes; the search's limit is 2 s a fetch; on the server's clock.)
	const took = result.structuredContent?.elapsed_ms;
	assert.ok(took < 30000, `a page that never answers held the search for ${took} ms (${elapsed} ms for the client)`);
	assert.notEqual(result.isError, true, JSON.stringify(result));
	const stats = await mock.stats();
	assert.ok(stats.offered.search_web > 0, JSON.stringify(stats.offered));
	const [first, second] = stats.tool_messages;
	const base = `http://127.0.0.1:${site.port}`;
	assert.match(first, /^Search results for "cats" \(2\):/);
	assert.ok(first.includes(`\n1. /page/1\nURL: ${base}/page/1\nSnippet: A snippet about the query & more\n` +
	    'Page: Page 1 Body text of page 1 & more. Caf\u00e9 cr\u00e8me\n'), first);
	assert.ok(first.includes(`\n2. /page/2\nURL: ${base}/page/2\n`), first);
	assert.doesNotMatch(first, /page\/3|SCRIPT-TEXT|NOSCRIPT-TEXT|hidden|color/);

	assert.match(second, /1\. \/redirect\/2\n.*\n.*\nPage: Page 1 Body text/);
	assert.match(second, /2\. \/redirect\/5\n.*\n.*\nPage: \(not fetched: more than 3 redirects\)/);
	assert.match(second, /3\. \/big\n.*\n.*\nPage: \(not fetched: larger than 65536 bytes\)/);
	assert.match(second, /4\. \/binary\n.*\n.*\nPage: \(not a text page: application\/pdf\)/);
	assert.match(second, /5\. \/hang\n.*\n.*\nPage: \(not fetched: no answer within the search's time limit\)/);

	const s = await site.stats();
	assert.equal(s.searches, 2);
	assert.equal(s.search_auth, 0, 'the LLM key (or any Authorization) reached a search or page host');
	await srv.shutdown();
});

test('Brave: the key (from the environment or a key file) goes only to the backend, is masked by --check-config; loopback pages are refused by default', { timeout: TEST_TIMEOUT }, async (t) => {
	const { startMock } = await import('./lib.mjs');
	const site = await startMock('site');
	t.after(() => site.stop());
	const env = {
		HEAVY_SEARCH_BACKEND: 'brave',
		HEAVY_SEARCH_URL: `http://127.0.0.1:${site.port}/brave/search`,
		HEAVY_SEARCH_API_KEY: 'brave-secret-4711',
	};
	const shown = execFileSync(HEAVYD, ['--check-config'], {
		env: { ...process.env, ...env, OPENROUTER_API_KEY: 'sk-x', HEAVY_STATE_DIR: STATE_DIR },
		encoding: 'utf8' });
	assert.match(shown, /search\.backend: brave/);
	assert.match(shown, /search\.api_key: \(set in HEAVY_SEARCH_API_KEY, masked\)/);
	assert.doesNotMatch(shown, /brave-secret-4711/);

	// The server takes the same settings from a file, the key from a key file.
	const dir = tmpdir('brave');
	t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
	fs.writeFileSync(path.join(dir, 'key'), 'brave-secret-4711\n');
	fs.writeFileSync(path.join(dir, 'config.yaml'), `search:\n  backend: brave\n` +
	    `  url: "${env.HEAVY_SEARCH_URL}"\n  api_key_file: "${path.join(dir, 'key')}"\n`);
	const { srv, mock } = await setup(t, { env: { HEAVY_CONFIG: path.join(dir, 'config.yaml') } });
	const { result } = await srv.orchestrate({
		query: 'Brave ' + marker('search_web', { query: 'dogs' }), num_agents: 1 });
	assert.notEqual(result.isError, true, JSON.stringify(result));
	const [msg] = (await mock.stats()).tool_messages;
	assert.match(msg, /^Search results for "dogs" \(3\):/);
	assert.match(msg, /Snippet: A snippet about the query & more\nPage: \(not fetched: refused: the page's address 127\.0\.0\.1 is loopback, private or link-local\)/);
	const s = await site.stats();
	assert.equal(s.brave_token, 'brave-secret-4711');
	assert.equal(s.searches, 1);
	assert.equal(s.pages, 0, 'a page on loopback was requested');
	assert.equal(s.search_auth, 0);
	// heavyd itself too, unless valgrind runs it: then /proc shows
	// valgrind's own copy of the environment, not the one heavyd scrubbed.
	const self = readStat(srv.pid)?.comm === 'heavyd' ? [srv.pid] : [];
	for (const pid of [...self, ...srv.descendants().map((p) => p.pid)]) {
		let data = '';
		try { data = fs.readFileSync(`/proc/${pid}/environ`, 'latin1'); } catch { continue; }
		assert.ok(!data.includes('brave-secret-4711'), `the search key is in /proc/${pid}/environ`);
	}
	await srv.shutdown();
});

test('a bad search backend or state directory stops heavyd at startup, naming it', { timeout: TEST_TIMEOUT }, () => {
	const run = (env, args = ['--check-config']) => {
		try {
			execFileSync(HEAVYD, args, {
				env: { PATH: process.env.PATH, HOME: process.env.HOME, OPENROUTER_API_KEY: 'sk-x', ...env },
				encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
		} catch (e) {
			return e.stderr;
		}
		assert.fail(`heavyd accepted ${JSON.stringify(env)}`);
	};
	assert.match(run({ HEAVY_SEARCH_BACKEND: 'google' }), /search\.backend: expected searxng, brave or none/);
	assert.match(run({ HEAVY_SEARCH_BACKEND: 'searxng' }), /search\.url: the searxng backend needs/);
	assert.match(run({ HEAVY_SEARCH_BACKEND: 'brave' }), /search\.api_key: the brave backend needs a key/);
	assert.match(run({ HEAVY_SEARCH_BACKEND: 'searxng', HEAVY_SEARCH_URL: 'ftp://x' }), /expected an http:\/\/ or https:\/\/ URL/);
	assert.match(run({ HEAVY_STATE_DIR: '/proc/heavyd-cannot-be-here' }, []),
	    /state directory \/proc\/heavyd-cannot-be-here: .*set --state-dir DIR or HEAVY_STATE_DIR/);
	assert.match(run({ HOME: undefined }), /no state directory: HOME is not set/);
});
