// The local stack's small real model behind an OpenAI-compatible HTTP API, on node-llama-cpp's prebuilt
// linux-x64 llama.cpp (no compiler). Started by localstack/llm/local_model.py (server_command), which documents
// the arguments. Routes:
//   GET  /v1/models                                           lists the one model alias
//   POST /v1/chat/completions                                 OpenAI chat, plain or streamed (SSE)
//   POST /openai/deployments/{deployment}/chat/completions    the Azure OpenAI route: any deployment name is
//                                                             answered by the same model
// Up to --parallel requests are generated at once, each on its own context sequence, which llama.cpp evaluates
// together in one batch (more answers per second than one after another); further requests wait for a sequence.
// Answers are remembered (--cache-size, least recently used out): generation is deterministic (greedy at temperature
// 0, a fixed seed otherwise), so a request asked before gets the answer it would get again, without the model's time.
// Experiments ask the same prompt once per combination of the other nodes' variants, smoke tests and the demo's
// traffic ask what the experiment asked: about half of a run's requests are repeats. `x-cache: hit|miss` says which.
// Nothing from a request (prompt, headers, api key) is logged: one line per request with route, status, time.
import http from "node:http";
import {randomUUID} from "node:crypto";
import {parseArgs} from "node:util";
import {getLlama, JinjaTemplateChatWrapper, LlamaChat} from "node-llama-cpp";

const {values: args} = parseArgs({options: {
    model: {type: "string"}, alias: {type: "string"}, host: {type: "string", default: "127.0.0.1"},
    port: {type: "string"}, "context-size": {type: "string", default: "4096"}, threads: {type: "string", default: "2"},
    seed: {type: "string", default: "0"}, parallel: {type: "string", default: "1"},
    "cache-size": {type: "string", default: "2048"},
}});
if (!args.model || !args.alias || !args.port) {
    console.error("usage: model_server.mjs --model FILE.gguf --alias NAME --port N [--host H] [--context-size N] " +
        "[--threads N] [--seed N] [--parallel N] [--cache-size N]");
    process.exit(2);
}
const DEFAULT_SEED = Number(args.seed);
const AZURE_ROUTE = /^\/openai\/deployments\/[^/]+\/chat\/completions$/;

// CPU only, and never a source build or download at run time: the prebuilt binary from npm or nothing.
const llama = await getLlama({gpu: false, build: "never", skipDownload: true, logLevel: "error"});
const model = await llama.loadModel({modelPath: args.model});
const context = await model.createContext({contextSize: Number(args["context-size"]), threads: Number(args.threads),
    sequences: Number(args.parallel)});
const idleSequences = Array.from({length: Number(args.parallel)}, () => context.getSequence());
// The gguf's own Jinja chat template (SmolLM2's ChatML, which adds its default system prompt when a request has
// none, as in training): without that system prompt the model rambles on short questions.
const chatWrapper = new JinjaTemplateChatWrapper({template: model.fileInfo.metadata.tokenizer.chat_template});

class BadRequest extends Error {}

function messageText(content) {
    if (typeof content === "string") return content;
    if (Array.isArray(content)) return content.map((part) => (part?.type === "text" ? part.text : "")).join("");
    throw new BadRequest("message content must be a string or a list of text parts");
}

const ROLES = {system: "system", developer: "system", user: "user", assistant: "model"};

function chatHistory(messages) {
    if (!Array.isArray(messages) || messages.length === 0) throw new BadRequest("`messages` must be a non-empty list");
    const history = messages.map((message) => {
        const type = ROLES[message?.role];
        if (!type) throw new BadRequest(`unsupported message role: ${JSON.stringify(message?.role)}`);
        const text = messageText(message.content ?? "");
        return type === "model" ? {type, response: [text]} : {type, text};
    });
    return [...history, {type: "model", response: []}]; // the answer to generate
}

function generationOptions(body) {
    const stop = body.stop == null ? [] : [body.stop].flat();
    return {
        temperature: body.temperature ?? 1, // OpenAI's default; 0 is greedy and so deterministic
        topP: body.top_p ?? undefined,
        seed: body.seed ?? DEFAULT_SEED, // a fixed seed: the same request sampled at temperature > 0 answers the same
        maxTokens: body.max_completion_tokens ?? body.max_tokens ?? undefined,
        customStopTriggers: stop.length ? stop : undefined,
    };
}

// Runs task(sequence) on an idle context sequence, waiting (first come, first served) while all are busy.
const waiting = [];
async function withSequence(task) {
    const sequence = idleSequences.pop() ?? await new Promise((resolve) => waiting.push(resolve));
    try {
        return await task(sequence);
    } finally {
        const next = waiting.shift();
        if (next) next(sequence);
        else idleSequences.push(sequence);
    }
}

// Remembered answers by everything that decides them (the chat and the generation options); a Map keeps insertion
// order, so re-inserting on use makes the first key the least recently used.
const CACHE_SIZE = Number(args["cache-size"]);
const answers = new Map();

function remembered(key) {
    const known = answers.get(key);
    if (known === undefined) return null;
    answers.delete(key);
    answers.set(key, known);
    return {...known, cached: true};
}

function remember(key, result) {
    if (CACHE_SIZE <= 0) return;
    answers.set(key, result);
    if (answers.size > CACHE_SIZE) answers.delete(answers.keys().next().value);
}

// The answer to `history`: remembered, or generated when a sequence is free (looking again then, as an identical
// request ahead in the queue may have just answered it). Null when `signal` was aborted first. A streamed request
// answered from memory gets its answer as one chunk.
async function answer(history, options, onTextChunk, signal) {
    const key = JSON.stringify([history, options]);
    const result = remembered(key) ?? await withSequence((sequence) =>
        remembered(key) ?? complete(sequence, history, options, onTextChunk, signal));
    if (result === null) return null;
    if (result.cached) {
        if (onTextChunk) onTextChunk(result.text);
    } else if (!result.aborted) {
        remember(key, result); // never a partial answer cut short by a client that left
    }
    return result;
}

// The answer to `history`, or null when `signal` was aborted before its turn came.
async function complete(sequence, history, options, onTextChunk, signal) {
    if (signal.aborted) return null;
    const promptTokens = chatWrapper.generateContextState({chatHistory: history}).contextText
        .tokenize(model.tokenizer).length;
    let completionTokens = 0;
    const chat = new LlamaChat({contextSequence: sequence, chatWrapper, autoDisposeSequence: false});
    try {
        const result = await chat.generateResponse(history, {...options, onTextChunk, signal, stopOnAbortSignal: true,
            onToken: (tokens) => { completionTokens += tokens.length; }});
        return {
            text: result.response,
            finishReason: result.metadata.stopReason === "maxTokens" ? "length" : "stop",
            aborted: result.metadata.stopReason === "abort" || signal.aborted,
            usage: {prompt_tokens: promptTokens, completion_tokens: completionTokens,
                total_tokens: promptTokens + completionTokens},
        };
    } finally {
        chat.dispose({disposeSequence: false});
    }
}

function sendJson(response, status, body) {
    response.writeHead(status, {"content-type": "application/json"});
    response.end(JSON.stringify(body));
}

async function chatCompletion(response, body) {
    const history = chatHistory(body.messages);
    const options = generationOptions(body);
    const id = `chatcmpl-${randomUUID()}`;
    const created = Math.floor(Date.now() / 1000);
    const base = {id, created, model: args.alias};
    // A client that went away (closed, or gave up after its timeout) gets no more work: its request is skipped if
    // still queued, its generation stopped if running. Otherwise requests abandoned by a timing-out flow would
    // keep the model busy and make the requests behind them time out too.
    const abort = new AbortController();
    response.on("close", () => abort.abort());
    if (!body.stream) {
        const result = await answer(history, options, undefined, abort.signal);
        if (result === null) return;
        response.remembered = result.cached;
        response.setHeader("x-cache", result.cached ? "hit" : "miss");
        sendJson(response, 200, {...base, object: "chat.completion", usage: result.usage, choices: [{index: 0,
            message: {role: "assistant", content: result.text}, finish_reason: result.finishReason}]});
        return;
    }
    response.writeHead(200, {"content-type": "text/event-stream", "cache-control": "no-cache"});
    const send = (choices, extra = {}) => response.write(
        `data: ${JSON.stringify({...base, object: "chat.completion.chunk", choices, ...extra})}\n\n`);
    send([{index: 0, delta: {role: "assistant", content: ""}, finish_reason: null}]);
    const result = await answer(history, options,
        (text) => text && send([{index: 0, delta: {content: text}, finish_reason: null}]), abort.signal);
    if (result === null) return;
    response.remembered = result.cached;
    send([{index: 0, delta: {}, finish_reason: result.finishReason}]);
    if (body.stream_options?.include_usage) send([], {usage: result.usage});
    response.end("data: [DONE]\n\n");
}

async function readJson(request) {
    const chunks = [];
    for await (const chunk of request) chunks.push(chunk);
    try {
        return JSON.parse(Buffer.concat(chunks).toString("utf8"));
    } catch {
        throw new BadRequest("the request body is not JSON");
    }
}

async function handle(request, response) {
    const path = new URL(request.url, "http://localhost").pathname;
    if (request.method === "GET" && path === "/v1/models") {
        sendJson(response, 200, {object: "list",
            data: [{id: args.alias, object: "model", created: 0, owned_by: "local"}]});
    } else if (request.method === "POST" && (path === "/v1/chat/completions" || AZURE_ROUTE.test(path))) {
        await chatCompletion(response, await readJson(request));
    } else {
        sendJson(response, 404, {error: {message: `no route ${request.method} ${path}`, type: "not_found"}});
    }
}

const server = http.createServer((request, response) => {
    const started = Date.now();
    response.on("finish", () => console.log(
        `${request.method} ${request.url.split("?")[0]} ${response.statusCode} ${Date.now() - started} ms` +
        (response.remembered ? " (remembered)" : "")));
    handle(request, response).catch((error) => {
        const status = error instanceof BadRequest ? 400 : 500;
        if (status === 500) console.error(error);
        if (response.headersSent) response.end();
        else sendJson(response, status, {error: {message: error.message, type: status === 400 ?
            "invalid_request_error" : "server_error"}});
    });
});

async function shutdown(signal) {
    console.log(`${signal}: shutting down`);
    server.close();
    server.closeAllConnections();
    await llama.dispose();
    console.log("shutdown complete");
    process.exit(0);
}
process.once("SIGTERM", shutdown);
process.once("SIGINT", shutdown);

server.listen(Number(args.port), args.host, () => console.log(
    `serving ${args.alias} on http://${args.host}:${args.port}/v1 (and the Azure OpenAI route)`));
