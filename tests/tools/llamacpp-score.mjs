#!/usr/bin/env node
// llamacpp-score.mjs - score token ids with llama.cpp itself, through the
// node-llama-cpp package pinned in tests/npm (its prebuilt CPU binary;
// nothing is built or downloaded: getLlama is told build "never").
//
//   node tests/tools/llamacpp-score.mjs MODEL.gguf IDS.bin [--ctx N]
//        [--max-windows K] [--bos ID] [--threads N] [--logprobs-out FILE]
//        [--tokenize TEXT | --tokenize-file FILE]
//
// IDS.bin holds int32 little-endian ids (llmq tokenize --ids-out).  Windows
// follow llama-perplexity, as `llmq verify --protocol llamacpp` does:
// consecutive windows of ctx ids, the tail dropped; with --bos the first id
// of each window becomes ID; within a window, the logits after ids 0..i
// score id i+1 for i from ctx/2 to ctx-2.  Each window starts from an empty
// KV cache.  Prints one JSON object: ppl, nll (sum), scored, windows.
// --logprobs-out writes each scored token's log-probability, one per line.
// --tokenize TEXT prints llama.cpp's ids for TEXT instead: no BOS, special
// tokens written in the text recognised (as llmq tokenize and HF do);
// --tokenize-file FILE the same for the UTF-8 text of FILE, read as it is.
import { readFileSync, writeFileSync } from "node:fs";

const usage = () => {
    process.stderr.write("usage: llamacpp-score.mjs MODEL.gguf IDS.bin [--ctx N] [--max-windows K] [--bos ID] " +
                         "[--threads N] [--logprobs-out FILE] | MODEL.gguf --tokenize TEXT | MODEL.gguf --tokenize-file FILE\n");
    process.exit(2);
};
const args = process.argv.slice(2);
const pos = [];
const opt = { ctx: 512, "max-windows": 0, bos: -1, threads: 2, "logprobs-out": null, tokenize: null, "tokenize-file": null };
for (let i = 0; i < args.length; i++) {
    if (args[i].startsWith("--")) {
        const k = args[i].slice(2);
        if (!(k in opt) || i + 1 >= args.length) usage();
        const v = args[++i];
        if (k === "logprobs-out" || k === "tokenize" || k === "tokenize-file") opt[k] = v;
        else if (!/^-?[0-9]+$/.test(v)) usage();
        else opt[k] = Number(v);
    } else pos.push(args[i]);
}
if (opt["tokenize-file"] !== null) opt.tokenize = readFileSync(opt["tokenize-file"], "utf8");
if (pos.length !== (opt.tokenize !== null ? 1 : 2) || opt.ctx < 4) usage();

const nlc = await import(new URL("../npm/node_modules/node-llama-cpp/dist/index.js", import.meta.url));
const llama = await nlc.getLlama({
    gpu: false, build: "never", skipDownload: true, usePrebuiltBinaries: true,
    logLevel: nlc.LlamaLogLevel.error, progressLogs: false,
});
const model = await llama.loadModel({ modelPath: pos[0], gpuLayers: 0 });
if (opt.tokenize !== null) {
    // exit once the write is done: into a pipe, stdout is asynchronous, and
    // an immediate exit would cut output past 64 KiB
    process.stdout.write(JSON.stringify(Array.from(model.tokenize(opt.tokenize, true))) + "\n", () => process.exit(0));
    await new Promise(() => {});
}

const buf = readFileSync(pos[1]);
if (buf.length % 4) { process.stderr.write(`${pos[1]}: size is not a multiple of 4\n`); process.exit(4); }
const ids = new Int32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length));
const ctxLen = opt.ctx;
let nw = Math.floor(ids.length / ctxLen);
if (nw === 0) { process.stderr.write(`${pos[1]}: fewer than ${ctxLen} ids\n`); process.exit(2); }
if (opt["max-windows"] > 0) nw = Math.min(nw, opt["max-windows"]);

const context = await model.createContext({ contextSize: ctxLen, batchSize: ctxLen, threads: opt.threads, sequences: 1 });
const seq = context.getSequence();
const first = Math.floor(ctxLen / 2);
let nll = 0, scored = 0;
const logprobs = [];
for (let w = 0; w < nw; w++) {
    const win = Array.from(ids.subarray(w * ctxLen, (w + 1) * ctxLen));
    if (opt.bos >= 0) win[0] = opt.bos;
    await seq.clearHistory();
    // the full next-token distribution of each scoring row: llama.cpp's
    // softmax at temperature 1 with every truncation (top-k, top-p, min-p)
    // off, so it is softmax(logits) over the whole vocabulary
    const next = { probabilities: true, options: { temperature: 1, topK: 0, topP: 1, minP: 0 } };
    const input = win.map((t, i) => (i >= first && i <= ctxLen - 2) ? [t, { generateNext: next }] : t);
    const out = await seq.controlledEvaluate(input);
    for (let i = first; i <= ctxLen - 2; i++) {
        const pr = out[i]?.next?.probabilities;
        if (!pr) { process.stderr.write(`window ${w}: no probabilities at ${i}\n`); process.exit(70); }
        let sum = 0;
        for (const v of pr.values()) sum += v;
        if (Math.abs(sum - 1) > 1e-3) { process.stderr.write(`window ${w}: probabilities at ${i} sum to ${sum}, not 1 (truncated?)\n`); process.exit(70); }
        const p = pr.get(win[i + 1]) ?? 0;
        if (!(p > 0)) { process.stderr.write(`window ${w}: id ${win[i + 1]} has no probability at ${i}\n`); process.exit(70); }
        const lp = Math.log(p / sum);
        nll -= lp;
        scored++;
        logprobs.push(lp);
    }
}
if (opt["logprobs-out"]) writeFileSync(opt["logprobs-out"], logprobs.map((v) => v.toPrecision(9)).join("\n") + "\n");
process.stdout.write(JSON.stringify({ ppl: Math.exp(nll / scored), nll, scored, windows: nw, ctx: ctxLen,
                                      vocab: model.tokens?.length ?? null }) + "\n");
await context.dispose();
await model.dispose();
await llama.dispose();
