#!/usr/bin/env node
// A small MCP client over stdio, on the official TypeScript SDK: runs one
// heavy_orchestrate call against a heavyd binary and shows what happened:
// progress as it comes, then the planner's sub-questions, each agent's
// answer (shortened), and the synthesis. Used by scripts/demo; `--json`
// prints the structured result instead.
//   node client.mjs --server build/heavyd [--agents N] [--timeout S] [--json] "query"
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { CallToolResultSchema, ProgressNotificationSchema } from '@modelcontextprotocol/sdk/types.js';

function parseArgs(argv) {
  const o = { server: 'build/heavyd', agents: 4, timeout: 300, json: false, query: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--server') o.server = argv[++i];
    else if (a === '--agents') o.agents = Number(argv[++i]);
    else if (a === '--timeout') o.timeout = Number(argv[++i]);
    else if (a === '--json') o.json = true;
    else if (o.query === null) o.query = a;
    else throw new Error(`unexpected argument: ${a}`);
  }
  if (!o.query) throw new Error('usage: client.mjs [--server PATH] [--agents N] [--timeout S] [--json] "query"');
  return o;
}

// One line of at most `max` characters, whitespace collapsed.
function shorten(text, max = 150) {
  const s = String(text ?? '').replace(/\s+/g, ' ').trim();
  return s.length <= max ? s : s.slice(0, max - 1).trimEnd() + '…';
}

// Indents every line of a text.
const indent = (text, pad) => String(text).split('\n').map((l) => pad + l).join('\n');

const opts = parseArgs(process.argv.slice(2));
const transport = new StdioClientTransport({
  command: opts.server, args: [], env: { ...process.env }, stderr: 'inherit',
});
const client = new Client({ name: 'heavyd-demo', version: '1.0.0' });
const t0 = Date.now();
const stamp = () => `[${((Date.now() - t0) / 1000).toFixed(1).padStart(5)}s]`;
const out = (line) => process.stdout.write(line + '\n');

// Our own progress handler: the SDK's per-request one is removed as soon as
// the response arrives, so it drops the last notification ("done"), which
// heavyd sends just before the result.
const token = 'heavyd-demo';
client.setNotificationHandler(ProgressNotificationSchema, (n) => {
  const p = n.params;
  if (p.progressToken !== token || opts.json) return;
  out(`${stamp()} progress ${Math.floor(p.progress)}/${p.total}  ${p.message ?? ''}`);
});

await client.connect(transport);
const info = client.getServerVersion();
if (!opts.json) out(`${stamp()} connected to ${info.name} ${info.version}; asking ${opts.agents} agents`);
let result, progress = null;
try {
  result = await client.callTool(
    {
      name: 'heavy_orchestrate',
      arguments: { query: opts.query, num_agents: opts.agents, timeout: opts.timeout },
      _meta: { progressToken: token },
    },
    CallToolResultSchema,
    { timeout: (opts.timeout + 30) * 1000 });
  await new Promise((r) => setImmediate(r));	// let queued notifications print
  // Each agent's answer: get_task_progress on the task (its id names its
  // workspace, <state_dir>/workspaces/<task id>).
  const s = result.structuredContent;
  if (!opts.json && s?.workspace) {
    const p = await client.callTool({ name: 'get_task_progress',
      arguments: { task_id: path.basename(s.workspace) } });
    if (!p.isError) progress = p.structuredContent?.progress ?? null;
  }
} finally {
  await client.close();
}
const s = result.structuredContent;
if (opts.json) {
  process.stdout.write(JSON.stringify(s ?? result, null, 2) + '\n');
} else if (!s) {
  out(`\n${result.content?.[0]?.text ?? ''}`);
} else {
  const answers = new Map((progress?.agents ?? []).map((a) => [a.index, a.answer]));
  out(`\nThe planner's sub-questions${s.planner_fallback ? ' (fallback questions: the planner failed)' : ''}:`);
  for (const a of s.agents) out(`  ${a.index}. ${shorten(a.question, 200)}`);
  out(`\nThe agents' answers (shortened):`);
  for (const a of s.agents) {
    const what = a.status === 'ok' ? shorten(answers.get(a.index) ?? '(answer not available)')
      : `${a.status}: ${shorten(a.error)}`;
    out(`  ${a.index}. [${a.status}, ${(a.elapsed_ms / 1000).toFixed(1)} s] ${what}`);
  }
  out(`\n${s.synthesized ? 'The synthesis' : 'The answer (not synthesized)'}:`);
  out(indent(s.answer ?? result.content?.[0]?.text ?? '', '  '));
  const ok = s.agents.filter((a) => a.status === 'ok').length;
  out(`\n${ok} of ${s.agents.length} agents answered; ${s.usage.llm_calls} LLM calls, ` +
    `${s.usage.total_tokens} tokens; ${(s.elapsed_ms / 1000).toFixed(1)} s.`);
}
process.exitCode = result.isError ? 1 : 0;
