// heavyd-egress's own sandbox (worker/egress_sandbox.c): no_new_privs, its
// own uid under a root heavyd, no capabilities, Landlock with nothing
// writable and no TCP bind, and a seccomp allowlist with no exec and no
// processes.  It still does its job (an orchestration over a name the
// resolver looks up); what it must not do is refused, or kills it, and
// heavyd then says why and starts another.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import dns from 'node:dns/promises';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';

import { checkOk, checkShape } from './checks.mjs';
import {
	HEAVYD, STATE_DIR, describe, readStat, setup, startMock, startServer, tmpdir, waitFor,
} from './lib.mjs';
import { HANG, TEST_TIMEOUT } from './lib.mjs';

const ROOT = process.getuid() === 0;

/* What heavyd reports for egress, and whether this host has Landlock. */
const REPORT = execFileSync(HEAVYD, ['--check-config'], {
	env: { PATH: process.env.PATH, HEAVY_STATE_DIR: STATE_DIR, OPENROUTER_API_KEY: 'k' },
	encoding: 'utf8',
});
const EGRESS = JSON.parse(/^sandbox\.egress: (".*")$/m.exec(REPORT)?.[1] ?? 'null');
const LANDLOCK = /^sandbox\.filesystem: "?Landlock ABI/m.test(REPORT);

function egressOf(srv) {
	return srv.descendants().filter((p) => readStat(p.pid)?.comm === 'heavyd-egress');
}

function statusOf(pid) {
	return fs.readFileSync(`/proc/${pid}/status`, 'utf8');
}

/* Agent 1 asks egress to try each probe in turn; the answer has the results. */
async function probe(srv, ...probes) {
	const q = 'Probe ' + probes.map((p) =>
	    `[[a1:tool:test_egress:${JSON.stringify({ probe: p })}]]`).join(' ');
	const { result } = await srv.orchestrate({ query: q, num_agents: 1, timeout: 60 },
	    { timeout: HANG });
	return { result, sc: checkShape(result, 1) };
}

test('--check-config reports egress\'s sandbox', () => {
	assert.ok(EGRESS, REPORT);
	assert.match(EGRESS, ROOT ? /^uid 65533 gid 65533, no capabilities; / :
	    /^heavyd's uid \(heavyd is not root\), no capabilities; /);
	if (LANDLOCK)
		assert.match(EGRESS, /; Landlock ABI \d+: nothing writable, /);
	assert.match(EGRESS, /; seccomp allowlist: TCP connect and DNS, no exec, no processes/);
});

test('the egress uid must not be the workers\'', { skip: !ROOT && 'heavyd is not root here' }, () => {
	let err = '';
	try {
		execFileSync(HEAVYD, ['--check-config'], {
			env: { PATH: process.env.PATH, HEAVY_STATE_DIR: STATE_DIR, OPENROUTER_API_KEY: 'k',
			    HEAVY_EGRESS_UID: '65534' },
			encoding: 'utf8', stdio: 'pipe',
		});
	} catch (e) {
		err = e.stderr;
	}
	assert.match(err, /HEAVY_EGRESS_UID\) is the workers' uid 65534/);
});

/*
 * A front for the mock at this host's name, on the loopback address
 * /etc/hosts gives it (libcurl resolves "localhost" itself, without the
 * resolver): egress must look the name up with getaddrinfo, in libcurl's
 * resolver thread, through NSS.  Each request is passed on as it came.
 */
async function namedFront(t, mock) {
	const name = os.hostname();
	const { address } = await dns.lookup(name, { family: 4 });
	const seen = [];
	const server = http.createServer(async (req, res) => {
		const chunks = [];
		for await (const c of req)
			chunks.push(c);
		seen.push(req.url);
		const r = await fetch(new URL(req.url, mock.baseUrl), {
			method: req.method, body: req.method === 'GET' ? undefined : Buffer.concat(chunks),
			headers: { 'content-type': req.headers['content-type'] ?? 'application/json',
			    authorization: req.headers.authorization ?? '' },
		});
		res.writeHead(r.status, { 'content-type': r.headers.get('content-type') ?? 'application/json' });
		res.end(Buffer.from(await r.arrayBuffer()));
	});
	await new Promise((r) => server.listen(0, address, r));
	t.after(() => server.close());
	return { seen, baseUrl: `http://${name}:${server.address().port}/v1` };
}

/* Whether this host's name is a loopback address here (the dev machine's
 * and the VM guest's /etc/hosts say so). */
async function nameIsLoopback() {
	try {
		const { address } = await dns.lookup(os.hostname(), { family: 4 });
		return address.startsWith('127.') ? false :
		    `this host's name ${os.hostname()} is ${address}, not a loopback address`;
	} catch (e) {
		return `this host's name ${os.hostname()} does not resolve: ${e.message}`;
	}
}

/*
 * Confined as /proc shows it, under its own ids; and it still works: the
 * upstream is reached by a name egress resolves itself.
 */
test('heavyd-egress runs confined (no_new_privs, seccomp, its own uid, no capabilities) and still serves', {
	timeout: TEST_TIMEOUT, skip: await nameIsLoopback(),
}, async (t) => {
	const mock = await startMock('mock');
	let srv = null;
	t.after(async () => {
		await srv?.kill();
		await mock.stop();
	});
	const front = await namedFront(t, mock);
	srv = await startServer({ mock, env: { HEAVY_BASE_URL: front.baseUrl } });
	const [egress] = egressOf(srv);
	assert.ok(egress, describe(srv.descendants()));
	await waitFor(() => /^Seccomp:\s+2$/m.test(statusOf(egress.pid)), undefined,
	    'egress to install its filter');
	const status = statusOf(egress.pid);
	assert.match(status, /^NoNewPrivs:\s+1$/m);
	assert.match(status, /^Seccomp_filters:\s+1$/m);
	for (const set of ['CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb'])
		assert.match(status, new RegExp(`^${set}:\\s+0{16}$`, 'm'), `${set}:\n${status}`);
	const id = ROOT ? 65533 : process.getuid();
	assert.match(status, new RegExp(`^Uid:\\s+${id}\\s+${id}\\s+${id}\\s+${id}$`, 'm'), status);
	if (ROOT) {
		assert.match(status, /^Gid:\s+65533\s+65533\s+65533\s+65533$/m, status);
		assert.match(status, /^Groups:\s*$/m, status);
	}
	const { result } = await srv.orchestrate({ query: 'Through a name', num_agents: 2 });
	const sc = checkShape(result, 2);
	sc.agents.forEach(checkOk);
	assert.equal(sc.synthesized, true);
	assert.ok(front.seen.filter((u) => u === '/v1/chat/completions').length >= 4, front.seen.join(' '));
	assert.deepEqual(egressOf(srv).map((p) => p.pid), [egress.pid], 'egress survived');
	await srv.shutdown();
});

/*
 * A TLS server at https://localhost with a certificate made here, which
 * no CA vouches for: it counts the handshakes its client gave up.
 */
async function tlsServer(t) {
	const dir = tmpdir('tls');
	t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
	const [key, cert] = [path.join(dir, 'key.pem'), path.join(dir, 'cert.pem')];
	execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1',
	    '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost',
	    '-keyout', key, '-out', cert], { stdio: 'pipe' });
	const seen = { requests: 0, refused: [] };
	const server = https.createServer({ key: fs.readFileSync(key), cert: fs.readFileSync(cert) },
	    (req, res) => { seen.requests++; res.writeHead(500).end(); });
	server.on('tlsClientError', (e) => seen.refused.push(e.message));
	await new Promise((r) => server.listen(0, '127.0.0.1', r));
	t.after(() => server.close());
	return { seen, baseUrl: `https://localhost:${server.address().port}/v1` };
}

/*
 * TLS from inside the sandbox: OpenSSL starts, the CA bundle is read (a
 * bundle it could not read fails as "error setting certificate ..."), the
 * handshake runs, and the server's certificate, which no CA signed, is
 * refused by name; no request is sent, and egress lives on.  (libcurl
 * reads its built-in CA bundle, not SSL_CERT_FILE, so a test cannot make
 * it trust a certificate of its own.)
 */
test('egress speaks TLS from inside its sandbox: the CA bundle read, the certificate checked', { timeout: TEST_TIMEOUT }, async (t) => {
	const tls = await tlsServer(t);
	const { srv } = await setup(t, { env: { HEAVY_BASE_URL: tls.baseUrl, HEAVY_MAX_RETRIES: '0' } });
	const [egress] = egressOf(srv);
	await waitFor(() => /^Seccomp:\s+2$/m.test(statusOf(egress.pid)), undefined,
	    'egress to install its filter');
	const { result } = await srv.orchestrate({ query: 'Over TLS', num_agents: 1 });
	const text = JSON.stringify(result);
	assert.match(text, /SSL certificate problem: self-signed certificate/);
	assert.doesNotMatch(text, /error setting certificate|CA cert/);
	assert.ok(tls.seen.refused.length >= 1, 'no handshake reached the server');
	assert.equal(tls.seen.requests, 0);
	assert.deepEqual(egressOf(srv).map((p) => p.pid), [egress.pid], 'egress survived');
	await srv.shutdown();
});

/*
 * What egress must not do and is refused, with it surviving: a file
 * opened for writing (the folder is world-writable, so only the sandbox
 * stands in the way), a file outside its read-only paths read, a TCP port
 * bound, heavyd signalled.  A worker cannot signal egress either.
 */
test('egress is refused writes, reads outside its paths, bind and signals, and survives', { timeout: TEST_TIMEOUT }, async (t) => {
	const { srv } = await setup(t, { worker: 'test' });
	const [egress] = egressOf(srv);
	assert.ok(egress, describe(srv.descendants()));
	const dir = tmpdir('egress-probe');
	t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
	fs.chmodSync(dir, 0o777);
	const target = path.join(dir, 'written');
	const secret = path.join(dir, 'secret');
	fs.writeFileSync(secret, 'not for egress\n', { mode: 0o644 });
	const { sc } = await probe(srv, `write:${target}`, `read:${secret}`, 'bind',
	    `signal:${srv.pid}`);
	checkOk(sc.agents[0]);
	assert.ok(sc.answer.includes(`write:${target}: refused: EACCES`), sc.answer);
	assert.equal(fs.existsSync(target), false, 'egress created the file');
	assert.match(sc.answer, new RegExp(`read:${secret}: refused: (EACCES${LANDLOCK ? '' : '|ENOENT'})`));
	assert.ok(sc.answer.includes('bind: refused: EACCES'), sc.answer);
	assert.ok(sc.answer.includes(`signal:${srv.pid}: refused: EPERM`), sc.answer);
	const w = await srv.orchestrate({ query: `Kill egress [[a1:tool:test_signal:${JSON.stringify({ pid: egress.pid })}]]`,
	    num_agents: 1, timeout: 60 }, { timeout: HANG });
	assert.match(checkShape(w.result, 1).answer, /EPERM/);
	assert.deepEqual(egressOf(srv).map((p) => p.pid), [egress.pid], 'egress survived');
	await srv.shutdown();
});

/*
 * Without Landlock (HEAVY_SANDBOX_FS=mount, as under valgrind) egress
 * takes the workers' fallback, a mount namespace with a read-only root:
 * what is outside its read-only paths is not there at all.
 */
test('under the mount namespace fallback egress is confined too', {
	timeout: TEST_TIMEOUT, skip: !ROOT && 'a mount namespace needs CAP_SYS_ADMIN',
}, async (t) => {
	const { srv } = await setup(t, { worker: 'test', env: { HEAVY_SANDBOX_FS: 'mount' } });
	const [egress] = egressOf(srv);
	assert.ok(egress, describe(srv.descendants()));
	const dir = tmpdir('egress-probe');
	t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
	fs.chmodSync(dir, 0o777);
	const secret = path.join(dir, 'secret');
	fs.writeFileSync(secret, 'not for egress\n', { mode: 0o644 });
	const { sc } = await probe(srv, `write:${path.join(dir, 'written')}`, `read:${secret}`);
	checkOk(sc.agents[0]);
	assert.match(sc.answer, /write:\S+: refused: EACCES/);
	assert.ok(sc.answer.includes(`read:${secret}: refused: ENOENT`), sc.answer);
	assert.deepEqual(fs.readdirSync(dir), ['secret']);
	const status = statusOf(egress.pid);
	assert.match(status, /^Seccomp:\s+2$/m);
	assert.notEqual(fs.readlinkSync(`/proc/${egress.pid}/ns/mnt`), fs.readlinkSync('/proc/self/ns/mnt'),
	    'egress has a mount namespace of its own');
	await srv.shutdown();
});

/*
 * execve and fork are not in the allowlist: egress dies of SIGSYS at the
 * call; heavyd names the cause, starts another (confined too), and the
 * next task is served.
 */
for (const what of ['exec', 'fork']) {
	test(`egress trying ${what} is killed by SIGSYS and restarted by heavyd`, { timeout: TEST_TIMEOUT }, async (t) => {
		const { srv } = await setup(t, { worker: 'test' });
		const [first] = egressOf(srv);
		assert.ok(first, describe(srv.descendants()));
		const { sc } = await probe(srv, what);
		assert.match(JSON.stringify(sc), /heavyd-egress.*went away during the call/);
		assert.doesNotMatch(JSON.stringify(sc), new RegExp(`${what}: allowed`));
		await waitFor(() => /warning: heavyd-egress(\[\d+\])? was killed by SIGSYS: a forbidden system call \(its seccomp filter\)/.test(srv.stderr()),
		    undefined, 'heavyd to name the cause');
		let next;
		await waitFor(() => (next = egressOf(srv).find((p) => p.pid !== first.pid)) !== undefined,
		    undefined, 'a new heavyd-egress');
		await waitFor(() => /^Seccomp:\s+2$/m.test(statusOf(next.pid)), undefined,
		    'the new egress to be confined');
		assert.equal(srv.descendants().filter((p) => readStat(p.pid)?.comm === 'true').length, 0);
		const again = await srv.orchestrate({ query: 'After the restart', num_agents: 2 });
		checkShape(again.result, 2).agents.forEach(checkOk);
		await srv.shutdown();
	});
}
