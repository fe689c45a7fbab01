// Assertions shared by the orchestration tests.
import assert from 'node:assert/strict';

const show = (x) => JSON.stringify(x, null, 1);

/* Strictly increasing progress; every total present equals `total`. */
export function checkProgress(progress, total) {
	assert.ok(progress.length > 0, 'no progress notifications');
	let last = -Infinity;
	for (const p of progress) {
		assert.equal(typeof p.progress, 'number', show(p));
		assert.ok(p.progress > last, `progress not strictly increasing: ${show(progress)}`);
		last = p.progress;
		if (p.total !== undefined) {
			assert.equal(p.total, total, `progress total: ${show(p)}`);
			assert.ok(p.progress <= p.total, `progress beyond total: ${show(p)}`);
		}
	}
}

/* Index of the first notification whose message matches re; asserts one exists. */
export function progressIndex(progress, re) {
	const i = progress.findIndex((p) => re.test(p.message ?? ''));
	assert.ok(i >= 0, `no progress message matching ${re}: ${show(progress.map((p) => p.message))}`);
	const p = progress[i];
	assert.equal(typeof p.total, 'number', `step notification without total: ${show(p)}`);
	return i;
}

/* The answer text and structuredContent agree; the shape is as documented. */
export function checkShape(result, numAgents) {
	const sc = result.structuredContent;
	assert.ok(sc, `no structuredContent: ${show(result)}`);
	assert.equal(result.content?.[0]?.type, 'text');
	assert.equal(result.content[0].text, sc.answer, 'content[0].text differs from answer');
	assert.equal(typeof sc.answer, 'string');
	assert.equal(typeof sc.synthesized, 'boolean');
	assert.equal(typeof sc.planner_fallback, 'boolean');
	for (const k of ['planner_error', 'synthesis_error'])
		assert.ok(sc[k] === null || typeof sc[k] === 'string', `${k}: ${show(sc[k])}`);
	assert.ok(Array.isArray(sc.agents), 'agents is not an array');
	assert.equal(sc.agents.length, numAgents, `agents: ${show(sc.agents)}`);
	sc.agents.forEach((a, i) => {
		assert.equal(a.index, i + 1, `agent order: ${show(sc.agents)}`);
		assert.equal(typeof a.question, 'string');
		assert.ok(['ok', 'failed', 'timed_out', 'killed', 'cancelled', 'cut_for_latency'].includes(a.status),
		    `agent status: ${show(a)}`);
		assert.ok(Number.isInteger(a.elapsed_ms) && a.elapsed_ms >= 0, show(a));
		assert.ok(a.error === null || typeof a.error === 'string', show(a));
		assert.ok(a.signal === null || typeof a.signal === 'string', show(a));
	});
	const u = sc.usage;
	for (const k of ['prompt_tokens', 'completion_tokens', 'total_tokens', 'llm_calls', 'retries',
	    'hedged_calls', 'hedges_won'])
		assert.ok(Number.isInteger(u?.[k]) && u[k] >= 0, `usage.${k}: ${show(u)}`);
	assert.ok(Number.isInteger(sc.elapsed_ms) && sc.elapsed_ms >= 0, 'elapsed_ms');
	return sc;
}

export function checkOk(a) {
	assert.equal(a.status, 'ok', `agent ${a.index}: ${show(a)}`);
	assert.equal(a.error, null, `agent ${a.index}: ${show(a)}`);
	assert.equal(a.signal, null, `agent ${a.index}: ${show(a)}`);
	assert.ok(a.question.length > 0, `agent ${a.index} has no question`);
}
