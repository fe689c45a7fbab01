// Early answers: with aggregation_strategy incremental, a draft synthesis
// is rebuilt from the answers in so far while the other agents work (one
// at a time, at most every incremental_interval), shown in the task's
// progress and its progress notifications, and the final synthesis starts
// from the last draft.  Agents are held at the mock's named gates
// ([[aN:gate:NAME]], POST /open/NAME) and drafts with [[draft:...]], so
// every test sees the order of events it asserts on any machine; nothing
// here depends on how fast the machine is.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { test } from 'node:test';

import { CallToolResultSchema } from '@modelcontextprotocol/sdk/types.js';

import { checkOk, checkShape } from './checks.mjs';
import { HEAVYD, STATE_DIR, WORKER, apiKey, assertNoSanitizerReport, describe, jobsAlive,
	sanitizerEnv, setup, startMock, tmpdir, waitFor } from './lib.mjs';
import { HANG, IS_ASAN, TEST_TIMEOUT } from './lib.mjs';

const show = (x) => JSON.stringify(x, null, 1);

async function call(srv, name, args = {}) {
	const result = await srv.client.callTool({ name, arguments: args }, CallToolResultSchema,
	    { timeout: HANG });
	assert.notEqual(result.isError, true, show(result));
	return result.structuredContent;
}

/* The drafts of a result: one at a time, each from more answers than the
 * last, their tokens apart and in the task's usage. */
function checkDrafts(sc, numAgents) {
	const d = sc.drafts;
	assert.ok(d, `no drafts in ${show(sc)}`);
	assert.equal(sc.strategy, 'incremental');
	assert.equal(d.calls, d.list.length, show(d));
	d.list.forEach((x, i) => {
		assert.equal(x.n, i + 1, show(d));
		assert.ok(x.answers >= 1 && x.answers < numAgents, show(d));
		assert.ok(x.ended_ms >= x.started_ms, show(d));
		if (i > 0) {
			assert.ok(x.answers > d.list[i - 1].answers, `a draft of no new answer: ${show(d)}`);
			assert.ok(x.started_ms >= d.list[i - 1].ended_ms, `two drafts at once: ${show(d)}`);
		}
	});
	assert.equal(d.tokens, d.list.reduce((s, x) => s + x.tokens, 0), show(d));
	assert.ok(d.tokens > 0, show(d));
	assert.ok(sc.usage.total_tokens > d.tokens, 'the drafts count in the task usage too');
	assert.equal(d.llm_calls, d.calls, show(d));
	// planner, agents, drafts and the final synthesis, one call each.
	assert.equal(sc.usage.llm_calls, 1 + numAgents + d.calls + 1, show(sc.usage));
	assert.ok(d.first_draft_ms !== null && d.first_draft_ms <= d.answer_ms, show(d));
	return d;
}

/* The prompt of the final synthesis, as the mock got it. */
async function finalPrompt(mock) {
	const prompts = (await mock.stats()).synthesis_prompts.filter((p) => p.kind === 'synthesis');
	assert.equal(prompts.length, 1, show(prompts));
	return prompts[0].text;
}

test('drafts come while an agent is held, one at a time; the final synthesis starts from the last',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const { mock, srv } = await setup(t, { env: { HEAVY_INCREMENTAL_INTERVAL: '0' } });
	const { task_id: id } = await call(srv, 'grok_heavy_orchestrate', {
		query: 'Early [[a4:gate:last]] [[draft:gate:d]]', num_agents: 4,
		aggregation_strategy: 'incremental',
	});
	const progress = async () => call(srv, 'get_task_progress', { task_id: id });
	// Three answers in; the first draft (from the first answer) waits at
	// its gate, and the two answers after it started no other draft.
	let p;
	await waitFor(async () => {
		p = await progress();
		const s = await mock.stats();
		return p.progress.agents.filter((a) => a.status === 'ok').length === 3 &&
		    s.held_gates.d === 1 && s.held_gates.last === 1;
	}, undefined, 'three answers in and the first draft held');
	assert.equal((await mock.stats()).draft, 1, 'one draft at a time');
	assert.equal(p.progress.draft, null, 'no draft has finished yet');

	// The first draft ends; the answers it had not seen start the second.
	await mock.openGate('d');
	await waitFor(async () => (p = await progress()).progress.draft?.n === 2, undefined,
	    'the second draft in the progress');
	const draft = p.progress.draft;
	assert.equal(draft.answers, 3);
	assert.equal(draft.of, 4);
	assert.equal(draft.text, 'Draft synthesis over answers 1, 2, 3.');
	assert.ok(draft.made_ms >= 0, show(draft));
	assert.equal(p.status, 'RUNNING');
	assert.equal(p.progress.agents[3].status, 'running', 'agent 4 is still held');
	// The task's resource shows it too.
	const res = await srv.client.readResource({ uri: `heavy://tasks/${id}` });
	assert.deepEqual(JSON.parse(res.contents[0].text).progress.draft, draft);

	await mock.openGate('last');
	await waitFor(async () => (p = await progress()).status === 'COMPLETED', undefined,
	    'the task to complete');
	const sc = p.result;
	for (const a of sc.agents)
		checkOk(a);
	const d = checkDrafts(sc, 4);
	assert.equal(d.calls, 2, show(d));
	assert.deepEqual(d.list.map((x) => [x.answers, x.status]), [[1, 'ok'], [3, 'ok']]);
	assert.equal(d.synthesis_from, 2);
	assert.equal(d.interval, 0);
	assert.equal(sc.synthesized, true);
	assert.match(sc.answer, /^Synthesized answer over 4 responses\./);
	const prompt = await finalPrompt(mock);
	assert.match(prompt, /An early draft of this answer was written from the first 3 of these 4 responses/);
	assert.ok(prompt.includes('=== EARLY DRAFT (from 3 of 4 responses) ===\n' +
	    'Draft synthesis over answers 1, 2, 3.\n'), prompt);
	assert.equal((await mock.stats()).draft, 2);
	await srv.shutdown();
});

test('each draft is a progress notification, and the last one covers every answer in',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const { mock, srv } = await setup(t);
	let opened = false;
	const { result, sc, progress } = await srv.orchestrate({
		query: 'Notified [[a4:gate:last]]', num_agents: 4,
		aggregation_strategy: 'incremental', incremental_interval: 0,
	}, {
		onprogress: (p) => {
			if (!opened && /^draft \d+ from 3 of 4 answers$/.test(p.message ?? '')) {
				opened = true;
				mock.openGate('last');
			}
		},
	});
	assert.ok(opened, show(progress.map((p) => p.message)));
	checkShape(result, 4);
	const d = checkDrafts(sc, 4);
	const notes = progress.map((p) => p.message).filter((m) => /^draft /.test(m ?? ''));
	assert.deepEqual(notes, d.list.map((x) => `draft ${x.n} from ${x.answers} of 4 answers`));
	assert.equal(d.list.at(-1).answers, 3);
	assert.equal(d.synthesis_from, d.calls);
	assert.match(await finalPrompt(mock), /=== EARLY DRAFT \(from 3 of 4 responses\) ===/);
	await srv.shutdown();
});

test('a huge interval: exactly one draft, however many answers come after it',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const { mock, srv } = await setup(t);
	let midOpen = false, lastOpen = false;
	const done = new Set();
	const { sc, progress } = await srv.orchestrate({
		query: 'Patient [[a2:gate:mid]] [[a3:gate:mid]] [[a4:gate:last]]', num_agents: 4,
		aggregation_strategy: 'incremental', incremental_interval: 86400,
	}, {
		onprogress: (p) => {
			const m = p.message ?? '';
			// Agents 2 and 3 answer only once the first draft is made, and
			// agent 4 once they are in: two answers no draft has seen.
			if (!midOpen && m === 'draft 1 from 1 of 4 answers') {
				midOpen = true;
				mock.openGate('mid');
			}
			if (/^agent [23] done$/.test(m))
				done.add(m);
			if (!lastOpen && done.size === 2) {
				lastOpen = true;
				mock.openGate('last');
			}
		},
	});
	assert.ok(midOpen && lastOpen, show(progress.map((p) => p.message)));
	const d = checkDrafts(sc, 4);
	assert.equal(d.calls, 1, show(d));
	assert.equal(d.interval, 86400);
	assert.equal(d.synthesis_from, 1);
	assert.equal((await mock.stats()).draft, 1);
	assert.match(await finalPrompt(mock), /=== EARLY DRAFT \(from 1 of 4 responses\) ===/);
	await srv.shutdown();
});

test('a draft starts no sooner than the interval after the last one started',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const { mock, srv } = await setup(t);
	let lateOpen = false, lastOpen = false;
	const { sc, progress } = await srv.orchestrate({
		query: 'Spaced [[a3:gate:late]] [[a4:gate:last]]', num_agents: 4,
		aggregation_strategy: 'incremental', incremental_interval: 1,
	}, {
		onprogress: (p) => {
			const m = p.message ?? '';
			// Answer 2 came while draft 1 ran or within its interval:
			// only the interval's end can bring the draft from 2.
			if (!lateOpen && /^draft \d+ from 2 of 4 answers$/.test(m)) {
				lateOpen = true;
				mock.openGate('late');
			}
			if (!lastOpen && /^draft \d+ from 3 of 4 answers$/.test(m)) {
				lastOpen = true;
				mock.openGate('last');
			}
		},
	});
	assert.ok(lateOpen && lastOpen, show(progress.map((p) => p.message)));
	const d = checkDrafts(sc, 4);
	assert.deepEqual(d.list.map((x) => x.answers), [1, 2, 3]);
	// The server's clock: never a draft before its interval (a lower bound).
	for (let i = 1; i < d.list.length; i++)
		assert.ok(d.list[i].started_ms - d.list[i - 1].started_ms >= 1000, show(d));
	await srv.shutdown();
});

test('a draft still running when the agents are in is killed; the synthesis goes on without it',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const { mock, srv } = await setup(t);
	// Agent 3 answers once the draft is in its call, so the end of the
	// agents finds it running however loaded the machine is.
	const call = srv.orchestrate({
		query: 'Slow draft [[draft:hang]] [[a3:gate:last]]', num_agents: 3,
		aggregation_strategy: 'incremental', incremental_interval: 0,
	});
	await waitFor(async () => (await mock.stats()).hangs === 1, undefined,
	    'the draft to call the mock');
	await mock.openGate('last');
	const { result, sc } = await call;
	checkShape(result, 3);
	assert.equal(sc.drafts.calls, 1, show(sc.drafts));
	assert.equal(sc.drafts.list[0].status, 'killed');
	assert.equal(sc.drafts.synthesis_from, null);
	assert.equal(sc.drafts.first_draft_ms, null);
	assert.equal(sc.synthesized, true);
	assert.match(sc.answer, /^Synthesized answer over 3 responses\./);
	assert.doesNotMatch(await finalPrompt(mock), /EARLY DRAFT/);
	assert.equal((await mock.stats()).hangs, 1, 'the draft had called the mock');
	const seen = srv.seen().filter((p) => p.comm === 'heavyd-worker');
	let left = [];
	await waitFor(() => (left = jobsAlive(seen)).length === 0, undefined,
	    `the draft's worker to die (left: ${describe(left)})`);
	await srv.shutdown();
});

test("a draft's tokens count toward the task's budget: reaching it stops the task",
    { timeout: TEST_TIMEOUT }, async (t) => {
	const { mock, srv } = await setup(t);
	// The first answer's draft reports 100,000 tokens while agent 3 waits
	// at its gate (never opened): the budget, not the agent, ends the task.
	const { result, sc } = await srv.orchestrate({
		query: 'Costly draft [[draft:usage:100000]] [[a3:gate:never]]', num_agents: 3,
		aggregation_strategy: 'incremental', incremental_interval: 0, max_total_tokens: 50000,
	});
	assert.notEqual(result.isError, true, show(result));
	assert.match(sc.budget.stopped, /^token budget reached: \d+ tokens used of max_total_tokens 50000$/);
	assert.equal(sc.agents[2].status, 'failed', show(sc.agents[2]));
	assert.match(sc.agents[2].error, /^stopped: token budget reached/);
	assert.ok(sc.drafts.tokens >= 100000, show(sc.drafts));
	assert.ok(sc.usage.total_tokens >= sc.drafts.tokens, show(sc.usage));
	assert.equal(sc.synthesized, false);
	assert.equal((await mock.stats()).synthesis, 0, 'no final synthesis after the budget');
	await waitFor(() => srv.workers().length === 0, undefined,
	    `no worker after the stop (left: ${describe(srv.workers())})`);
	await srv.shutdown();
});

test('other strategies make no draft; a bad incremental_interval is refused',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const { mock, srv } = await setup(t, { env: { HEAVY_INCREMENTAL_INTERVAL: '0' } });
	for (const strategy of ['consensus', 'ranked']) {
		const { result, sc, progress } = await srv.orchestrate({
			query: `No drafts [[a2:latency:100]] ${strategy}`, num_agents: 3,
			aggregation_strategy: strategy,
		});
		checkShape(result, 3);
		assert.equal(sc.strategy, strategy);
		assert.equal(sc.drafts, undefined, show(sc));
		assert.ok(!progress.some((p) => /^draft /.test(p.message ?? '')),
		    show(progress.map((p) => p.message)));
		assert.equal(sc.usage.llm_calls, strategy === 'consensus' ? 5 : 8, show(sc.usage));
	}
	const s = await mock.stats();
	assert.equal(s.draft, 0);
	assert.doesNotMatch(s.synthesis_prompts.map((p) => p.text).join('\n'), /EARLY DRAFT/);
	for (const bad of [-1, 'soon', 86401]) {
		const { result } = await srv.orchestrate({ query: 'q', aggregation_strategy: 'incremental',
		    incremental_interval: bad });
		assert.equal(result.isError, true);
		assert.equal(result.content[0].text, "invalid argument 'incremental_interval': " +
		    'expected a number of seconds from 0 to 86400');
	}
	const { tools } = await srv.client.listTools();
	const props = tools.find((x) => x.name === 'heavy_orchestrate').inputSchema.properties;
	assert.ok(props.aggregation_strategy.enum.includes('incremental'));
	assert.equal(props.incremental_interval.type, 'number');
	await srv.shutdown();
});

const HAVE_SCRIPT = spawnSync('script', ['--version']).status === 0;
const sh = (x) => `'${x.replace(/'/g, "'\\''")}'`;

test('heavyd ask on a pseudo-terminal draws the latest draft under the agents',
    { timeout: TEST_TIMEOUT }, async (t) => {
	if (!HAVE_SCRIPT) {
		t.skip('util-linux script (bsdutils) is not installed: no pseudo-terminal to test with');
		return;
	}
	const mock = await startMock();
	t.after(() => mock.stop());
	const env = {
		PATH: process.env.PATH, TERM: 'xterm', XDG_CONFIG_HOME: tmpdir('incr-xdg'),
		HEAVY_STATE_DIR: STATE_DIR, OPENROUTER_API_KEY: apiKey(), HEAVY_WORKER: WORKER,
		HEAVY_BASE_URL: mock.baseUrl, HEAVY_INCREMENTAL_INTERVAL: '0', ...sanitizerEnv(),
	};
	const cmd = [HEAVYD, 'ask', '--num-agents', '3', '--strategy', 'incremental',
	    'Drawn [[a3:gate:last]]'].map(sh).join(' ');
	const proc = spawn('script', ['-qfec', cmd, '/dev/null'], { env, stdio: ['pipe', 'pipe', 'pipe'] });
	t.after(() => proc.kill('SIGKILL'));
	proc.stdin.end();
	let out = '';
	proc.stdout.setEncoding('utf8');
	proc.stdout.on('data', (d) => { out += d; });
	const exit = new Promise((r) => proc.once('exit', (code) => r(code)));
	const plain = () => out.replace(/\x1b\[[0-9;]*[A-Za-z]/g, '');
	// Agents 1 and 2 are in, agent 3 waits at its gate: the second draft
	// (from both answers) is drawn until the gate opens.
	// Once drawn, the next redraw goes up over 1 + 3 + 1 lines.
	await waitFor(() => /draft 2 +from 2 of 3 answers +\d+\.\ds Draft synthesis over answers 1, 2\./
	    .test(plain()) && /\x1b\[5A/.test(out), HANG, 'the draft line, redrawn');
	assert.match(plain(), /agent 3\s+running/);
	await mock.openGate('last');
	assert.equal(await exit, 0, out);
	assert.match(plain(), /Synthesized answer over 3 responses\./);
	if (IS_ASAN)
		assertNoSanitizerReport(out, 'heavyd ask');
});
