// Runs worklets.js against the built audio.wasm under plain node, with the AudioWorklet
// globals stubbed. Build the wasm first (as the page gets it), then from the repository root:
//
//   sh scripts/build-audio-wasm.sh target/audio.wasm
//   node --test client/worklet/test/
//
// AUDIO_WASM=/path/to/audio.wasm overrides the module path.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, resolve } from 'node:path';

const here = dirname(fileURLToPath(import.meta.url));
const wasmPath = process.env.AUDIO_WASM
  ?? resolve(here, '../../../target/audio.wasm');
const bytes = readFileSync(wasmPath);
const module = new WebAssembly.Module(bytes);

// --- AudioWorkletGlobalScope stubs -------------------------------------------------------------
const processors = {};
globalThis.registerProcessor = (name, cls) => { processors[name] = cls; };
globalThis.AudioWorkletProcessor = class {
  constructor() {
    const sent = [];
    this.sent = sent;
    this.port = {
      onmessage: null,
      postMessage(data, transfer = []) { sent.push({ data, transfer }); },
    };
  }
};
await import(resolve(here, '../worklets.js'));

const QUANTUM = 128;

function create(name, rate, processorOptions) {
  globalThis.sampleRate = rate;
  return new processors[name]({ processorOptions });
}

function send(node, data) {
  node.port.onmessage({ data });
}

function messages(node, type) {
  return node.sent.map((m) => m.data).filter((d) => d.type === type);
}

// --- signals ------------------------------------------------------------------------------------
/** Noise at ≈ −65 dBFS with a sine burst of `amplitude` at [from, to) seconds (or at each
 * [from, to) of `spans`). */
function signal(rate, seconds, { hz = 300, amplitude = 0.1, from = 1, to = 2, spans = [[from, to]] } = {}) {
  const x = new Float32Array(Math.round(rate * seconds));
  let seed = 12345;
  for (let i = 0; i < x.length; i++) {
    seed = (seed * 1103515245 + 12345) >>> 0;
    const t = i / rate;
    const inside = spans.some(([a, b]) => t >= a && t < b);
    x[i] = 0.001 * (seed / 2 ** 32 - 0.5) + (inside ? amplitude * Math.sin(2 * Math.PI * hz * t) : 0);
  }
  return x;
}

function feedCapture(node, input) {
  for (let at = 0; at + QUANTUM <= input.length; at += QUANTUM) {
    node.process([[input.subarray(at, at + QUANTUM)]], []);
  }
}

function pcm16(seconds, hz = 440, amplitude = 0.5) {
  const x = new Int16Array(Math.round(24000 * seconds));
  for (let i = 0; i < x.length; i++) x[i] = Math.round(32767 * amplitude * Math.sin(2 * Math.PI * hz * i / 24000));
  return x;
}

function render(node, quanta) {
  const left = new Float32Array(quanta * QUANTUM);
  const right = new Float32Array(quanta * QUANTUM);
  for (let q = 0; q < quanta; q++) {
    const outputs = [[new Float32Array(QUANTUM), new Float32Array(QUANTUM)]];
    node.process([], outputs);
    left.set(outputs[0][0], q * QUANTUM);
    right.set(outputs[0][1], q * QUANTUM);
  }
  return { left, right };
}

function pushChunks(node, responseId, samples, chunk = 960) {
  for (let at = 0; at < samples.length; at += chunk) {
    const pcm = samples.slice(at, at + chunk).buffer;
    send(node, { type: 'audio', responseId, pcm });
  }
}

// --- tests --------------------------------------------------------------------------------------
test('the module has no imports', () => {
  assert.deepEqual(WebAssembly.Module.imports(module), []);
});

test('re-creating a pipeline reuses its memory, and an unsupported rate keeps the old one', () => {
  for (const [create, capacity] of [['cap_new', 'cap_in_capacity'], ['play_new', 'play_in_capacity']]) {
    const ex = new WebAssembly.Instance(module, {}).exports;
    assert.equal(ex[create](48000), 1);
    const bytes = ex.memory.buffer.byteLength;
    for (let i = 0; i < 20; i++) assert.equal(ex[create](48000), 1);
    assert.equal(ex.memory.buffer.byteLength, bytes, `${create} 20 times more`);
    const before = ex[capacity]();
    assert.equal(ex[create](1), 0);
    assert.equal(ex[capacity](), before, `${create}(1) keeps the pipeline`);
  }
});

test('capture posts start, 20 ms frames, the pause before the stop, stop, and a level every ~50 ms', () => {
  const node = create('capture-processor', 48000, { module });
  assert.deepEqual(messages(node, 'ready'), [{ type: 'ready', via: 'module', sampleRate: 48000 }]);
  feedCapture(node, signal(48000, 3));

  const flow = node.sent.map((m) => m.data).filter((d) => d.type === 'vad' || d.type === 'audio');
  assert.equal(flow[0].event, 'speech_started');
  assert.ok(Math.abs(flow[0].audioStartMs - 1000) <= 15, `onset at ${flow[0].audioStartMs} ms`);
  const last = flow[flow.length - 1];
  assert.equal(last.event, 'speech_stopped');
  assert.equal(last.reason, 'silence');
  assert.ok(Math.abs(last.audioEndMs - 2000) <= 15, `end at ${last.audioEndMs} ms`);
  // The turn ends as a pause (200 ms into the silence) and then a stop.
  const vad = messages(node, 'vad');
  assert.deepEqual(vad.map((v) => v.event), ['speech_started', 'speech_paused', 'speech_stopped']);
  assert.equal(vad[1].audioPauseMs, last.audioEndMs);

  const frames = node.sent.filter((m) => m.data.type === 'audio');
  assert.ok(frames.every((m) => m.data.pcm.byteLength === 960), 'every frame is 480 samples');
  assert.ok(frames.every((m) => m.transfer[0] === m.data.pcm), 'every frame buffer is transferred');
  assert.equal(flow.slice(1, -1).filter((d) => d.type === 'audio').length, frames.length,
    'all frames sit between start and stop');
  // 300 ms pre-roll + (1 s burst − 30 ms onset) + 500 ms hangover ≈ 1.77 s = 88.5 frames.
  assert.ok(Math.abs(frames.length - 88.5) <= 2, `${frames.length} frames`);
  const loud = frames.map((m) => new Int16Array(m.data.pcm)).filter((s) => s.some((v) => Math.abs(v) > 1000));
  assert.ok(loud.length >= 45, 'the burst is in the frames');

  const levels = messages(node, 'level');
  assert.ok(Math.abs(levels.length - 60) <= 2, `${levels.length} level messages in 3 s`);
  const duringBurst = levels[30];
  assert.ok(Math.abs(duringBurst.dbfs - -23) < 1, `burst level ${duringBurst.dbfs} dBFS`);
  assert.equal(duringBurst.speaking, true);
  assert.ok(levels[5].dbfs < -60, 'noise level');
});

test('capture instantiates from bytes and honours VAD options', () => {
  const raw = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  const node = create('capture-processor', 44100, { bytes: raw, vad: { hangoverMs: 200 } });
  assert.equal(messages(node, 'ready')[0].via, 'bytes');
  feedCapture(node, signal(44100, 3));
  const vad = messages(node, 'vad');
  // A pause as long as the hangover would only ever come with the stop: none is posted.
  assert.deepEqual(vad.map((v) => v.event), ['speech_started', 'speech_stopped']);
  assert.ok(Math.abs(vad[1].audioEndMs - 2000) <= 15);
});

test('capture posts a short pause and the resume inside one turn, frames flowing throughout', () => {
  // Two phrases 300 ms apart; pauses from 150 ms on.
  const input = signal(48000, 3.5, { spans: [[1, 1.5], [1.8, 2.3]] });
  const node = create('capture-processor', 48000, { module, vad: { pauseMs: 150 } });
  feedCapture(node, input);
  const vad = messages(node, 'vad');
  assert.deepEqual(vad.map((v) => v.event),
    ['speech_started', 'speech_paused', 'speech_resumed', 'speech_paused', 'speech_stopped']);
  assert.ok(Math.abs(vad[1].audioPauseMs - 1500) <= 15, `pause at ${vad[1].audioPauseMs} ms`);
  assert.ok(Math.abs(vad[2].audioResumeMs - 1800) <= 15, `resume at ${vad[2].audioResumeMs} ms`);
  const flow = node.sent.map((m) => m.data).filter((d) => d.type === 'vad' || d.type === 'audio');
  const pause = flow.indexOf(vad[1]);
  const resume = flow.indexOf(vad[2]);
  assert.ok(flow.slice(pause + 1, resume).some((d) => d.type === 'audio'), 'audio flows through the pause');
});

test('the echo guard suppresses a moderate burst while the assistant is audible', () => {
  const burst = signal(48000, 3, { amplitude: 0.014 }); // ≈ −40 dBFS RMS
  const open = create('capture-processor', 48000, { module });
  feedCapture(open, burst);
  assert.deepEqual(messages(open, 'vad').map((v) => v.event), ['speech_started', 'speech_paused', 'speech_stopped']);

  const guarded = create('capture-processor', 48000, { module });
  send(guarded, { type: 'assistant_audible', value: true });
  feedCapture(guarded, burst);
  assert.equal(messages(guarded, 'vad').length, 0);
  assert.equal(messages(guarded, 'audio').length, 0);
});

test('playback plays a response on every channel, reports progress, then drained', () => {
  const node = create('playback-processor', 44100, { module });
  const samples = pcm16(0.4);
  pushChunks(node, 7, samples);
  send(node, { type: 'end', responseId: 7 });
  const { left, right } = render(node, Math.ceil(44100 * 0.6 / QUANTUM));
  assert.deepEqual(left, right);

  // 440 Hz for 0.4 s: 352 zero crossings.
  let crossings = 0;
  let sign = 0;
  for (const v of left) {
    if (Math.abs(v) < 1e-3) continue; // ignore the silence around the tone
    const s = Math.sign(v);
    if (sign && s !== sign) crossings++;
    sign = s;
  }
  assert.ok(Math.abs(crossings - 352) <= 4, `${crossings} zero crossings`);
  const peak = left.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  assert.ok(Math.abs(peak - 0.5) < 0.02, `peak ${peak}`);

  assert.deepEqual(messages(node, 'drained'), [{ type: 'drained', responseId: 7, playedSamples: samples.length }]);
  const progress = messages(node, 'progress');
  assert.ok(progress.length >= 4, `${progress.length} progress messages`);
  const final = progress[progress.length - 1];
  assert.deepEqual(final, {
    type: 'progress', responseId: 7, playedSamples: samples.length, underruns: 0, staleDropped: 0, buffered: 0,
  });
  const seen = progress.map((p) => p.playedSamples);
  assert.deepEqual(seen, [...seen].sort((a, b) => a - b), 'played samples only grow');
});

test('playback clear fades out at once, answers what was played, and drops stale chunks', () => {
  const node = create('playback-processor', 48000, { module });
  pushChunks(node, 3, pcm16(2));
  render(node, Math.round(48000 * 0.2 / QUANTUM)); // ≈ 200 ms
  send(node, { type: 'clear' });
  const [cleared] = messages(node, 'cleared');
  assert.equal(cleared.responseId, 3);
  assert.ok(Math.abs(cleared.playedSamples - 4800) <= 200, `played ${cleared.playedSamples}`);

  const { left } = render(node, 6); // 16 ms
  assert.ok(left.subarray(4 * QUANTUM).every((v) => v === 0), 'silent within ~10 ms');

  pushChunks(node, 3, pcm16(0.1));
  render(node, Math.round(48000 * 0.15 / QUANTUM));
  const last = messages(node, 'progress').at(-1);
  assert.equal(last.staleDropped, 3);
  assert.equal(last.buffered, 0);

  // A response cancelled before its first chunk is dropped too.
  send(node, { type: 'clear', responseId: 4 });
  pushChunks(node, 4, pcm16(0.1));
  const { left: after } = render(node, 40);
  assert.ok(after.every((v) => v === 0));
});
