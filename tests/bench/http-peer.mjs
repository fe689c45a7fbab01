// The benchmark peer: a Streamable HTTP MCP server on the official
// TypeScript SDK (the version tests/integration pins), doing at the protocol
// level what heavyd does for scripts/bench http, so the two can be measured
// under the same load in the same run.
//
//   node http-peer.mjs [--port N] [--port-file FILE]
//   node http-peer.mjs --stdio
//
// --stdio serves the same tool over the SDK's stdio transport instead, so
// that build/bench drives it as it drives heavyd (scripts/bench cost).
//
// 127.0.0.1 only, endpoint /mcp, the SDK's stateful mode: one SDK Server and
// StreamableHTTPServerTransport per session, answers as SSE (the SDK's
// default), a GET stream per session for server-initiated messages, DELETE
// ends a session, Host and Origin must name loopback (as heavyd's default).
// Plain node:http, no express: the SDK's transport at its leanest.
//
// Its one tool, heavy_orchestrate {query, num_agents}, does an orchestration's
// protocol-visible work against the same mock LLM heavyd uses
// (HEAVY_BASE_URL, e.g. build/mockllm): a planner call asking for a JSON
// array of num_agents sub-questions, one agent call per sub-question, all at
// once (with a tool offered, as heavyd's agents have), one synthesis call,
// and a notifications/progress after each step with heavyd's total
// (num_agents + 2).  It runs the calls in-process with fetch: no worker
// processes, no sandbox, no store, none of what heavyd spends on isolation
// and durability.
import fs from 'node:fs';
import http from 'node:http';
import { randomUUID } from 'node:crypto';

const sdk = new URL('../integration/node_modules/@modelcontextprotocol/sdk/dist/esm/',
    import.meta.url);
const { Server } = await import(new URL('server/index.js', sdk));
const { StreamableHTTPServerTransport } =
    await import(new URL('server/streamableHttp.js', sdk));
const { CallToolRequestSchema, ListToolsRequestSchema, McpError, ErrorCode,
    isInitializeRequest } = await import(new URL('types.js', sdk));

const BASE = (process.env.HEAVY_BASE_URL ?? 'http://127.0.0.1:8999/v1').replace(/\/$/, '');
const KEY = process.env.OPENROUTER_API_KEY ?? 'bench-key';
const MODEL = process.env.HEAVY_MODEL ?? 'mock/model';

const TOOL = {
	name: 'heavy_orchestrate',
	description: 'Plans sub-questions, answers them with parallel agents, synthesizes one answer',
	inputSchema: {
		type: 'object', required: ['query'],
		properties: {
			query: { type: 'string' },
			num_agents: { type: 'integer', minimum: 1, maximum: 16 },
			timeout: { type: 'integer' }
		}
	}
};

// One agent tool, offered as heavyd offers its agents theirs.
const AGENT_TOOLS = [{ type: 'function', function: { name: 'calculate',
	description: 'Evaluates an arithmetic expression',
	parameters: { type: 'object', required: ['expression'],
	    properties: { expression: { type: 'string' } } } } }];

async function chat(messages, tools) {
	const res = await fetch(`${BASE}/chat/completions`, {
		method: 'POST',
		headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${KEY}` },
		body: JSON.stringify({ model: MODEL, messages, ...(tools ? { tools } : {}) })
	});
	if (!res.ok)
		throw new Error(`LLM call failed: HTTP ${res.status}`);
	const body = await res.json();
	return body.choices?.[0]?.message?.content ?? '';
}

async function orchestrate(args, progress) {
	const n = Math.min(Math.max(Number(args.num_agents ?? 4) | 0, 1), 16);
	const query = String(args.query ?? '');
	const total = n + 2;
	let questions;
	const plan = await chat([
		{ role: 'system', content: `Write exactly ${n} sub-questions. Return a JSON array of strings.` },
		{ role: 'user', content: query }]);
	try {
		questions = JSON.parse(plan);
	} catch {
		questions = [];
	}
	while (questions.length < n)
		questions.push(`${query} (angle ${questions.length + 1})`);
	await progress(1, total, `planned ${n} sub-questions`);
	let done = 0;
	const answers = await Promise.all(questions.slice(0, n).map(async (q) => {
		const a = await chat([{ role: 'system', content: 'You are a research agent.' },
		    { role: 'user', content: String(q) }], AGENT_TOOLS);
		done++;
		await progress(1 + done, total, `agent ${done} of ${n} answered`);
		return a;
	}));
	const answer = await chat([
		{ role: 'system', content: 'Merge these answers into one.' },
		{ role: 'user', content: answers.map((a, i) => `Answer ${i + 1}: ${a}`).join('\n\n') }]);
	await progress(total, total, 'synthesized');
	return { content: [{ type: 'text', text: answer }], isError: false };
}

function newServer() {
	const server = new Server({ name: 'heavyd-bench-sdk-peer', version: '1.0.0' },
	    { capabilities: { tools: {} } });
	server.setRequestHandler(ListToolsRequestSchema, async () => ({ tools: [TOOL] }));
	server.setRequestHandler(CallToolRequestSchema, async (req, extra) => {
		if (req.params.name !== TOOL.name)
			throw new McpError(ErrorCode.InvalidParams, `Unknown tool: ${req.params.name}`);
		const token = req.params._meta?.progressToken;
		const progress = async (p, total, message) => {
			if (token !== undefined)
				await extra.sendNotification({ method: 'notifications/progress',
				    params: { progressToken: token, progress: p, total, message } });
		};
		try {
			return await orchestrate(req.params.arguments ?? {}, progress);
		} catch (e) {
			return { isError: true, content: [{ type: 'text', text: String(e.message) }] };
		}
	});
	return server;
}

const sessions = new Map();

function jsonError(res, status, code, message) {
	res.writeHead(status, { 'Content-Type': 'application/json' });
	res.end(JSON.stringify({ jsonrpc: '2.0', id: null, error: { code, message } }));
}

const LOOPBACK = new Set(['localhost', '127.0.0.1', '[::1]']);
function loopbackOnly(req) {
	const host = (req.headers.host ?? '').replace(/:\d+$/, '');
	if (!LOOPBACK.has(host))
		return false;
	const origin = req.headers.origin;
	if (origin === undefined)
		return true;
	try { return LOOPBACK.has(new URL(origin).hostname); } catch { return false; }
}

async function readBody(req) {
	const chunks = [];
	for await (const c of req)
		chunks.push(c);
	return Buffer.concat(chunks).toString('utf8');
}

async function handle(req, res) {
	if (!req.url.startsWith('/mcp'))
		return jsonError(res, 404, -32601, 'Not found');
	if (!loopbackOnly(req))
		return jsonError(res, 403, -32000, 'Forbidden');
	const sid = req.headers['mcp-session-id'];
	if (req.method === 'POST') {
		let body;
		try {
			body = JSON.parse(await readBody(req));
		} catch {
			return jsonError(res, 400, -32700, 'Parse error');
		}
		if (sid === undefined && isInitializeRequest(body)) {
			const transport = new StreamableHTTPServerTransport({
				sessionIdGenerator: () => randomUUID(),
				onsessioninitialized: (id) => sessions.set(id, transport)
			});
			transport.onclose = () => {
				if (transport.sessionId)
					sessions.delete(transport.sessionId);
			};
			await newServer().connect(transport);
			return transport.handleRequest(req, res, body);
		}
		if (sid === undefined)
			return jsonError(res, 400, -32000, 'Bad Request: no session id');
		if (!sessions.has(sid))
			return jsonError(res, 404, -32001, 'Session not found');
		return sessions.get(sid).handleRequest(req, res, body);
	}
	if (req.method === 'GET' || req.method === 'DELETE') {
		if (sid === undefined)
			return jsonError(res, 400, -32000, 'Bad Request: no session id');
		if (!sessions.has(sid))
			return jsonError(res, 404, -32001, 'Session not found');
		return sessions.get(sid).handleRequest(req, res);
	}
	res.writeHead(405, { Allow: 'GET, POST, DELETE' }).end();
}

async function mainStdio() {
	const { StdioServerTransport } = await import(new URL('server/stdio.js', sdk));
	await newServer().connect(new StdioServerTransport());
}

function main() {
	const argv = process.argv.slice(2);
	if (argv.includes('--stdio'))
		return mainStdio();
	const opt = (name, dflt) => {
		const i = argv.indexOf(name);
		return i >= 0 ? argv[i + 1] : dflt;
	};
	const server = http.createServer((req, res) => {
		handle(req, res).catch((e) => {
			if (!res.headersSent)
				jsonError(res, 500, -32603, String(e?.message ?? e));
		});
	});
	server.keepAliveTimeout = 60000;
	server.listen({ port: Number(opt('--port', '0')), host: '127.0.0.1', backlog: 4096 }, () => {
		const file = opt('--port-file');
		if (file !== undefined)
			fs.writeFileSync(file, `${server.address().port}\n`);
		console.error(`http-peer: http://127.0.0.1:${server.address().port}/mcp`);
	});
	const stop = () => {
		server.close(() => process.exit(0));
		server.closeAllConnections();
	};
	process.on('SIGTERM', stop);
	process.on('SIGINT', stop);
}

main();
