// A Streamable HTTP MCP server on the official TypeScript SDK (the version
// pinned in tests/integration), serving the conformance suite's fixture
// tools, resources and prompts (FIXTURES.md).  It is the yardstick that
// scripts/conformance is validated against: what fails here fails on the
// SDK itself, and is listed with its reason in expected-sdk-server.yaml.
//
//   node sdk-server.mjs [--port N] [--port-file FILE]
//
// Listens on 127.0.0.1 (port 0: any free port), MCP endpoint /mcp, one SDK
// Server and transport per session (the SDK's stateful mode, with an event
// store for Last-Event-ID resumption and a retry interval in the priming
// event).  The SDK speaks protocol revisions up to 2025-11-25 only.
import fs from 'node:fs';
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import zlib from 'node:zlib';

const sdk = new URL('../integration/node_modules/@modelcontextprotocol/sdk/dist/esm/',
    import.meta.url);
const { Server } = await import(new URL('server/index.js', sdk));
const { StreamableHTTPServerTransport } =
    await import(new URL('server/streamableHttp.js', sdk));
const types = await import(new URL('types.js', sdk));
const {
	CallToolRequestSchema, ListToolsRequestSchema, ListResourcesRequestSchema,
	ListResourceTemplatesRequestSchema, ReadResourceRequestSchema,
	SubscribeRequestSchema, UnsubscribeRequestSchema, ListPromptsRequestSchema,
	GetPromptRequestSchema, CompleteRequestSchema, CreateMessageResultSchema,
	ElicitResultSchema, McpError, ErrorCode, isInitializeRequest
} = types;

// ---------------------------------------------------------------- media

function crc32(buf) {
	let c, crc = 0xffffffff;
	for (const b of buf) {
		c = (crc ^ b) & 0xff;
		for (let k = 0; k < 8; k++)
			c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
		crc = (crc >>> 8) ^ c;
	}
	return (crc ^ 0xffffffff) >>> 0;
}

function pngChunk(type, data) {
	const len = Buffer.alloc(4), crc = Buffer.alloc(4);
	const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
	len.writeUInt32BE(data.length);
	crc.writeUInt32BE(crc32(td));
	return Buffer.concat([len, td, crc]);
}

// A 1x1 red pixel, RGB.
function redPixelPng() {
	const ihdr = Buffer.alloc(13);
	ihdr.writeUInt32BE(1, 0);
	ihdr.writeUInt32BE(1, 4);
	ihdr.set([8, 2, 0, 0, 0], 8);
	const raw = Buffer.from([0, 255, 0, 0]);	/* filter byte, R G B */
	return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]),
	    pngChunk('IHDR', ihdr), pngChunk('IDAT', zlib.deflateSync(raw)),
	    pngChunk('IEND', Buffer.alloc(0))]).toString('base64');
}

// 10 ms of 8 kHz 8-bit mono silence.
function silenceWav() {
	const samples = 80, h = Buffer.alloc(44);
	h.write('RIFF', 0); h.writeUInt32LE(36 + samples, 4); h.write('WAVE', 8);
	h.write('fmt ', 12); h.writeUInt32LE(16, 16); h.writeUInt16LE(1, 20);
	h.writeUInt16LE(1, 22); h.writeUInt32LE(8000, 24);
	h.writeUInt32LE(8000, 28); h.writeUInt16LE(1, 32);
	h.writeUInt16LE(8, 34); h.write('data', 36);
	h.writeUInt32LE(samples, 40);
	return Buffer.concat([h, Buffer.alloc(samples, 128)]).toString('base64');
}

const PNG = redPixelPng();
const WAV = silenceWav();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------- tools

const noArgs = { type: 'object', properties: {} };
const tool = (name, description, inputSchema = noArgs) =>
    ({ name, description, inputSchema });

const TOOLS = [
	tool('test_simple_text', 'Returns one text item'),
	tool('test_image_content', 'Returns one PNG image item'),
	tool('test_audio_content', 'Returns one WAV audio item'),
	tool('test_embedded_resource', 'Returns one embedded text resource'),
	tool('test_multiple_content_types', 'Returns text, image and resource'),
	tool('test_tool_with_logging', 'Logs three info messages while it runs'),
	tool('test_tool_with_progress', 'Reports progress 0, 50, 100 of 100'),
	tool('test_error_handling', 'Always fails with isError'),
	tool('test_reconnection', 'Closes its SSE stream, then answers'),
	tool('test_sampling', 'Asks the client to sample', {
		type: 'object', required: ['prompt'],
		properties: { prompt: { type: 'string', description: 'The prompt' } }
	}),
	tool('test_elicitation', 'Asks the client for a username and email', {
		type: 'object', required: ['message'],
		properties: { message: { type: 'string', description: 'Shown to the user' } }
	}),
	tool('test_elicitation_sep1034_defaults', 'Elicits with defaults'),
	tool('test_elicitation_sep1330_enums', 'Elicits the five enum forms'),
	tool('json_schema_2020_12_tool', 'Tool with JSON Schema 2020-12 features', {
		$schema: 'https://json-schema.org/draft/2020-12/schema',
		type: 'object',
		$defs: {
			address: {
				$anchor: 'addressDef', type: 'object',
				properties: { street: { type: 'string' }, city: { type: 'string' } }
			}
		},
		properties: {
			name: { type: 'string' },
			address: { $ref: '#/$defs/address' },
			contactMethod: { type: 'string', enum: ['phone', 'email'] },
			phone: { type: 'string' },
			email: { type: 'string' }
		},
		allOf: [{ anyOf: [{ required: ['phone'] }, { required: ['email'] }] }],
		if: {
			properties: { contactMethod: { const: 'phone' } },
			required: ['contactMethod']
		},
		then: { required: ['phone'] },
		else: { required: ['email'] },
		additionalProperties: false
	})
];

const text = (t) => ({ content: [{ type: 'text', text: t }] });

const SEP1034_SCHEMA = {
	type: 'object',
	properties: {
		name: { type: 'string', default: 'John Doe' },
		age: { type: 'integer', default: 30 },
		score: { type: 'number', default: 95.5 },
		status: { type: 'string', enum: ['active', 'inactive', 'pending'], default: 'active' },
		verified: { type: 'boolean', default: true }
	}
};

const titled = (pairs) => pairs.map(([c, t]) => ({ const: c, title: t }));
const SEP1330_SCHEMA = {
	type: 'object',
	properties: {
		untitledSingle: { type: 'string', enum: ['option1', 'option2', 'option3'] },
		titledSingle: { type: 'string', oneOf: titled([['value1', 'First Option'],
		    ['value2', 'Second Option'], ['value3', 'Third Option']]) },
		legacyEnum: { type: 'string', enum: ['opt1', 'opt2', 'opt3'],
		    enumNames: ['Option One', 'Option Two', 'Option Three'] },
		untitledMulti: { type: 'array',
		    items: { type: 'string', enum: ['option1', 'option2', 'option3'] } },
		titledMulti: { type: 'array', items: { anyOf: titled([['value1', 'First Choice'],
		    ['value2', 'Second Choice'], ['value3', 'Third Choice']]) } }
	}
};

async function elicit(extra, message, requestedSchema) {
	const r = await extra.sendRequest({ method: 'elicitation/create',
	    params: { message, requestedSchema } }, ElicitResultSchema);
	return text(`Elicitation completed: action=${r.action}, content=${JSON.stringify(r.content ?? {})}`);
}

const TOOL_CALLS = {
	test_simple_text: async () => text('This is a simple text response for testing.'),
	test_image_content: async () =>
	    ({ content: [{ type: 'image', data: PNG, mimeType: 'image/png' }] }),
	test_audio_content: async () =>
	    ({ content: [{ type: 'audio', data: WAV, mimeType: 'audio/wav' }] }),
	test_embedded_resource: async () => ({ content: [{ type: 'resource', resource: {
		uri: 'test://embedded-resource', mimeType: 'text/plain',
		text: 'This is an embedded resource content.' } }] }),
	test_multiple_content_types: async () => ({ content: [
		{ type: 'text', text: 'Multiple content types test:' },
		{ type: 'image', data: PNG, mimeType: 'image/png' },
		{ type: 'resource', resource: { uri: 'test://mixed-content-resource',
		    mimeType: 'application/json', text: '{"test":"data","value":123}' } }
	] }),
	test_tool_with_logging: async (args, extra) => {
		const log = (data) => extra.sendNotification({ method:
		    'notifications/message', params: { level: 'info', data } });
		await log('Tool execution started');
		await sleep(50);
		await log('Tool processing data');
		await sleep(50);
		await log('Tool execution completed');
		return text('Tool with logging executed successfully');
	},
	test_tool_with_progress: async (args, extra, req) => {
		const token = req.params._meta?.progressToken;
		for (const progress of [0, 50, 100]) {
			if (token !== undefined)
				await extra.sendNotification({ method: 'notifications/progress',
				    params: { progressToken: token, progress, total: 100 } });
			if (progress < 100)
				await sleep(50);
		}
		return text(`Progress tool completed (token ${String(token)})`);
	},
	test_error_handling: async () =>
	    ({ isError: true, ...text('This tool intentionally returns an error for testing') }),
	test_reconnection: async (args, extra) => {
		await sleep(100);
		extra.closeSSEStream?.();	/* the client resumes with Last-Event-ID */
		await sleep(100);
		return text('Reconnection test completed');
	},
	test_sampling: async (args, extra) => {
		const r = await extra.sendRequest({ method: 'sampling/createMessage',
		    params: { messages: [{ role: 'user', content: { type: 'text',
		    text: String(args.prompt ?? '') } }], maxTokens: 100 } },
		    CreateMessageResultSchema);
		return text(`LLM response: ${r.content?.text ?? JSON.stringify(r.content)}`);
	},
	test_elicitation: async (args, extra) => {
		const r = await extra.sendRequest({ method: 'elicitation/create', params: {
			message: String(args.message ?? ''),
			requestedSchema: { type: 'object', required: ['username', 'email'],
			    properties: {
				username: { type: 'string', description: "User's response" },
				email: { type: 'string', description: "User's email address" } } }
		} }, ElicitResultSchema);
		return text(`User response: action=${r.action}, content=${JSON.stringify(r.content ?? {})}`);
	},
	test_elicitation_sep1034_defaults: async (args, extra) =>
	    elicit(extra, 'Please review your profile', SEP1034_SCHEMA),
	test_elicitation_sep1330_enums: async (args, extra) =>
	    elicit(extra, 'Please choose', SEP1330_SCHEMA),
	json_schema_2020_12_tool: async (args) => text(`Received ${JSON.stringify(args)}`)
};

// ------------------------------------------------- resources and prompts

const RESOURCES = [
	{ uri: 'test://static-text', name: 'static-text', mimeType: 'text/plain',
	    description: 'A static text resource' },
	{ uri: 'test://static-binary', name: 'static-binary', mimeType: 'image/png',
	    description: 'A static binary resource (PNG)' },
	{ uri: 'test://watched-resource', name: 'watched-resource', mimeType: 'text/plain',
	    description: 'A resource that may be subscribed to' }
];

function readResource(uri) {
	if (uri === 'test://static-text')
		return [{ uri, mimeType: 'text/plain',
		    text: 'This is the content of the static text resource.' }];
	if (uri === 'test://static-binary')
		return [{ uri, mimeType: 'image/png', blob: PNG }];
	if (uri === 'test://watched-resource')
		return [{ uri, mimeType: 'text/plain', text: 'Watched resource content' }];
	const m = /^test:\/\/template\/([^/]+)\/data$/.exec(uri);
	if (m)
		return [{ uri, mimeType: 'application/json', text: JSON.stringify(
		    { id: m[1], templateTest: true, data: `Data for ID: ${m[1]}` }) }];
	throw new McpError(-32602, 'Resource not found', { uri });
}

const PROMPTS = [
	{ name: 'test_simple_prompt', description: 'A prompt without arguments' },
	{ name: 'test_prompt_with_arguments', description: 'A prompt with two arguments',
	    arguments: [{ name: 'arg1', description: 'First test argument', required: true },
		{ name: 'arg2', description: 'Second test argument', required: true }] },
	{ name: 'test_prompt_with_embedded_resource', description: 'A prompt embedding a resource',
	    arguments: [{ name: 'resourceUri', description: 'URI of the resource to embed',
		required: true }] },
	{ name: 'test_prompt_with_image', description: 'A prompt with an image' }
];

const user = (content) => ({ role: 'user', content });

function getPrompt(name, args = {}) {
	switch (name) {
	case 'test_simple_prompt':
		return [user({ type: 'text', text: 'This is a simple prompt for testing.' })];
	case 'test_prompt_with_arguments':
		return [user({ type: 'text',
		    text: `Prompt with arguments: arg1='${args.arg1}', arg2='${args.arg2}'` })];
	case 'test_prompt_with_embedded_resource':
		return [user({ type: 'resource', resource: { uri: String(args.resourceUri),
		    mimeType: 'text/plain', text: 'Embedded resource content for testing.' } }),
		    user({ type: 'text', text: 'Please process the embedded resource above.' })];
	case 'test_prompt_with_image':
		return [user({ type: 'image', data: PNG, mimeType: 'image/png' }),
		    user({ type: 'text', text: 'Please analyze the image above.' })];
	}
	throw new McpError(ErrorCode.InvalidParams, `Unknown prompt: ${name}`);
}

// ------------------------------------------------------------- sessions

function newServer() {
	const server = new Server({ name: 'heavyd-conformance-sdk-server', version: '1.0.0' },
	    { capabilities: { tools: { listChanged: true }, logging: {}, completions: {},
		resources: { subscribe: true, listChanged: true },
		prompts: { listChanged: true } } });
	server.setRequestHandler(ListToolsRequestSchema, async () => ({ tools: TOOLS }));
	server.setRequestHandler(CallToolRequestSchema, async (req, extra) => {
		const call = TOOL_CALLS[req.params.name];
		if (call === undefined)
			throw new McpError(ErrorCode.InvalidParams, `Unknown tool: ${req.params.name}`);
		return call(req.params.arguments ?? {}, extra, req);
	});
	server.setRequestHandler(ListResourcesRequestSchema, async () => ({ resources: RESOURCES }));
	server.setRequestHandler(ListResourceTemplatesRequestSchema, async () => ({
		resourceTemplates: [{ uriTemplate: 'test://template/{id}/data', name: 'template',
		    description: 'A template with one parameter', mimeType: 'application/json' }] }));
	server.setRequestHandler(ReadResourceRequestSchema, async (req) =>
	    ({ contents: readResource(req.params.uri) }));
	server.setRequestHandler(SubscribeRequestSchema, async () => ({}));
	server.setRequestHandler(UnsubscribeRequestSchema, async () => ({}));
	server.setRequestHandler(ListPromptsRequestSchema, async () => ({ prompts: PROMPTS }));
	server.setRequestHandler(GetPromptRequestSchema, async (req) =>
	    ({ messages: getPrompt(req.params.name, req.params.arguments) }));
	server.setRequestHandler(CompleteRequestSchema, async (req) => {
		const words = ['paris', 'park', 'party'];
		const v = String(req.params.argument?.value ?? '');
		const values = words.filter((w) => w.startsWith(v));
		return { completion: { values, total: values.length, hasMore: false } };
	});
	return server;
}

// Every event of every stream, for Last-Event-ID replay.  Bounded.
function eventStore() {
	const events = [];
	return {
		async storeEvent(streamId, message) {
			const eventId = `${streamId}_${randomUUID()}`;
			events.push({ eventId, streamId, message });
			if (events.length > 1000)
				events.shift();
			return eventId;
		},
		async getStreamIdForEventId(eventId) {
			return events.find((e) => e.eventId === eventId)?.streamId;
		},
		async replayEventsAfter(lastEventId, { send }) {
			const i = events.findIndex((e) => e.eventId === lastEventId);
			if (i < 0)
				return '';
			const streamId = events[i].streamId;
			for (const e of events.slice(i + 1))
				if (e.streamId === streamId)
					await send(e.eventId, e.message);
			return streamId;
		}
	};
}

const sessions = new Map();	/* session id -> transport */

function jsonError(res, status, code, message) {
	res.writeHead(status, { 'Content-Type': 'application/json' });
	res.end(JSON.stringify({ jsonrpc: '2.0', id: null, error: { code, message } }));
}

// DNS rebinding: Host and Origin, when present, must name loopback.
const LOOPBACK = new Set(['localhost', '127.0.0.1', '[::1]']);
function loopbackOnly(req) {
	const host = (h) => { try { return new URL(`http://${h}`).hostname; } catch { return ''; } };
	if (!LOOPBACK.has(host(req.headers.host ?? '')))
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
	if (new URL(req.url, 'http://x').pathname !== '/mcp')
		return jsonError(res, 404, -32601, 'Not found');
	if (!loopbackOnly(req))
		return jsonError(res, 403, -32000, 'Forbidden: Host or Origin is not loopback');
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
				eventStore: eventStore(),
				retryInterval: 1000,
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

function main() {
	const argv = process.argv.slice(2);
	const opt = (name, dflt) => {
		const i = argv.indexOf(name);
		return i >= 0 ? argv[i + 1] : dflt;
	};
	const httpServer = http.createServer((req, res) => {
		handle(req, res).catch((e) => {
			if (!res.headersSent)
				jsonError(res, 500, -32603, String(e?.message ?? e));
		});
	});
	httpServer.listen(Number(opt('--port', '0')), '127.0.0.1', () => {
		const { port } = httpServer.address();
		const file = opt('--port-file');
		if (file !== undefined)
			fs.writeFileSync(file, `${port}\n`);
		console.error(`sdk-server: http://127.0.0.1:${port}/mcp`);
	});
	const stop = () => {
		httpServer.close(() => process.exit(0));
		httpServer.closeAllConnections();
	};
	process.on('SIGTERM', stop);
	process.on('SIGINT', stop);
}

main();
