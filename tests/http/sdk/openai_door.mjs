// The HTTP door as the official OpenAI Node SDK sees it. Runs the cases of a plan file and
// prints one JSON line with what each got; the C++ integration test (test_http_door.cpp)
// decides the cases and checks the results.
//   node openai_door.mjs PLAN.json
// env: STARMESH_SDK_DIR (holds node_modules/openai), STARMESH_HTTP_URL (http://HOST:PORT/v1),
//      STARMESH_HTTP_TOKEN (the API token).
// A case: {name, kind: "completion" | "chat" | "models", body, api_key?, abort_after_first?}.
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';

const require = createRequire(process.env.STARMESH_SDK_DIR + '/');
const OpenAI = require('openai').default ?? require('openai');

function client(apiKey) {
  // No retries: the test wants to see each status as the door answers it.
  return new OpenAI({ baseURL: process.env.STARMESH_HTTP_URL, apiKey, maxRetries: 0, timeout: 60000 });
}

async function run(c) {
  const api = client(c.api_key ?? process.env.STARMESH_HTTP_TOKEN);
  const out = { name: c.name };
  try {
    if (c.kind === 'models') {
      const page = await api.models.list();
      out.models = page.data.map((m) => m.id);
      return out;
    }
    const endpoint = c.kind === 'chat' ? api.chat.completions : api.completions;
    if (!c.body.stream) {
      const r = await endpoint.create(c.body);
      const choice = r.choices[0];
      out.text = c.kind === 'chat' ? choice.message.content : choice.text;
      out.role = c.kind === 'chat' ? choice.message.role : undefined;
      out.finish_reason = choice.finish_reason;
      out.usage = r.usage;
      out.starmesh = r.starmesh;
      out.object = r.object;
      return out;
    }
    const stream = await endpoint.create(c.body);
    out.text = '';
    out.events = 0;
    for await (const chunk of stream) {
      ++out.events;
      if (chunk.usage) out.usage = chunk.usage;
      if (chunk.starmesh) out.starmesh = chunk.starmesh;
      out.object = chunk.object;
      const choice = chunk.choices[0];
      if (!choice) continue;
      out.text += (c.kind === 'chat' ? choice.delta?.content : choice.text) ?? '';
      if (choice.delta?.role) out.role = choice.delta.role;
      if (choice.finish_reason) out.finish_reason = choice.finish_reason;
      if (c.abort_after_first && out.text.length > 0) {
        stream.controller.abort();  // the client goes away mid-stream
        out.aborted = true;
        break;
      }
    }
    return out;
  } catch (e) {
    if (out.aborted) return out;
    out.error = { status: e.status ?? null, code: e.code ?? null, type: e.type ?? null, message: String(e.message) };
    return out;
  }
}

const plan = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const results = [];
for (const c of plan.cases) results.push(await run(c));
const sdk = JSON.parse(readFileSync(process.env.STARMESH_SDK_DIR + '/node_modules/openai/package.json', 'utf8'));
console.log(JSON.stringify({ sdk: sdk.version, results }));
