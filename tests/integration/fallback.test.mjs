// fallback_models: an LLM call whose model fails for good (a 404 "no
// endpoints", a 402, a 400 "does not support tools", a 429 still failing
// after the retries) moves to the next model; each agent's result names the
// model that answered and every fallback with its reason.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

import { HEAVYD, STATE_DIR, setup, tmpdir, TEST_TIMEOUT } from './lib.mjs';

const MAIN = 'main/model';
const FB = ['second/model', 'third/model'];

/* One agent, its calls to MAIN failing as `marker` says. */
async function run(t, marker, args = {}, env = {}) {
	const { srv } = await setup(t, { env: { HEAVY_MAX_RETRIES: '1', HEAVY_RETRY_BASE_MS: '10',
	    HEAVY_RETRY_MAX_MS: '20', ...env } });
	const { result } = await srv.orchestrate({ query: `Fall back ${marker}`, num_agents: 1,
	    model: MAIN, ...args });
	await srv.shutdown();
	return result;
}

function agent(result) {
	assert.equal(result.isError, false, JSON.stringify(result));
	return result.structuredContent.agents[0];
}

for (const [name, marker, reason] of [
	['404 no endpoints', `[[agent:model-fail:404:${MAIN}]]`, 'model not found (404)'],
	['402', `[[agent:model-fail:402:${MAIN}]]`, 'payment required (402)'],
	['400 does not support tools', `[[agent:model-notools:${MAIN}]]`, 'model does not support tools (400)'],
	['429 with the retries exhausted', `[[agent:model-fail:429:${MAIN}]]`, 'retries exhausted'],
]) {
	test(`a ${name} moves the agent to the next model`, { timeout: TEST_TIMEOUT }, async (t) => {
		const r = await run(t, marker, { fallback_models: FB });
		const a = agent(r);
		assert.equal(a.status, 'ok');
		assert.equal(a.model, FB[0]);
		assert.deepEqual(a.fallbacks, [{ from: MAIN, to: FB[0], reason }]);
		const sc = r.structuredContent;
		assert.equal(sc.planner_model, MAIN, JSON.stringify(sc));
		assert.deepEqual(sc.planner_fallbacks, []);
		// One answer is not synthesized: no synthesis call, no model.
		assert.equal(sc.synthesized, false);
		assert.equal(sc.synthesis_model, null);
		assert.deepEqual(sc.synthesis_fallbacks, []);
		if (reason === 'retries exhausted')
			assert.equal(a.usage.retries, 1, 'HEAVY_MAX_RETRIES=1: one retry, then the fallback');
	});
}

test('a fallback that fails too moves on to the next; the answer names the third', { timeout: TEST_TIMEOUT },
    async (t) => {
	const a = agent(await run(t, `[[agent:model-fail:404:${MAIN}]] [[agent:model-fail:402:${FB[0]}]]`,
	    { fallback_models: FB }));
	assert.equal(a.model, FB[1]);
	assert.deepEqual(a.fallbacks, [
		{ from: MAIN, to: FB[0], reason: 'model not found (404)' },
		{ from: FB[0], to: FB[1], reason: 'payment required (402)' },
	]);
});

test('no fallback list: today\'s error', { timeout: TEST_TIMEOUT }, async (t) => {
	const r = await run(t, `[[agent:model-fail:404:${MAIN}]]`);
	assert.equal(r.isError, true, JSON.stringify(r));
	const a = r.structuredContent.agents[0];
	assert.equal(a.status, 'failed');
	assert.match(a.error, /HTTP 404: model not found: No endpoints found for main\/model/);
	assert.deepEqual(a.fallbacks, []);
	assert.equal(a.model, MAIN);
});

test('the list exhausted: the error names every model tried', { timeout: TEST_TIMEOUT }, async (t) => {
	const m = `[[agent:model-fail:404:${MAIN}]] [[agent:model-fail:402:${FB[0]}]]`;
	const r = await run(t, `${m} [[agent:model-notools:${FB[1]}]]`, { fallback_models: FB });
	const a = r.structuredContent.agents[0];
	assert.equal(a.status, 'failed', JSON.stringify(a));
	assert.match(a.error, /every model failed \(tried main\/model, second\/model, third\/model\); last: HTTP 400/);
	assert.equal(a.fallbacks.length, 2);
});

test('a plain 400 or a 401 does not fall back', { timeout: TEST_TIMEOUT }, async (t) => {
	const a = (await run(t, `[[agent:model-fail:401:${MAIN}]]`, { fallback_models: FB }))
	    .structuredContent.agents[0];
	assert.equal(a.status, 'failed');
	assert.match(a.error, /HTTP 401/);
	assert.deepEqual(a.fallbacks, []);
});

test('fallback_models is checked: an array of at most 8 model ids', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv } = await setup(t);
	for (const [bad, msg] of [['x', /fallback_models': expected an array/],
	    [Array(9).fill('m'), /at most 8/], [['ok', 'has space'], /fallback_models\[1\]'.*spaces/],
	    [[''], /fallback_models\[0\]'.*empty/], [[3], /fallback_models\[0\]': must be a string/]]) {
		const { result } = await srv.orchestrate({ query: 'q', fallback_models: bad });
		assert.equal(result.isError, true);
		assert.match(result.content[0].text, msg);
	}
	await srv.shutdown();
});

test('the rest of the agent\'s run stays on the model it fell back to', { timeout: TEST_TIMEOUT }, async (t) => {
	// Two turns (a tool call, then the answer): one failed call to MAIN,
	// then both turns on the fallback; MAIN is not asked again.
	const a = agent(await run(t, `[[agent:model-fail:404:${MAIN}]] ` +
	    '[[agent:tool:calculate:{"expression":"6*7"}]] [[agent:echo-model]]', { fallback_models: FB }));
	assert.equal(a.model, FB[0]);
	assert.equal(a.usage.llm_calls, 3, JSON.stringify(a.usage));
});

test('per-role lists from the config file: agents, planner and synthesis fall back on their own',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const dir = tmpdir('fbconf');
	t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
	const file = path.join(dir, 'config.yaml');
	fs.writeFileSync(file, `openrouter:\n  model: "${MAIN}"\norchestrator:\n` +
	    `  fallback_models: ["${FB[0]}"]\n  planner_fallback_models: ["plan/fb"]\n` +
	    '  synthesis_fallback_models: ["synth/fb"]\n');
	const shown = spawnSync(HEAVYD, ['--check-config'], { encoding: 'utf8', env: { PATH: process.env.PATH,
	    HEAVY_STATE_DIR: STATE_DIR, OPENROUTER_API_KEY: 'k', HEAVY_CONFIG: file } });
	assert.equal(shown.status, 0, shown.stderr);
	assert.match(shown.stdout, /^fallback_models: \["second\/model"\]/m);
	assert.match(shown.stdout, /^synthesis_fallback_models: \["synth\/fb"\]/m);
	const { srv } = await setup(t, { env: { HEAVY_CONFIG: file } });
	const { result } = await srv.orchestrate({ num_agents: 2, query: `Per role [[model-fail:404:${MAIN}]] ` +
	    '[[synth:echo-model]]' });
	await srv.shutdown();
	assert.equal(result.isError, false, JSON.stringify(result));
	const sc = result.structuredContent;
	assert.equal(sc.planner_fallback, false, 'the planner fell back to plan/fb and answered');
	assert.match(sc.answer, /\(model: synth\/fb\)/);
	for (const a of sc.agents)
		assert.equal(a.model, FB[0]);
	assert.equal(sc.planner_model, 'plan/fb');
	assert.deepEqual(sc.planner_fallbacks, [{ from: MAIN, to: 'plan/fb', reason: 'model not found (404)' }]);
	assert.equal(sc.synthesis_model, 'synth/fb');
	assert.deepEqual(sc.synthesis_fallbacks, [{ from: MAIN, to: 'synth/fb', reason: 'model not found (404)' }]);
});

test('a bad fallback_models in the config file is refused at startup, naming the key', { timeout: TEST_TIMEOUT },
    async (t) => {
	const dir = tmpdir('fbbad');
	t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
	const file = path.join(dir, 'config.yaml');
	fs.writeFileSync(file, 'orchestrator:\n  synthesis_fallback_models: ["a b"]\n');
	const r = spawnSync(HEAVYD, ['--check-config'], { encoding: 'utf8', env: { PATH: process.env.PATH,
	    HEAVY_STATE_DIR: STATE_DIR, OPENROUTER_API_KEY: 'k', HEAVY_CONFIG: file } });
	assert.notEqual(r.status, 0);
	assert.match(r.stderr, /orchestrator\.synthesis_fallback_models\[0\]: a model id has no spaces/);
});
