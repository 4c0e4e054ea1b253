// AudioWorklet processors running client/audio's audio.wasm (Rust DSP, zero imports).
//
// One file registers both processors, so the page calls `audioWorklet.addModule('worklets.js')`
// once and they share the `instantiate` helper:
//
//   'capture-processor'   mic (device rate) → 20 ms PCM16 24 kHz frames, VAD events, level
//   'playback-processor'  PCM16 24 kHz chunks tagged with a response id → speakers
//
// Create a node with `processorOptions: { module }` (a WebAssembly.Module compiled once on the
// main thread) or, where a Module cannot be cloned into the worklet (DataCloneError), with
// `{ bytes }` (the .wasm as an ArrayBuffer). Each node instantiates its own copy synchronously
// in its constructor, so two nodes never share DSP state. Capture also takes optional
// `processorOptions.vad = { hangoverMs, pauseMs, maxUtteranceMs, echoGuardDb }`. Use a mono input for
// capture (`channelCount: 1, channelCountMode: 'explicit'` lets the browser down-mix).
//
// Messages (every `type` and string value is an entry of MSG below), worklet → main thread:
//   both:     { type: 'ready', via: 'module' | 'bytes', sampleRate }
//   capture:  { type: 'audio', pcm: ArrayBuffer }            one 20 ms frame, 480 samples, transferred
//             { type: 'vad', event: 'speech_started', audioStartMs }
//             { type: 'vad', event: 'speech_paused', audioPauseMs }   a short pause inside speech
//             { type: 'vad', event: 'speech_resumed', audioResumeMs } speech again after a pause
//             { type: 'vad', event: 'speech_stopped', reason: 'silence' | 'max_length', audioEndMs }
//             { type: 'level', dbfs, speaking }               every ~50 ms
//   playback: { type: 'progress', responseId, playedSamples, underruns, staleDropped, buffered }
//                                                             every ~100 ms while anything changes, and when a response drains
//             { type: 'drained', responseId, playedSamples }  a response (after `end`) has fully played
//             { type: 'cleared', responseId, playedSamples }  answer to `clear`
// Messages, main thread → worklet:
//   capture:  { type: 'assistant_audible', value: bool }      echo guard on/off
//   playback: { type: 'audio', responseId, pcm: ArrayBuffer }  PCM16 LE 24 kHz (transfer it)
//             { type: 'end', responseId }                     all audio of that response was sent
//             { type: 'clear', responseId? }                  barge-in; responseId also cancels a
//                                                             response that has sent no audio yet
// Audio times (`audio*Ms`) count ms of the capture stream since the node started; sample counts
// are 24 kHz samples. Response ids are u32.
//
// Views into wasm memory are rebuilt whenever `memory.buffer` changes (memory.grow detaches
// the old one); the DSP allocates nothing after construction, so in practice they are built once.

// The string values of the messages: types, VAD events, stop reasons. Mirrors `Word` in
// client/src/worklet_messages.rs (the page's typed vocabulary of these messages, where the field
// names are `Key`); a Rust unit test checks the two agree. Name them only through this table.
const MSG = Object.freeze({
  READY: 'ready',
  AUDIO: 'audio',
  VAD: 'vad',
  LEVEL: 'level',
  PROGRESS: 'progress',
  DRAINED: 'drained',
  CLEARED: 'cleared',
  ASSISTANT_AUDIBLE: 'assistant_audible',
  END: 'end',
  CLEAR: 'clear',
  SPEECH_STARTED: 'speech_started',
  SPEECH_STOPPED: 'speech_stopped',
  SPEECH_PAUSED: 'speech_paused',
  SPEECH_RESUMED: 'speech_resumed',
  SILENCE: 'silence',
  MAX_LENGTH: 'max_length',
});

const CAPTURE_FRAME_SAMPLES = 480; // 20 ms at 24 kHz, as framed by the wasm
const LEVEL_INTERVAL_S = 0.05;
const PROGRESS_INTERVAL_S = 0.1;
// `cap_event_kind` codes (client/audio/src/wasm.rs); 2 and 3 are the two stop reasons.
const EVENT_SPEECH_STARTED = 1;
const EVENT_SPEECH_PAUSED = 4;
const EVENT_SPEECH_RESUMED = 5;
const STOP_REASONS = { 2: MSG.SILENCE, 3: MSG.MAX_LENGTH };

// The `vad` message for event code `kind` at `ms` of capture stream.
function vadMessage(kind, ms) {
  switch (kind) {
    case EVENT_SPEECH_STARTED: return { type: MSG.VAD, event: MSG.SPEECH_STARTED, audioStartMs: ms };
    case EVENT_SPEECH_PAUSED: return { type: MSG.VAD, event: MSG.SPEECH_PAUSED, audioPauseMs: ms };
    case EVENT_SPEECH_RESUMED: return { type: MSG.VAD, event: MSG.SPEECH_RESUMED, audioResumeMs: ms };
    default: return { type: MSG.VAD, event: MSG.SPEECH_STOPPED, reason: STOP_REASONS[kind], audioEndMs: ms };
  }
}

function instantiate(processorOptions) {
  const o = processorOptions || {};
  const via = o.module instanceof WebAssembly.Module ? 'module' : 'bytes';
  const module = via === 'module' ? o.module : new WebAssembly.Module(o.bytes);
  return { exports: new WebAssembly.Instance(module, {}).exports, via };
}

class CaptureProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = options.processorOptions || {};
    const { exports, via } = instantiate(o);
    this.ex = exports;
    if (!this.ex.cap_new(sampleRate)) throw new Error(`capture: unsupported sample rate ${sampleRate}`);
    const vad = o.vad || {};
    if (vad.hangoverMs !== undefined) this.ex.cap_set_hangover_ms(vad.hangoverMs);
    if (vad.pauseMs !== undefined) this.ex.cap_set_pause_ms(vad.pauseMs);
    if (vad.maxUtteranceMs !== undefined) this.ex.cap_set_max_utterance_ms(vad.maxUtteranceMs);
    if (vad.echoGuardDb !== undefined) this.ex.cap_set_echo_guard_db(vad.echoGuardDb);
    this.levelEvery = Math.round(sampleRate * LEVEL_INTERVAL_S);
    this.sinceLevel = 0;
    this.memory = null;
    this.port.onmessage = (e) => {
      if (e.data && e.data.type === MSG.ASSISTANT_AUDIBLE) this.ex.cap_set_assistant_audible(e.data.value ? 1 : 0);
    };
    this.port.postMessage({ type: MSG.READY, via, sampleRate });
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true; // not connected yet
    const ex = this.ex;
    if (this.memory !== ex.memory.buffer) {
      this.memory = ex.memory.buffer;
      this.input = new Float32Array(this.memory, ex.cap_in_ptr(), ex.cap_in_capacity());
      this.outPtr = ex.cap_out_ptr();
    }
    const n = Math.min(channel.length, this.input.length);
    this.input.set(n === channel.length ? channel : channel.subarray(0, n));
    const ready = ex.cap_process(n);

    // Frames before each event first, so the main thread sees start → frames → (pause → frames
    // → resume →) frames → stop in order.
    let posted = 0;
    for (let i = 0, count = ex.cap_event_count(); i < count; i++) {
      const offset = ex.cap_event_offset(i);
      this.postFrames(posted, offset);
      posted = offset;
      this.port.postMessage(vadMessage(ex.cap_event_kind(i), ex.cap_event_ms(i)));
    }
    this.postFrames(posted, ready);

    this.sinceLevel += n;
    if (this.sinceLevel >= this.levelEvery) {
      this.sinceLevel = 0;
      this.port.postMessage({ type: MSG.LEVEL, dbfs: ex.cap_take_level_dbfs(), speaking: ex.cap_speaking() === 1 });
    }
    return true;
  }

  postFrames(from, to) {
    for (let at = from; at < to; at += CAPTURE_FRAME_SAMPLES) {
      const start = this.outPtr + at * 2;
      const pcm = this.memory.slice(start, start + CAPTURE_FRAME_SAMPLES * 2);
      this.port.postMessage({ type: MSG.AUDIO, pcm }, [pcm]);
    }
  }
}

class PlaybackProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const { exports, via } = instantiate(options.processorOptions);
    this.ex = exports;
    if (!this.ex.play_new(sampleRate)) throw new Error(`playback: unsupported sample rate ${sampleRate}`);
    this.progressEvery = Math.round(sampleRate * PROGRESS_INTERVAL_S);
    this.sinceProgress = 0;
    this.lastProgress = null;
    this.memory = null;
    this.port.onmessage = (e) => this.onMessage(e.data);
    this.port.postMessage({ type: MSG.READY, via, sampleRate });
  }

  views() {
    const ex = this.ex;
    if (this.memory !== ex.memory.buffer) {
      this.memory = ex.memory.buffer;
      this.input = new Int16Array(this.memory, ex.play_in_ptr(), ex.play_in_capacity());
      this.output = new Float32Array(this.memory, ex.play_out_ptr(), ex.play_out_capacity());
      this.quantum = null;
    }
  }

  onMessage(m) {
    const ex = this.ex;
    if (!m) return;
    if (m.type === MSG.AUDIO) {
      this.views();
      const id = m.responseId >>> 0;
      const samples = new Int16Array(m.pcm, 0, m.pcm.byteLength >> 1); // whole samples only
      for (let at = 0; at < samples.length; at += this.input.length) {
        const piece = samples.subarray(at, Math.min(samples.length, at + this.input.length));
        this.input.set(piece);
        ex.play_push(id, piece.length);
      }
    } else if (m.type === MSG.END) {
      ex.play_end(m.responseId >>> 0);
    } else if (m.type === MSG.CLEAR) {
      if (m.responseId !== undefined && m.responseId !== null) ex.play_cancel(m.responseId >>> 0);
      const current = ex.play_current_response();
      const playedSamples = ex.play_clear();
      this.port.postMessage({ type: MSG.CLEARED, responseId: current < 0 ? null : current, playedSamples });
    }
  }

  process(inputs, outputs) {
    const channels = outputs[0];
    if (!channels || !channels[0]) return true;
    const ex = this.ex;
    const n = ex.play_render(channels[0].length);
    this.views();
    if (!this.quantum || this.quantum.length !== n) this.quantum = this.output.subarray(0, n);
    for (const channel of channels) channel.set(this.quantum);

    const drained = ex.play_drained_count();
    this.sinceProgress += n;
    if (drained > 0 || this.sinceProgress >= this.progressEvery) {
      this.sinceProgress = 0;
      this.postProgress(drained > 0);
    }
    for (let i = 0; i < drained; i++) {
      this.port.postMessage({
        type: MSG.DRAINED, responseId: ex.play_drained_response(i), playedSamples: ex.play_drained_played(i),
      });
    }
    return true;
  }

  // Posts progress if anything changed since the last post (or when forced).
  postProgress(force) {
    const ex = this.ex;
    const current = ex.play_current_response();
    const responseId = current < 0 ? null : current;
    const p = {
      type: MSG.PROGRESS,
      responseId,
      playedSamples: responseId === null ? 0 : ex.play_played_samples(responseId),
      underruns: ex.play_underruns(),
      staleDropped: ex.play_stale_chunks(),
      buffered: ex.play_buffered_samples(),
    };
    const last = this.lastProgress;
    const unchanged = last && ['responseId', 'playedSamples', 'underruns', 'staleDropped', 'buffered']
      .every((key) => last[key] === p[key]);
    if (unchanged && !force) return;
    this.lastProgress = p;
    this.port.postMessage(p);
  }
}

registerProcessor('capture-processor', CaptureProcessor);
registerProcessor('playback-processor', PlaybackProcessor);
