// auth.mode: oauth end to end, through the official client over HTTP: JWT
// access tokens that the test signs itself (RS256, ES256, EdDSA) with keys
// it generates, checked against a JWKS file it writes.  A good token works
// (tools, an orchestration against the mock); an expired one, one for
// another audience or from another issuer, a forged signature, alg none and
// an HMAC over the public key are 401 with the RFC 9728 challenge; a scope
// missing is 403.  The metadata documents; identities apart (by the whole
// of their sub); SIGHUP with a rotated JWKS; requests_per_minute from
// auth.defaults; failed attempts limited per address; no token in a log or
// passed on to the provider.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHmac, generateKeyPairSync, sign } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CallToolResultSchema, CreateTaskResultSchema } from '@modelcontextprotocol/sdk/types.js';

import {
	GRACE, HANG, HEAVYD, IS_ASAN, REPO, TEST_TIMEOUT, TOOL, WORKER, apiKey,
	assertNoSanitizerReport, rpcError, sanitizerEnv, startListener, startMock, tmpdir, waitFor,
} from './lib.mjs';

const ISSUER = 'https://as.example.test';
const AUDIENCE = 'https://heavyd.example.test/mcp';
const METADATA = 'https://heavyd.example.test/.well-known/oauth-protected-resource/mcp';
const SCOPE = 'mcp:tools';
const INIT = {
	jsonrpc: '2.0', id: 1, method: 'initialize',
	params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
};

const b64u = (x) => Buffer.from(typeof x === 'string' ? x : JSON.stringify(x)).toString('base64url');

/* A key pair of each kind, its public half as a JWK with kid and alg. */
function makeKey(alg, kid) {
	const kp = alg === 'RS256' ? generateKeyPairSync('rsa', { modulusLength: 2048 }) :
	    alg === 'ES256' ? generateKeyPairSync('ec', { namedCurve: 'P-256' }) :
	    generateKeyPairSync('ed25519');
	return { alg, kid, priv: kp.privateKey, pub: kp.publicKey,
	    jwk: { ...kp.publicKey.export({ format: 'jwk' }), kid, alg, use: 'sig' } };
}

function writeJwks(file, keys) {
	fs.writeFileSync(file, JSON.stringify({ keys: keys.map((k) => k.jwk) }));
}

/* A compact JWS of claims, signed by key (its alg and kid unless header
 * says otherwise). */
function jwt(key, claims, header = {}) {
	const h = { alg: key.alg, typ: 'at+jwt', kid: key.kid, ...header };
	const input = `${b64u(h)}.${b64u(claims)}`;
	const data = Buffer.from(input);
	const sig = key.alg === 'RS256' ? sign('sha256', data, key.priv) :
	    key.alg === 'ES256' ? sign('sha256', data, { key: key.priv, dsaEncoding: 'ieee-p1363' }) :
	    sign(null, data, key.priv);
	return `${input}.${sig.toString('base64url')}`;
}

/* The claims of a good token for sub, changed by more. */
function claims(sub, more = {}) {
	const now = Math.floor(Date.now() / 1000);
	return { iss: ISSUER, aud: AUDIENCE, sub, client_id: 'oauth-test', iat: now, exp: now + 600,
	    scope: `openid ${SCOPE}`, ...more };
}

/* A config file for oauth mode; extra is more YAML under auth:. */
function writeConfig(dir, jwks, extra = '') {
	const file = path.join(dir, 'heavyd.yaml');
	fs.writeFileSync(file, `auth:\n  mode: oauth\n  issuer: ${ISSUER}\n  audience: ${AUDIENCE}\n` +
	    `  jwks_file: ${jwks}\n  scopes:\n    - ${SCOPE}\n${extra}`);
	return file;
}

/* heavyd --listen with the config file; stop() asserts a clean exit. */
async function startOAuth(t, config, env = {}) {
	const mock = await startMock();
	const state = tmpdir('oauth-state');
	const srv = await startListener(t, ['--listen', '127.0.0.1:0'], {
		OPENROUTER_API_KEY: apiKey(), HEAVY_HEARTBEAT: '1', HEAVY_STATE_DIR: state,
		HEAVY_WORKER: WORKER, HEAVY_BASE_URL: mock.baseUrl, HEAVY_CONFIG: config, ...env,
	}, async () => {
		await mock.stop();
		fs.rmSync(state, { recursive: true, force: true });
	});
	return {
		...srv, mock,
		/* Every byte of the state directory (the task store, workspaces). */
		stateText() {
			let all = '';
			for (const name of fs.readdirSync(state, { recursive: true })) {
				const p = path.join(state, name);
				if (fs.statSync(p).isFile())
					all += fs.readFileSync(p, 'latin1');
			}
			return all;
		},
	};
}

/* A fresh directory with keys of the three kinds, their JWKS file, a config. */
function makeSetup(t, extra = '') {
	const dir = tmpdir('oauth');
	t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
	const keys = { rs: makeKey('RS256', 'rs-1'), es: makeKey('ES256', 'es-1'), ed: makeKey('EdDSA', 'ed-1') };
	const jwks = path.join(dir, 'jwks.json');
	writeJwks(jwks, Object.values(keys));
	return { dir, keys, jwks, config: writeConfig(dir, jwks, extra) };
}

/* The official client, its token in a static header. */
async function connect(srv, token, name = 'oauth-test') {
	const client = new Client({ name, version: '1.0.0' }, { capabilities: {} });
	const transport = new StreamableHTTPClientTransport(new URL(srv.url),
	    { requestInit: { headers: { Authorization: `Bearer ${token}` } } });
	await client.connect(transport, { timeout: HANG });
	return { client, transport };
}

function post(srv, body, token, signal) {
	return fetch(srv.url, {
		method: 'POST', signal,
		headers: { 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream',
		    ...(token === undefined ? {} : { Authorization: `Bearer ${token}` }) },
		body: JSON.stringify(body),
	});
}

/* A refusal: its status, the challenge (or none), a JSON-RPC error body. */
async function assertRefused(res, status, challenge, what) {
	assert.equal(res.status, status, what);
	assert.equal(res.headers.get('www-authenticate'), challenge, what);
	const body = await res.json();
	assert.equal(body.jsonrpc, '2.0', what);
	assert.match(body.error.message, status === 403 ? /^Forbidden/ : /^Unauthorized/, what);
	return body.error.message;
}

const INVALID = `Bearer error="invalid_token", resource_metadata="${METADATA}", scope="${SCOPE}"`;

test('good RS256, ES256 and EdDSA tokens work; expired, wrong audience or issuer, forged, alg none: 401; a scope missing: 403',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const { keys } = makeSetup(t);	// another server's keys: none of these
	const s = makeSetup(t, '  fail_max: 1000\n');
	const srv = await startOAuth(t, s.config);
	const good = {};
	for (const [n, k] of Object.entries(s.keys))
		good[n] = jwt(k, claims('alice'));

	// No token: the challenge names the metadata and the scope, no error.
	await assertRefused(await post(srv, INIT), 401,
	    `Bearer resource_metadata="${METADATA}", scope="${SCOPE}"`, 'no token');
	await assertRefused(await fetch(srv.url, { headers: { Accept: 'text/event-stream' } }), 401,
	    `Bearer resource_metadata="${METADATA}", scope="${SCOPE}"`, 'a GET without a token');

	const now = Math.floor(Date.now() / 1000);
	const rs = s.keys.rs;
	const bad = {
		expired: jwt(rs, claims('alice', { exp: now - 3600, iat: now - 7200 })),
		'wrong audience': jwt(rs, claims('alice', { aud: 'https://other.example.test/mcp' })),
		'wrong issuer': jwt(rs, claims('alice', { iss: 'https://evil.example.test' })),
		'a signature by another key of the same kid': jwt({ ...keys.rs, kid: 'rs-1' }, claims('alice')),
		'a claim changed after signing': (() => {
			const [h, , sig] = good.rs.split('.');
			return `${h}.${b64u(claims('mallory'))}.${sig}`;
		})(),
		'alg none, no signature': `${b64u({ alg: 'none', typ: 'JWT' })}.${b64u(claims('alice'))}.`,
		'alg none, a signature': `${b64u({ alg: 'none', typ: 'JWT' })}.${b64u(claims('alice'))}.AAAA`,
		'HS256 over the public key': (() => {
			const input = `${b64u({ alg: 'HS256', typ: 'JWT', kid: 'rs-1' })}.${b64u(claims('alice'))}`;
			const secret = rs.pub.export({ format: 'pem', type: 'spki' });
			return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
		})(),
		'an unknown kid': jwt({ ...keys.es, kid: 'es-9' }, claims('alice')),
		'not a JWT': 'hvd_' + '0'.repeat(64),
	};
	for (const [what, tok] of Object.entries(bad))
		await assertRefused(await post(srv, INIT, tok), 401, INVALID, what);
	await assert.rejects(connect(srv, bad.expired), /401|Unauthorized/i, 'the SDK with an expired token');

	// Valid, but without the scope heavyd asks for: 403.
	const noScope = jwt(s.keys.es, claims('alice', { scope: 'openid' }));
	const msg = await assertRefused(await post(srv, INIT, noScope), 403,
	    `Bearer error="insufficient_scope", resource_metadata="${METADATA}", scope="${SCOPE}"`,
	    'a scope missing');
	assert.match(msg, /insufficient scope/);
	// Some issuers send scp, a list.
	const scp = jwt(s.keys.ed, claims('alice', { scope: undefined, scp: ['x', SCOPE] }));

	for (const [n, tok] of [...Object.entries(good), ['scp', scp]]) {
		const c = await connect(srv, tok, n);
		const tools = await c.client.listTools();
		assert.ok(tools.tools.some((x) => x.name === TOOL), n);
		await c.client.close();
	}

	// An orchestration; the provider gets heavyd's key, never the token
	// (the mock echoes the key it was given: masked, and no JWT).
	const a = await connect(srv, good.rs);
	const r = await a.client.callTool({ name: TOOL, arguments: { query: 'Who am I?', num_agents: 1 } },
	    CallToolResultSchema, { timeout: HANG });
	assert.notEqual(r.isError, true, JSON.stringify(r));
	const echo = await a.client.callTool({ name: TOOL,
	    arguments: { query: 'Who am I [[planner:echokey]]', num_agents: 1 } },
	    CallToolResultSchema, { timeout: HANG });
	const text = JSON.stringify(echo);
	assert.match(text, /Incorrect API key provided: \[redacted\]/);
	assert.ok(!text.includes(good.rs.split('.')[2]), 'the token reached the provider');
	await a.client.close();
	assert.match(srv.stderr(), /audit: task end: identity=id:alice /);

	await srv.stop();
	const log = srv.stderr(), stored = srv.stateText();
	assert.match(stored, /Who am I\?/, 'the task store is where it is looked for');
	for (const tok of [...Object.values(good), ...Object.values(bad), noScope, scp]) {
		const sig = tok.split('.').at(-1);
		assert.ok(!log.includes(tok) && (sig.length < 40 || !log.includes(sig)), 'a token is in the log');
		assert.ok(!stored.includes(tok) && (sig.length < 40 || !stored.includes(sig)),
		    'a token is in the task store');
	}
	assert.match(log, /auth: Unauthorized: expired: exp has passed from 127\.0\.0\.1/);
});

test('the RFC 9728 metadata: at the well-known path and under the MCP path, without a token, GET only',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const s = makeSetup(t);
	const srv = await startOAuth(t, s.config);
	const want = { resource: AUDIENCE, authorization_servers: [ISSUER], scopes_supported: [SCOPE],
	    bearer_methods_supported: ['header'] };
	for (const p of ['/.well-known/oauth-protected-resource', '/.well-known/oauth-protected-resource/mcp']) {
		const res = await fetch(`${srv.base}${p}`);
		assert.equal(res.status, 200, p);
		assert.equal(res.headers.get('content-type'), 'application/json', p);
		assert.deepEqual(await res.json(), want, p);
		const put = await fetch(`${srv.base}${p}`, { method: 'POST', body: '{}' });
		assert.equal(put.status, 405, p);
		assert.equal(put.headers.get('allow'), 'GET', p);
	}
	// The challenge's resource_metadata is the path-suffixed one.
	const res = await post(srv, INIT);
	assert.equal(new URL(/resource_metadata="([^"]+)"/.exec(res.headers.get('www-authenticate'))[1]).pathname,
	    '/.well-known/oauth-protected-resource/mcp');
	assert.equal((await fetch(`${srv.base}/.well-known/oauth-protected-resource/other`)).status, 404);
	await srv.stop();
});

test('identities apart: A cannot see B\'s task, even when their subs share a long prefix',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const s = makeSetup(t);
	const srv = await startOAuth(t, s.config);
	const long = 'user-' + 'x'.repeat(180);	// longer than a tokens file's names
	const a = await connect(srv, jwt(s.keys.rs, claims(`${long}-a`)), 'a');
	const b = await connect(srv, jwt(s.keys.ed, claims(`${long}-b`)), 'b');
	const res = await a.client.request({ method: 'tools/call',
	    params: { name: TOOL, arguments: { query: 'Mine [[agent:latency:300]]', num_agents: 1 } } },
	    CreateTaskResultSchema, { task: { ttl: 60000 }, timeout: HANG });
	const id = res.task.taskId;
	assert.equal((await a.client.experimental.tasks.getTask(id)).taskId, id);
	const e = await rpcError(b.client.experimental.tasks.getTask(id));
	assert.match(e.message, /Task not found/);
	assert.ok(!(await b.client.experimental.tasks.listTasks()).tasks.some((x) => x.taskId === id));
	await waitFor(async () => (await a.client.experimental.tasks.getTask(id)).status === 'completed',
	    HANG, 'A\'s task to end');
	await rpcError(b.client.experimental.tasks.getTaskResult(id));
	assert.match(srv.stderr(), new RegExp(`audit: task end: identity=id:${long}-a task=${id} `));
	await a.client.close();
	await b.client.close();
	await srv.stop();
});

test('SIGHUP re-reads the JWKS file: a rotated key is refused, the new one taken; a broken file keeps the keys',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const s = makeSetup(t);
	const srv = await startOAuth(t, s.config);
	const next = makeKey('ES256', 'es-2');
	const oldTok = jwt(s.keys.es, claims('alice'));
	const newTok = jwt(next, claims('alice'));
	const a = await connect(srv, oldTok);
	await assertRefused(await post(srv, INIT, newTok), 401, INVALID, 'not yet known');

	writeJwks(s.jwks, [next]);
	srv.proc.kill('SIGHUP');
	const loads = () => srv.stderr().match(/oauth: \d+ key\(s\) from auth\.jwks_file/g) ?? [];
	await waitFor(() => loads().length === 1, HANG, 'the reload');
	assert.equal(loads()[0], 'oauth: 1 key(s) from auth.jwks_file');
	await assert.rejects(a.client.ping(), /401|Unauthorized/i, 'the rotated key');
	await assertRefused(await post(srv, INIT, oldTok), 401, INVALID, 'the rotated key, raw');
	const b = await connect(srv, newTok);
	await b.client.ping();

	fs.writeFileSync(s.jwks, '{"keys": [');
	srv.proc.kill('SIGHUP');
	await waitFor(() => /oauth: reload: .*; the keys and settings in force stay/.test(srv.stderr()),
	    HANG, 'the failed reload');
	await b.client.ping();
	await b.client.close();
	await srv.stop();
});

test('auth.defaults holds an OAuth identity to its requests_per_minute; failed attempts are limited per address',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const s = makeSetup(t, '  defaults: requests_per_minute=4\n  fail_max: 3\n');
	const srv = await startOAuth(t, s.config);
	const alice = jwt(s.keys.rs, claims('alice'));
	const bob = jwt(s.keys.rs, claims('bob'));
	for (let i = 0; i < 4; i++)
		assert.equal((await post(srv, INIT, alice)).status, 200, `alice's request ${i + 1}`);
	const over = await post(srv, INIT, alice);
	assert.equal(over.status, 429);
	assert.ok(Number(over.headers.get('retry-after')) >= 1);
	assert.match((await over.json()).error.message, /requests_per_minute \(4\)/);
	assert.equal((await post(srv, INIT, bob)).status, 200, 'bob has his own window');

	const forged = jwt(makeKey('RS256', 'rs-1'), claims('alice'));
	for (let i = 0; i < 3; i++)
		await assertRefused(await post(srv, INIT, forged), 401, INVALID, `failure ${i + 1}`);
	const blocked = await post(srv, INIT, bob);
	assert.equal(blocked.status, 429, 'a good token from that address too');
	assert.ok(Number(blocked.headers.get('retry-after')) >= 1);
	assert.match(srv.stderr(), /further requests from it are refused \(auth\.fail_max\)/);
	assert.ok(!srv.stderr().includes(forged.split('.')[2]), 'the token is in the log');
	await srv.stop();
});

test('auth.limits_claim: the issuer states an identity\'s limits in its token, over auth.defaults; a bad claim is 401',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const s = makeSetup(t, '  limits_claim: heavyd_limits\n  defaults: max_num_agents=3\n');
	const srv = await startOAuth(t, s.config);
	const carol = await connect(srv, jwt(s.keys.es, claims('carol', { heavyd_limits: 'max_num_agents=1' })), 'carol');
	const dave = await connect(srv, jwt(s.keys.es, claims('dave')), 'dave');
	const call = (c, n) => c.client.callTool({ name: TOOL, arguments: { query: 'Limits', num_agents: n } },
	    CallToolResultSchema, { timeout: HANG });
	const refused = await call(carol, 3);
	assert.equal(refused.isError, true);
	assert.match(refused.content[0].text, /max_num_agents/);
	assert.notEqual((await call(carol, 1)).isError, true, 'within the claim\'s limit');
	assert.notEqual((await call(dave, 2)).isError, true, 'dave has auth.defaults (3)');
	const refused4 = await call(dave, 5);	// 4 is the default: fitted to 3
	assert.equal(refused4.isError, true);
	assert.match(refused4.content[0].text, /max_num_agents/);
	await assertRefused(await post(srv, INIT, jwt(s.keys.es, claims('erin', { heavyd_limits: 'cores=9' }))),
	    401, INVALID, 'a limits claim that does not parse');
	await carol.client.close();
	await dave.client.close();
	await srv.stop();
});

test('a JWKS file that does not load: heavyd does not start, --check-config says why',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const s = makeSetup(t);
	fs.writeFileSync(s.jwks, JSON.stringify({ keys: [{ kty: 'oct', k: 'c2VjcmV0', kid: 'h' }] }));
	const env = { PATH: process.env.PATH, OPENROUTER_API_KEY: apiKey(), HEAVY_CONFIG: s.config,
	    HEAVY_STATE_DIR: path.join(s.dir, 'state'), ...sanitizerEnv() };
	const check = spawnSync(HEAVYD, ['--check-config'], { encoding: 'utf8', cwd: REPO, env });
	assert.equal(check.status, 1, check.stderr);
	assert.match(check.stdout, /^auth\.mode: oauth$/m);
	assert.match(check.stderr, new RegExp(`${s.jwks}: .*no usable key`));
	const run = spawnSync(HEAVYD, ['--listen', '127.0.0.1:0'], { encoding: 'utf8', cwd: REPO, env,
	    timeout: HANG });
	assert.equal(run.status, 1, run.stderr);
	assert.match(run.stderr, /error: oauth: .*no usable key/);
	if (IS_ASAN)
		assertNoSanitizerReport(run.stderr, 'heavyd');
});

/* The authorization server's jwks_uri: what it serves, the GETs it had,
 * and a gate that holds its answers until opened. */
async function startJwks(t) {
	let body = JSON.stringify({ keys: [] }), gate = null, gets = 0;
	const server = http.createServer((req, res) => {
		gets++;
		const send = () => {
			res.writeHead(200, { 'Content-Type': 'application/json' });
			res.end(body);
		};
		if (gate)
			gate.then(send);
		else
			send();
	});
	await new Promise((r) => server.listen(0, '127.0.0.1', r));
	t.after(() => {
		server.closeAllConnections();
		server.close();
	});
	return {
		url: `http://127.0.0.1:${server.address().port}/jwks.json`,
		serve(keys) { body = JSON.stringify({ keys: keys.map((k) => k.jwk) }); },
		gets: () => gets,
		hold() {
			let open;
			gate = new Promise((r) => { open = r; });
			return () => { gate = null; open(); };
		},
	};
}

test('auth.jwks_url: a token of a key the issuer has just added is held while the keys are fetched, then served',
    { timeout: TEST_TIMEOUT }, async (t) => {
	const dir = tmpdir('oauth-url');
	t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
	const jwks = await startJwks(t);
	const k1 = makeKey('RS256', 'k1'), k2 = makeKey('ES256', 'k2'), k3 = makeKey('EdDSA', 'k3');
	jwks.serve([k1]);
	const config = path.join(dir, 'heavyd.yaml');
	fs.writeFileSync(config, `auth:\n  mode: oauth\n  issuer: ${ISSUER}\n  audience: ${AUDIENCE}\n` +
	    `  jwks_url: ${jwks.url}\n  jwks_min_refetch: 0\n  scopes: ${SCOPE}\n`);
	const srv = await startOAuth(t, config);
	assert.equal(jwks.gets(), 1, 'fetched once at the start');
	assert.equal((await post(srv, INIT, jwt(k1, claims('alice')))).status, 200);

	// The issuer rotates in k2; a token signed with it waits for the fetch.
	jwks.serve([k1, k2]);
	let open = jwks.hold();
	let answered = false;
	const held = post(srv, INIT, jwt(k2, claims('alice'))).then((r) => { answered = true; return r; });
	await waitFor(() => jwks.gets() === 2, HANG, 'the fetch for the unknown key');
	await new Promise((r) => setTimeout(r, GRACE));
	assert.equal(answered, false, 'answered before the keys came');
	open();
	const res = await held;
	assert.equal(res.status, 200, await res.clone().text());
	assert.ok(res.headers.get('mcp-session-id'));

	// A client that hangs up while it is held: nothing is left behind.
	open = jwks.hold();
	const ac = new AbortController();
	const gone = post(srv, INIT, jwt(k3, claims('alice')), ac.signal).catch((e) => e);
	await waitFor(() => jwks.gets() === 3, HANG, 'the fetch for another unknown key');
	ac.abort();
	assert.equal((await gone).name, 'AbortError');
	await waitFor(() => /http: a client hung up while its request waited/.test(srv.stderr()),
	    HANG, 'heavyd to see the hang-up');
	open();
	assert.equal((await post(srv, INIT, jwt(k2, claims('bob')))).status, 200, 'still serving');
	await srv.stop();
	assert.match(srv.stderr(), /oauth: 2 key\(s\) fetched/);
});
