// The `dsp-bench` processor (see bench.js). Loaded before worklets.js, it wraps
// registerProcessor so each product processor registers as a subclass that remembers its
// instance. Then it calls those real instances' `process()` — the code the page runs, with
// their real ports (their messages are posted and cloned as in the page) — on a speech-like
// signal, and times them. It also times the bare wasm calls (`cap_process`, `play_render`) on
// an instance of its own, to show what the JS glue adds.
//
// A timed loop runs inside one message handler on the audio thread, so the clock is read only
// at its ends; `performance.now()` where the scope has it, else `Date.now()` (ms ticks, hence
// long loops).

const QUANTUM = 128;
const WARMUP_QUANTA = 5000; // lets the engine tier the wasm and the JS up before timing
const ROUNDS = 8;

const now = globalThis.performance && typeof performance.now === 'function'
  ? () => performance.now()
  : () => Date.now();
const clockName = globalThis.performance && typeof performance.now === 'function' ? 'performance.now' : 'Date.now';

const instances = {};
const registerForReal = globalThis.registerProcessor;
globalThis.registerProcessor = (name, Processor) => {
  registerForReal(name, class extends Processor {
    constructor(options) {
      super(options);
      instances[name] = this;
    }
  });
};

/** A speech-like mono signal: a 150 Hz harmonic series under a 4 Hz syllable envelope, 1.5 s of
 * it then 1.5 s of faint noise, repeating (as client/audio/benches/dsp.rs), so the VAD starts,
 * pauses and stops and frames are posted as while someone talks. */
function voiceLike(rate, seconds) {
  const out = new Float32Array(rate * seconds);
  let seed = 1;
  for (let n = 0; n < out.length; n++) {
    const t = n / rate;
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    const noise = (seed >>> 8) / (1 << 24) - 0.5;
    const envelope = (0.5 - 0.5 * Math.cos(2 * Math.PI * 4 * t)) * (t % 3 < 1.5 ? 1 : 0);
    let voice = 0;
    for (let k = 1; k <= 8; k++) voice += Math.sin(2 * Math.PI * 150 * k * t) / k;
    out[n] = 0.1 * envelope * voice + 0.002 * noise;
  }
  return out;
}

/** Runs `step(i)` for `quanta` calls in ROUNDS rounds after a warm-up; µs per call.
 * `prepare(calls)`, untimed, runs before the warm-up and before each round. */
function time(quanta, step, prepare = () => {}) {
  prepare(WARMUP_QUANTA);
  for (let i = 0; i < WARMUP_QUANTA; i++) step(i);
  const perRound = Math.ceil(quanta / ROUNDS);
  const rounds = [];
  let total = 0;
  for (let r = 0; r < ROUNDS; r++) {
    prepare(perRound);
    const start = now();
    for (let i = 0; i < perRound; i++) step(WARMUP_QUANTA + r * perRound + i);
    const ms = now() - start;
    total += ms;
    rounds.push((ms * 1000) / perRound);
  }
  return { meanUs: (total * 1000) / (perRound * ROUNDS), bestRoundUs: Math.min(...rounds), calls: perRound * ROUNDS };
}

function captureProcess(processor, quanta) {
  const signal = voiceLike(sampleRate, 6);
  const blocks = [];
  for (let at = 0; at + QUANTUM <= signal.length; at += QUANTUM) blocks.push(signal.subarray(at, at + QUANTUM));
  const inputs = [[blocks[0]]];
  const outputs = [[new Float32Array(QUANTUM)]];
  return time(quanta, (i) => {
    inputs[0][0] = blocks[i % blocks.length];
    processor.process(inputs, outputs);
  });
}

/** 24 kHz PCM16 of the same voice, as 100 ms chunks (the size the proxy sends, roughly). */
function answerChunks() {
  const voice = voiceLike(24000, 3);
  const chunks = [];
  for (let at = 0; at + 2400 <= voice.length; at += 2400) {
    const pcm = new Int16Array(2400);
    for (let i = 0; i < pcm.length; i++) pcm[i] = Math.max(-32768, Math.min(32767, Math.round(voice[at + i] * 32767)));
    chunks.push(pcm);
  }
  return chunks;
}

/** Times `render()` only: before each timed stretch, `feed(chunks)` queues more 100 ms chunks
 * of the answer than the stretch will play (delivering chunks is the port's work, not the
 * render quantum's), so the player never runs dry. */
function timeRendering(quanta, feed, render) {
  const chunksFor = (calls) => Math.ceil((calls * QUANTUM * 10) / sampleRate) + 2;
  return time(quanta, render, (calls) => feed(chunksFor(calls)));
}

function playbackProcess(processor, quanta) {
  const chunks = answerChunks();
  const outputs = [[new Float32Array(QUANTUM)]];
  let next = 0;
  const feed = (count) => {
    for (let c = 0; c < count; c++) {
      const pcm = chunks[next++ % chunks.length].slice().buffer;
      processor.onMessage({ type: 'audio', responseId: 1, pcm });
    }
  };
  return timeRendering(quanta, feed, () => processor.process([], outputs));
}

function bareWasm(module, quanta) {
  const ex = new WebAssembly.Instance(module, {}).exports;
  ex.cap_new(sampleRate);
  ex.play_new(sampleRate);
  const input = new Float32Array(ex.memory.buffer, ex.cap_in_ptr(), QUANTUM);
  const signal = voiceLike(sampleRate, 6);
  const blocks = Math.floor(signal.length / QUANTUM);
  const capture = time(quanta, (i) => {
    const at = (i % blocks) * QUANTUM;
    input.set(signal.subarray(at, at + QUANTUM));
    ex.cap_process(QUANTUM);
  });
  const chunks = answerChunks();
  const pushIn = new Int16Array(ex.memory.buffer, ex.play_in_ptr(), ex.play_in_capacity());
  let next = 0;
  const playback = timeRendering(quanta, (count) => {
    for (let c = 0; c < count; c++) {
      const pcm = chunks[next++ % chunks.length];
      pushIn.set(pcm);
      ex.play_push(1, pcm.length);
    }
  }, () => ex.play_render(QUANTUM));
  return { capture, playback };
}

class DspBench extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const { module } = options.processorOptions;
    this.port.onmessage = (e) => {
      if (!e.data || e.data.type !== 'run') return;
      let result;
      try {
        const quanta = e.data.quanta;
        const capture = instances['capture-processor'];
        const playback = instances['playback-processor'];
        if (!capture || !playback) throw new Error('the product processors were not constructed');
        result = {
          sampleRate,
          quantumMs: (QUANTUM / sampleRate) * 1000,
          clock: clockName,
          captureProcess: captureProcess(capture, quanta),
          playbackProcess: playbackProcess(playback, quanta),
          wasmOnly: bareWasm(module, quanta),
        };
      } catch (error) {
        result = { sampleRate, error: String(error && error.stack || error) };
      }
      this.port.postMessage({ type: 'result', result });
    };
  }

  process() {
    return true;
  }
}

registerForReal('dsp-bench', DspBench);
