//! The browser's audio graph: the AudioContext, `audio.wasm`, the two worklet nodes and the
//! microphone.
//!
//! ```text
//! microphone ─► MediaStreamSource ─► 'capture-processor'   (port: frames, VAD, level)
//!                                     'playback-processor' ─► destination (port: chunks in, reports out)
//! ```
//!
//! The context runs at the device's default rate (Firefox refuses a microphone in a context at
//! another rate; the worklets resample in Rust). Only tests may ask for a rate, with
//! `?sampleRate=N` in the page URL, to cover 48 kHz where the default is 44.1 kHz.

use std::cell::RefCell;

use futures_util::FutureExt;
use futures_util::future::{LocalBoxFuture, Shared};
use js_sys::{ArrayBuffer, Object, Reflect, WebAssembly};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    AudioContext, AudioContextLatencyCategory, AudioContextOptions, AudioWorkletNode,
    AudioWorkletNodeOptions, ChannelCountMode, MediaStream, MediaStreamAudioSourceNode,
    MediaStreamConstraints, MediaTrackConstraints, RequestCache, RequestInit,
};

use crate::errors::ClientError;

/// Where the page finds the DSP module (copied next to `index.html` by the build).
const AUDIO_WASM_URL: &str = "audio.wasm";
/// Where the page finds the worklet processors.
const WORKLETS_URL: &str = "worklets.js";
/// The processor names `worklets.js` registers.
const CAPTURE_PROCESSOR: &str = "capture-processor";
const PLAYBACK_PROCESSOR: &str = "playback-processor";
/// The test-only URL parameter that asks for a context rate.
const SAMPLE_RATE_PARAM: &str = "sampleRate";
/// Rates a test may ask for; anything else falls back to the default.
const ASKABLE_RATES_HZ: std::ops::RangeInclusive<f32> = 8_000.0..=192_000.0;

/// `audio.wasm`, compiled once per page on the main thread.
#[derive(Debug, Clone)]
pub(crate) struct DspModule {
    /// The compiled module, handed to both worklets.
    module: WebAssembly::Module,
    /// The raw bytes, for browsers that cannot clone a Module into a worklet.
    bytes: ArrayBuffer,
}

type DspLoad = Shared<LocalBoxFuture<'static, Result<DspModule, ClientError>>>;

thread_local! {
    /// The one load of `audio.wasm` (started when the page mounts, awaited on Start).
    static DSP: RefCell<Option<DspLoad>> = const { RefCell::new(None) };
}

/// Fetches and compiles `audio.wasm` once; every call shares that one load. Called early (when
/// the page mounts) so Start does not wait for it. A failed load is retried on the next call.
pub(crate) async fn dsp_module() -> Result<DspModule, ClientError> {
    let load = DSP.with_borrow_mut(|slot| slot.get_or_insert_with(start_dsp_load).clone());
    let result = load.await;
    if result.is_err() {
        DSP.with_borrow_mut(|slot| *slot = None);
    }
    result
}

fn start_dsp_load() -> DspLoad {
    async {
        let bytes = fetch_bytes(AUDIO_WASM_URL)
            .await
            .map_err(|error| ClientError::AudioProcessor(describe(&error)))?;
        let module = JsFuture::from(WebAssembly::compile(&bytes))
            .await
            .map_err(|error| ClientError::AudioProcessor(describe(&error)))?;
        Ok(DspModule {
            module: module.unchecked_into(),
            bytes: bytes.unchecked_into(),
        })
    }
    .boxed_local()
    .shared()
}

/// GETs `url`, revalidating with the server (files keep their names across deployments, so a
/// cached copy could be stale).
pub(crate) async fn fetch_fresh(url: &str) -> Result<web_sys::Response, JsValue> {
    let window = web_sys::window().ok_or_else(|| JsValue::from_str("no window"))?;
    let init = RequestInit::new();
    init.set_cache(RequestCache::NoCache);
    Ok(JsFuture::from(window.fetch_with_str_and_init(url, &init))
        .await?
        .unchecked_into())
}

/// GETs `url` as an ArrayBuffer (see [`fetch_fresh`]).
async fn fetch_bytes(url: &str) -> Result<JsValue, JsValue> {
    let response = fetch_fresh(url).await?;
    if !response.ok() {
        return Err(JsValue::from_str(&format!(
            "{url}: HTTP {}",
            response.status()
        )));
    }
    JsFuture::from(response.array_buffer()?).await
}

/// Creates the AudioContext. Call it synchronously inside the click handler: Safari (and
/// Chrome's autoplay policy) only let a context start from a user gesture.
pub(crate) fn create_context() -> Result<AudioContext, ClientError> {
    let options = AudioContextOptions::new();
    options
        .set_latency_hint_audio_context_latency_category(AudioContextLatencyCategory::Interactive);
    if let Some(rate) = asked_sample_rate() {
        options.set_sample_rate(rate);
    }
    let context = AudioContext::new_with_context_options(&options)
        .map_err(|error| ClientError::AudioUnavailable(describe(&error)))?;
    // Resuming is also gesture-bound; the promise settles later.
    let _ = context.resume();
    Ok(context)
}

/// The test-only `?sampleRate=N` of the page URL.
fn asked_sample_rate() -> Option<f32> {
    let search = web_sys::window()?.location().search().ok()?;
    let params = web_sys::UrlSearchParams::new_with_str(&search).ok()?;
    let rate: f32 = params.get(SAMPLE_RATE_PARAM)?.parse().ok()?;
    ASKABLE_RATES_HZ.contains(&rate).then_some(rate)
}

/// Loads `worklets.js` into the context's AudioWorklet.
pub(crate) async fn load_worklets(context: &AudioContext) -> Result<(), ClientError> {
    let worklet = context
        .audio_worklet()
        .map_err(|error| ClientError::AudioUnavailable(describe(&error)))?;
    let added = worklet
        .add_module(WORKLETS_URL)
        .map_err(|error| ClientError::AudioProcessor(describe(&error)))?;
    JsFuture::from(added)
        .await
        .map_err(|error| ClientError::AudioProcessor(describe(&error)))?;
    Ok(())
}

/// The capture node: one mono input (the browser down-mixes a stereo microphone), one silent
/// output to the destination so every engine keeps it running.
pub(crate) fn capture_node(
    context: &AudioContext,
    dsp: &DspModule,
) -> Result<AudioWorkletNode, ClientError> {
    let options = AudioWorkletNodeOptions::new();
    options.set_number_of_inputs(1);
    options.set_number_of_outputs(1);
    options.set_channel_count(1);
    options.set_channel_count_mode(ChannelCountMode::Explicit);
    let node = worklet_node(context, CAPTURE_PROCESSOR, &options, dsp)?;
    node.connect_with_audio_node(&context.destination())
        .map_err(|error| ClientError::AudioUnavailable(describe(&error)))?;
    Ok(node)
}

/// The playback node: no input, one mono output to the speakers.
pub(crate) fn playback_node(
    context: &AudioContext,
    dsp: &DspModule,
) -> Result<AudioWorkletNode, ClientError> {
    let options = AudioWorkletNodeOptions::new();
    options.set_number_of_inputs(0);
    options.set_number_of_outputs(1);
    options.set_output_channel_count(&js_sys::Array::of1(&JsValue::from(1)));
    let node = worklet_node(context, PLAYBACK_PROCESSOR, &options, dsp)?;
    node.connect_with_audio_node(&context.destination())
        .map_err(|error| ClientError::AudioUnavailable(describe(&error)))?;
    Ok(node)
}

/// Creates a worklet node that gets `audio.wasm` as a Module, or as bytes where the browser
/// cannot clone a Module into the worklet (DataCloneError, seen in some Safari versions).
fn worklet_node(
    context: &AudioContext,
    processor: &str,
    options: &AudioWorkletNodeOptions,
    dsp: &DspModule,
) -> Result<AudioWorkletNode, ClientError> {
    let with = |key: &str, value: &JsValue| -> Result<AudioWorkletNode, JsValue> {
        let processor_options = Object::new();
        Reflect::set(&processor_options, &JsValue::from_str(key), value)?;
        options.set_processor_options(Some(&processor_options));
        AudioWorkletNode::new_with_options(context, processor, options)
    };
    with("module", &dsp.module)
        .or_else(|_| with("bytes", &dsp.bytes.slice(0)))
        .map_err(|error| ClientError::AudioProcessor(describe(&error)))
}

/// Asks for the microphone with the browser's echo cancellation, noise suppression and
/// automatic gain control.
pub(crate) async fn open_microphone() -> Result<MediaStream, ClientError> {
    let unavailable = |what: &str| ClientError::MicrophoneUnavailable(what.to_owned());
    let devices = web_sys::window()
        .ok_or_else(|| unavailable("no window"))?
        .navigator()
        .media_devices()
        .map_err(|_| unavailable("this page is not a secure context"))?;
    let track = MediaTrackConstraints::new();
    track.set_echo_cancellation_bool(true);
    track.set_noise_suppression_bool(true);
    track.set_auto_gain_control_bool(true);
    track.set_channel_count_i32(1);
    let constraints = MediaStreamConstraints::new();
    constraints.set_audio_media_track_constraints(&track);
    let request = devices
        .get_user_media_with_constraints(&constraints)
        .map_err(|error| ClientError::MicrophoneUnavailable(describe(&error)))?;
    let stream = JsFuture::from(request).await.map_err(|error| {
        match error.dyn_ref::<web_sys::DomException>().map(|e| e.name()) {
            Some(name) if name == "NotAllowedError" || name == "SecurityError" => {
                ClientError::MicrophoneDenied
            }
            _ => ClientError::MicrophoneUnavailable(describe(&error)),
        }
    })?;
    Ok(stream.unchecked_into())
}

/// Whether the browser cancels echo on the microphone it gave: `Some(false)` when it ignored
/// the request (then the answer played on speakers reaches the VAD), `None` when it does not
/// say.
pub(crate) fn echo_cancellation(stream: &MediaStream) -> Option<bool> {
    stream
        .get_audio_tracks()
        .iter()
        .find_map(|track| track.dyn_into::<web_sys::MediaStreamTrack>().ok())?
        .get_settings()
        .get_echo_cancellation()
}

/// Connects the microphone to the capture node.
pub(crate) fn connect_microphone(
    context: &AudioContext,
    stream: &MediaStream,
    capture: &AudioWorkletNode,
) -> Result<MediaStreamAudioSourceNode, ClientError> {
    let source = context
        .create_media_stream_source(stream)
        .map_err(|error| ClientError::AudioUnavailable(describe(&error)))?;
    source
        .connect_with_audio_node(capture)
        .map_err(|error| ClientError::AudioUnavailable(describe(&error)))?;
    Ok(source)
}

/// Stops every track of the stream (the browser's "recording" indicator goes off).
pub(crate) fn stop_microphone(stream: &MediaStream) {
    for track in stream.get_tracks().iter() {
        if let Ok(track) = track.dyn_into::<web_sys::MediaStreamTrack>() {
            track.stop();
        }
    }
}

/// A readable sentence for a JS exception or rejection value.
pub(crate) fn describe(error: &JsValue) -> String {
    if let Some(exception) = error.dyn_ref::<web_sys::DomException>() {
        return format!("{}: {}", exception.name(), exception.message());
    }
    if let Some(error) = error.dyn_ref::<js_sys::Error>() {
        return String::from(error.message());
    }
    error
        .as_string()
        .unwrap_or_else(|| "unknown error".to_owned())
}
