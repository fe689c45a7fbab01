// Runs the official MCP conformance suite's server scenarios against a
// running server, once per protocol revision the suite can test, and judges
// the outcome against an expectation file.  scripts/conformance is the
// front end (it installs the suite and picks this Node); run with --help.
//
// The suite itself selects what applies to a revision: `conformance list
// --server --spec-version R` names every scenario whose applicability window
// holds R (cumulative), and `conformance server --spec-version R` runs a
// scenario on R's wire (the initialize handshake through 2025-11-25, the
// stateless per-request _meta envelope from 2026-07-28 on).  Extension
// scenarios (tasks, skills) sit off that timeline; the suite runs them on
// the newest wire, so they run here under 2026-07-28.
//
// Each scenario runs in its own `conformance server --scenario` process
// (a hang or crash is that scenario's alone) with its checks.json kept
// under the output directory.  A scenario passes when none of its checks
// is a FAILURE; warnings are counted, not failed.  A failed check is
// excused only by an entry of the expectation file that names it (or its
// whole scenario), for that revision, with a reason; a scenario an entry
// names that ran and no longer fails is stale and fails the run, so the
// file stays true.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';

const here = path.dirname(fileURLToPath(import.meta.url));
const cli = path.join(here, 'node_modules/@modelcontextprotocol/conformance/dist/index.js');
const REVISIONS = ['2025-03-26', '2025-06-18', '2025-11-25', '2026-07-28'];
const EXTENSION_WIRE = '2026-07-28';
const usage = `usage: run.mjs --url URL [--expect FILE] [--out DIR] [--tap FILE]
	[--revision R]... [--scenario NAME]... [--timeout MS] [--list]
  --expect FILE    expectation file (default: none; every failure counts)
  --out DIR        where each scenario's checks.json goes (default: a
                   directory removed at the end)
  --tap FILE       also write the results as TAP
  --revision R     run only these revisions (${REVISIONS.join(', ')})
  --scenario NAME  run only these scenarios
  --timeout MS     the suite's per-scenario timeout (default 30000); a
                   scenario process still running 4x past it is killed
  --list           print what would run and exit`;

function parseArgs(argv) {
	const o = { revisions: [], scenarios: [], timeout: 30000 };
	for (let i = 0; i < argv.length; i++) {
		const a = argv[i], v = () => {
			if (i + 1 >= argv.length)
				die(`${a} needs a value\n${usage}`);
			return argv[++i];
		};
		switch (a) {
		case '--url': o.url = v(); break;
		case '--expect': o.expect = v(); break;
		case '--out': o.out = v(); break;
		case '--tap': o.tap = v(); break;
		case '--revision': o.revisions.push(v()); break;
		case '--scenario': o.scenarios.push(v()); break;
		case '--timeout': o.timeout = Number(v()); break;
		case '--list': o.list = true; break;
		case '--help': console.log(usage); process.exit(0);
		default: die(`unknown argument ${a}\n${usage}`);
		}
	}
	if (!o.url && !o.list)
		die(usage);
	for (const r of o.revisions)
		if (!REVISIONS.includes(r))
			die(`unknown revision ${r} (${REVISIONS.join(', ')})`);
	if (o.revisions.length === 0)
		o.revisions = REVISIONS;
	return o;
}

function die(msg) {
	console.error(msg);
	process.exit(2);
}

// Runs the suite's CLI; resolves with its exit code and output.  A process
// still alive after limitMs is killed (a hang guard, not a measurement).
function suite(args, limitMs = 120000) {
	return new Promise((resolve) => {
		const child = spawn(process.execPath, [cli, ...args],
		    { stdio: ['ignore', 'pipe', 'pipe'] });
		let out = '', killed = false;
		child.stdout.on('data', (d) => { out += d; });
		child.stderr.on('data', (d) => { out += d; });
		const timer = setTimeout(() => {
			killed = true;
			child.kill('SIGKILL');
		}, limitMs);
		child.on('close', (code) => {
			clearTimeout(timer);
			resolve({ code, out, killed });
		});
	});
}

// "  - name [tags]" lines of `conformance list --server`.
async function listScenarios(extraArgs) {
	const { code, out } = await suite(['list', '--server', ...extraArgs]);
	if (code !== 0)
		die(`conformance list failed:\n${out}`);
	const found = [];
	for (const m of out.matchAll(/^\s+- (\S+)(?: \[([^\]]*)\])?$/gm))
		found.push({ name: m[1], tags: (m[2] ?? '').split(',') });
	return found;
}

// [{revision, scenario}] in run order: each revision's own scenarios, then
// the extension scenarios on the extension wire.
async function plan(o) {
	const runs = [];
	const want = (s) => o.scenarios.length === 0 || o.scenarios.includes(s);
	for (const revision of o.revisions) {
		const list = await listScenarios(['--spec-version', revision]);
		for (const s of list)
			if (want(s.name))
				runs.push({ revision, scenario: s.name, extension: false });
	}
	if (o.revisions.includes(EXTENSION_WIRE)) {
		const all = await listScenarios([]);
		for (const s of all)
			if (s.tags.includes('extension') && want(s.name))
				runs.push({ revision: EXTENSION_WIRE, scenario: s.name,
				    extension: true });
	}
	for (const s of o.scenarios)
		if (!runs.some((r) => r.scenario === s))
			die(`scenario ${s} is not in the suite for ${o.revisions.join(', ')}`);
	return runs;
}

// The checks of one scenario on one revision, or one synthetic FAILURE
// saying why there are none.
async function runOne(o, outDir, run) {
	const dir = path.join(outDir, run.revision, run.scenario);
	fs.rmSync(dir, { recursive: true, force: true });
	fs.mkdirSync(dir, { recursive: true });
	// Extensions: the suite infers their wire; --spec-version would skip them.
	const args = ['server', '--url', o.url, '--scenario', run.scenario,
	    '--timeout', String(o.timeout), '-o', dir,
	    ...(run.extension ? [] : ['--spec-version', run.revision])];
	const t0 = Date.now();
	const { code, out, killed } = await suite(args, 4 * o.timeout + 30000);
	const ms = Date.now() - t0;
	fs.writeFileSync(path.join(dir, 'output.txt'), out);
	const sub = fs.readdirSync(dir).find((d) => d.startsWith('server-'));
	let checks = null;
	if (sub !== undefined) {
		try {
			checks = JSON.parse(fs.readFileSync(
			    path.join(dir, sub, 'checks.json'), 'utf8'));
		} catch { /* judged below */ }
	}
	if (checks === null) {
		const why = killed ? `killed after ${ms} ms (hung)` :
		    `no checks.json (exit ${code}): ${out.trim().split('\n').slice(-3).join(' | ')}`;
		checks = [{ id: 'runner', status: 'FAILURE', errorMessage: why }];
	}
	return { ...run, checks, ms };
}

// The expectation file: [{scenario, revisions?, checks?, reason}].
function loadExpectations(file) {
	if (!file)
		return [];
	const doc = YAML.parse(fs.readFileSync(file, 'utf8')) ?? {};
	const list = doc.expected ?? [];
	if (!Array.isArray(list))
		die(`${file}: 'expected' must be a list`);
	return list.map((e, i) => {
		const names = [e?.scenario].flat();
		if (names.length === 0 || names.some((n) => typeof n !== 'string') ||
		    typeof e?.reason !== 'string' || e.reason.trim() === '')
			die(`${file}: entry ${i + 1} needs a scenario (a name, a list, or '*') and a reason`);
		if (names.includes('*') && !e.revisions)
			die(`${file}: entry ${i + 1}: scenario '*' needs revisions`);
		for (const r of e.revisions ?? [])
			if (!REVISIONS.includes(String(r)))
				die(`${file}: entry ${i + 1}: unknown revision ${r}`);
		return { scenarios: names, reason: e.reason.trim(),
		    revisions: e.revisions?.map(String) ?? null,
		    checks: e.checks ?? null, ran: new Set(), used: new Set() };
	});
}

// Does entry e cover this scenario on this revision?
function covers(e, revision, scenario) {
	return (e.scenarios.includes('*') || e.scenarios.includes(scenario)) &&
	    (e.revisions === null || e.revisions.includes(revision));
}

function excuse(expectations, revision, scenario, checkId) {
	return expectations.find((e) => covers(e, revision, scenario) &&
	    (e.checks === null || e.checks.includes(checkId)));
}

// One verdict per scenario run: pass, expected (every failure excused),
// fail; plus the failures that are not excused.
function judge(result, expectations) {
	const failed = result.checks.filter((c) => c.status === 'FAILURE');
	const warnings = result.checks.filter((c) => c.status === 'WARNING');
	const unexcused = [], reasons = new Set();
	for (const e of expectations)
		if (covers(e, result.revision, result.scenario))
			e.ran.add(result.scenario);
	for (const c of failed) {
		const e = excuse(expectations, result.revision, result.scenario, c.id);
		if (e) {
			e.used.add(result.scenario);
			reasons.add(e.reason);
		} else
			unexcused.push(c);
	}
	const verdict = unexcused.length > 0 ? 'fail' :
	    failed.length > 0 ? 'expected' : 'pass';
	return { verdict, failed, warnings, unexcused, reasons: [...reasons] };
}

function oneLine(s) {
	return String(s ?? '').replace(/\s+/g, ' ').slice(0, 300);
}

async function main() {
	const o = parseArgs(process.argv.slice(2));
	const runs = await plan(o);
	if (o.list) {
		for (const r of runs)
			console.log(`${r.revision}  ${r.scenario}`);
		return 0;
	}
	const expectations = loadExpectations(o.expect);
	const tmp = o.out ? null : fs.mkdtempSync(path.join(
	    process.env.TMPDIR ?? '/tmp', 'heavyd-conformance-'));
	const outDir = o.out ?? tmp;
	const tap = [`TAP version 13`, `1..${runs.length}`];
	let pass = 0, fail = 0, skipped = 0, n = 0;
	console.log(`conformance: ${runs.length} scenario runs against ${o.url}` +
	    (o.expect ? ` (expectations: ${o.expect})` : ''));
	for (const run of runs) {
		const res = await runOne(o, outDir, run);
		const j = judge(res, expectations);
		const name = `${run.revision} ${run.scenario}`;
		const counts = `${res.checks.length} checks, ${j.warnings.length} warnings, ${res.ms} ms`;
		n++;
		if (j.verdict === 'pass') {
			pass++;
			console.log(`PASS      ${name}  (${counts})`);
			tap.push(`ok ${n} - ${name}`);
		} else if (j.verdict === 'expected') {
			skipped++;
			const why = j.reasons.join('; ');
			console.log(`EXPECTED  ${name}  (${j.failed.length} failed as expected: ${oneLine(why)})`);
			tap.push(`ok ${n} - ${name} # SKIP expected not to apply: ${oneLine(why)}`);
		} else {
			fail++;
			console.log(`FAIL      ${name}  (${counts})`);
			tap.push(`not ok ${n} - ${name}`, '  ---');
			for (const c of j.unexcused) {
				console.log(`            ${c.id}: ${oneLine(c.errorMessage ?? c.description)}`);
				tap.push(`  # ${c.id}: ${oneLine(c.errorMessage ?? c.description)}`);
			}
			tap.push('  ...');
		}
	}
	// A scenario an entry names that ran and excused nothing is stale
	// (for '*', the entry as a whole).
	for (const e of expectations) {
		const stale = e.scenarios.includes('*') ?
		    (e.ran.size > 0 && e.used.size === 0 ? ['*'] : []) :
		    [...e.ran].filter((x) => !e.used.has(x));
		for (const x of stale) {
			fail++;
			n++;
			const name = `expectation ${x}` +
			    (e.checks ? `:${e.checks.join(',')}` : '') +
			    (e.revisions ? ` [${e.revisions.join(',')}]` : '');
			console.log(`STALE     ${name}: nothing failed that it excuses; remove it`);
			tap.push(`not ok ${n} - ${name} is stale`);
		}
	}
	tap[1] = `1..${n}`;
	tap.push(`# tests ${n}`, `# pass ${pass}`, `# fail ${fail}`,
	    `# skipped ${skipped}`);
	if (o.tap) {
		fs.mkdirSync(path.dirname(o.tap), { recursive: true });
		fs.writeFileSync(o.tap, tap.join('\n') + '\n');
	}
	if (tmp)
		fs.rmSync(tmp, { recursive: true, force: true });
	console.log(`conformance: ${pass} passed, ${fail} failed, ${skipped} skipped`);
	return fail > 0 ? 1 : 0;
}

process.exitCode = await main();
