// The cost of the worklets' per-quantum work in this browser: for each rate, an AudioContext
// with the page's own capture and playback processors (worklets.js, audio.wasm as the page
// gets them) and the `dsp-bench` processor (bench-worklet.js), which calls their `process()`
// thousands of times inside the AudioWorkletGlobalScope and times it. The result lands in
// `window.__dspBench` (and on the page) for the browser test that reads it
// (browser-tests/tests/browser/dsp_bench.rs). Nothing here is part of the product.

const params = new URLSearchParams(location.search);
const QUANTA = Number(params.get('quanta') ?? 40000);
const RATES = (params.get('rates') ?? '48000,44100').split(',').map(Number);

// Resolves with the first message of `type` on `port`.
function first(port, type) {
  return new Promise((resolve) => {
    port.addEventListener('message', function listener(e) {
      if (e.data && e.data.type === type) {
        port.removeEventListener('message', listener);
        resolve(e.data);
      }
    });
    port.start();
  });
}

async function measure(sampleRate, module) {
  const context = new AudioContext({ sampleRate });
  try {
    // The bench module first: it wraps registerProcessor so it can reach the product's
    // processor instances.
    await context.audioWorklet.addModule('bench-worklet.js');
    await context.audioWorklet.addModule('worklets.js');
    // As client/src/audio.rs makes them. Left unconnected: the bench drives them.
    const capture = new AudioWorkletNode(context, 'capture-processor', {
      numberOfInputs: 1, numberOfOutputs: 1, channelCount: 1, channelCountMode: 'explicit',
      processorOptions: { module },
    });
    const playback = new AudioWorkletNode(context, 'playback-processor', {
      numberOfInputs: 0, numberOfOutputs: 1, outputChannelCount: [1], processorOptions: { module },
    });
    await Promise.all([first(capture.port, 'ready'), first(playback.port, 'ready')]);
    const bench = new AudioWorkletNode(context, 'dsp-bench', {
      numberOfInputs: 0, numberOfOutputs: 1, processorOptions: { module },
    });
    bench.connect(context.destination);
    await context.resume();
    const done = first(bench.port, 'result');
    bench.port.postMessage({ type: 'run', quanta: QUANTA });
    const { result } = await done;
    return result;
  } finally {
    await context.close();
  }
}

async function main() {
  const bytes = await (await fetch('audio.wasm', { cache: 'no-store' })).arrayBuffer();
  const module = await WebAssembly.compile(bytes);
  const results = [];
  for (const rate of RATES) results.push(await measure(rate, module));
  return { userAgent: navigator.userAgent, wasmBytes: bytes.byteLength, quanta: QUANTA, results };
}

main().then(
  (report) => { window.__dspBench = report; },
  (error) => { window.__dspBench = { error: String(error && error.stack || error) }; },
).finally(() => {
  document.getElementById('result').textContent = JSON.stringify(window.__dspBench, null, 2);
});
