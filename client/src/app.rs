//! The page: one Start/Stop control, the connection and pipeline state, the microphone level,
//! the conversation with each turn's latency waterfall, errors, a banner when the proxy runs
//! on its simulator, and a headphones advice when the browser cancels no echo.
//!
//! State lives in [`Ui`] ([`crate::ui_state`]), a `Copy` bundle of signals in the context; the
//! engine writes it, the components read it. Elements tests look for carry `data-testid`.

use leptos::prelude::*;
use protocol::{TurnId, Waterfall};
use wasm_bindgen::JsValue;
use wasm_bindgen::closure::Closure;

use crate::conversation::{Answer, Conversation, UserText};
use crate::engine;
use crate::ui_state::{Run, Ui};
use crate::waterfall::{format_ms, steps};

/// Name of the test-facing global: `window.__voiceTest()` returns the probe as JSON text.
const PROBE_GLOBAL: &str = "__voiceTest";

/// The quietest level the meter shows, dBFS.
const METER_FLOOR_DBFS: f32 = -60.0;

/// Mounts the app on `<body>`.
pub fn start() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(App);
}

fn ui() -> Ui {
    expect_context::<Ui>()
}

/// The whole page.
#[component]
fn App() -> impl IntoView {
    provide_context(Ui::new());
    expose_probe();
    // Fetch and compile audio.wasm now, so Start does not wait for it (a failure is retried
    // and reported on Start).
    leptos::task::spawn_local(async {
        let _ = crate::audio::dsp_module().await;
    });
    view! {
        <main class="app">
            <header class="top">
                <h1>"Voice agent"</h1>
                <StatusBar/>
            </header>
            <SimulatorBanner/>
            <EchoNote/>
            <Controls/>
            <ErrorList/>
            <ConversationView/>
        </main>
    }
}

/// Publishes `window.__voiceTest()` for browser tests (see [`crate::probe`]).
fn expose_probe() {
    let Some(window) = web_sys::window() else {
        return;
    };
    let probe = Closure::<dyn Fn() -> String>::new(engine::probe_json);
    let _ = js_sys::Reflect::set(&window, &JsValue::from_str(PROBE_GLOBAL), probe.as_ref());
    // Lives as long as the page.
    probe.forget();
}

/// Connection and pipeline state, announced to screen readers as they change.
#[component]
fn StatusBar() -> impl IntoView {
    let ui = ui();
    let connection = move || ui.connection.get();
    let pipeline = move || ui.pipeline.get();
    let rate = move || {
        ui.sample_rate
            .get()
            .map(|rate| format!("{:.1} kHz", rate / 1000.0))
    };
    view! {
        <div class="status" role="status" aria-live="polite" data-testid="status">
            <span class="badge connection" data-testid="connection" data-state=move || connection().key()>
                {move || connection().label()}
            </span>
            <span class="badge pipeline" data-testid="pipeline" data-state=move || pipeline().key()>
                {move || pipeline().label()}
            </span>
            <span class="rate" title="Audio device sample rate">{rate}</span>
        </div>
    }
}

/// The banner shown when the proxy answers from its built-in OpenAI simulator.
#[component]
fn SimulatorBanner() -> impl IntoView {
    let ui = ui();
    view! {
        <Show when=move || ui.simulated.get()>
            <p class="banner" role="note" data-testid="simulator-banner">
                <strong>"Simulator. "</strong>
                "The server has no OpenAI key, so transcripts, answers and voices come from its built-in simulator."
            </p>
        </Show>
    }
}

/// Advice shown when the browser does not cancel echo on the microphone: on speakers the
/// answer would reach the VAD and could interrupt itself.
#[component]
fn EchoNote() -> impl IntoView {
    let ui = ui();
    view! {
        <Show when=move || ui.echo_cancellation.get() == Some(false)>
            <p class="banner" role="note" data-testid="echo-note">
                <strong>"Headphones recommended. "</strong>
                "This browser is not cancelling echo on your microphone, so on speakers the assistant may hear itself and stop talking."
            </p>
        </Show>
    }
}

/// The Start/Stop button and the microphone level.
#[component]
fn Controls() -> impl IntoView {
    let ui = ui();
    let on_click = move |_| match ui.running.get_untracked() {
        Run::Stopped => engine::start(ui),
        Run::Starting | Run::Running => engine::stop(),
    };
    let label = move || match ui.running.get() {
        Run::Stopped => "Start",
        Run::Starting => "Cancel",
        Run::Running => "Stop",
    };
    let hint = move || match ui.running.get() {
        Run::Stopped => "Press Start, allow the microphone, and talk.",
        Run::Starting => "Setting up the microphone and the connection…",
        Run::Running => "Talk any time — speaking over the answer interrupts it.",
    };
    view! {
        <section class="controls">
            <button
                class="start-stop"
                class:running=move || ui.running.get() != Run::Stopped
                data-testid="start-stop"
                aria-pressed=move || (ui.running.get() != Run::Stopped).to_string()
                on:click=on_click
            >
                {label}
            </button>
            <div class="mic">
                <LevelMeter/>
                <p class="hint">{hint}</p>
            </div>
        </section>
    }
}

/// The microphone level as a bar, green while the VAD hears speech.
#[component]
fn LevelMeter() -> impl IntoView {
    let ui = ui();
    let dbfs = move || ui.level.get().dbfs.max(METER_FLOOR_DBFS);
    let percent = move || (1.0 - dbfs() / METER_FLOOR_DBFS) * 100.0;
    view! {
        <div
            class="meter"
            role="meter"
            aria-label="Microphone level"
            aria-valuemin=METER_FLOOR_DBFS
            aria-valuemax="0"
            aria-valuenow=move || format!("{:.0}", dbfs())
            aria-valuetext=move || format!("{:.0} dB", dbfs())
            data-testid="mic-level"
        >
            <div
                class="meter-fill"
                class:speaking=move || ui.level.get().speaking
                style:width=move || format!("{:.1}%", percent())
            ></div>
        </div>
    }
}

/// Errors, newest last, each with its stage in plain words.
#[component]
fn ErrorList() -> impl IntoView {
    let ui = ui();
    let errors = move || {
        ui.errors
            .get()
            .into_iter()
            .map(|error| {
                view! {
                    <li class="error" role="alert" data-testid="error" data-stage=error.stage_key>
                        <strong class="stage">{error.stage}</strong>
                        " — "
                        {error.message}
                        " "
                        <span class="hint">{error.hint}</span>
                    </li>
                }
            })
            .collect_view()
    };
    view! {
        <Show when=move || ui.errors.with(|errors| !errors.is_empty())>
            <section class="errors" aria-label="Errors">
                <ul>{errors}</ul>
                <button class="dismiss" on:click=move |_| ui.errors.set(Vec::new())>
                    "Dismiss"
                </button>
            </section>
        </Show>
    }
}

/// The conversation, in turn order.
#[component]
fn ConversationView() -> impl IntoView {
    let ui = ui();
    let turn_ids = move || ui.conversation.with(Conversation::turn_ids);
    view! {
        <section class="conversation" role="log" aria-label="Conversation" data-testid="conversation">
            <Show when=move || ui.conversation.with(|c| c.turns().is_empty())>
                <p class="empty">"The conversation appears here."</p>
            </Show>
            <For each=turn_ids key=|turn_id| *turn_id children=move |turn_id| view! { <TurnView turn_id/> }/>
        </section>
    }
}

/// One turn: the user's words, the answer, the latency waterfall.
#[component]
fn TurnView(
    /// The proxy's number of the turn to show.
    turn_id: TurnId,
) -> impl IntoView {
    let ui = ui();
    let user = Memo::new(move |_| {
        ui.conversation
            .with(|c| c.turn(turn_id).map(|turn| turn.user.clone()))
            .unwrap_or_default()
    });
    let answer = Memo::new(move |_| {
        ui.conversation
            .with(|c| c.turn(turn_id).and_then(|turn| turn.answer.clone()))
    });
    let waterfall = Memo::new(move |_| {
        ui.conversation
            .with(|c| c.turn(turn_id).and_then(|turn| turn.waterfall.clone()))
    });
    view! {
        <article class="turn" data-testid="turn" data-turn-id=turn_id.0>
            <Show when=move || user.with(|user| !user.text.is_empty())>
                <UserBubble user=user/>
            </Show>
            {move || answer.get().map(|answer| view! { <AnswerBubble answer/> })}
            {move || waterfall.get().map(|waterfall| view! { <WaterfallView waterfall/> })}
        </article>
    }
}

/// What the user said; faded while the transcript is still partial.
#[component]
fn UserBubble(
    /// The user's words of the turn.
    user: Memo<UserText>,
) -> impl IntoView {
    view! {
        <div class="bubble user" class:partial=move || !user.get().is_final>
            <span class="who">"You"</span>
            <p data-testid="user-text" data-final=move || user.get().is_final.to_string()>
                {move || user.get().text}
            </p>
        </div>
    }
}

/// The assistant's answer; an interrupted one shows where the user cut in.
#[component]
fn AnswerBubble(
    /// The answer to show.
    answer: Answer,
) -> impl IntoView {
    let (heard, unheard) = answer.heard_split();
    let (heard, unheard) = (heard.to_owned(), unheard.to_owned());
    let interrupted = answer.is_interrupted();
    let status = match &answer.status {
        crate::conversation::AnswerStatus::Streaming => "streaming",
        crate::conversation::AnswerStatus::Complete => "complete",
        crate::conversation::AnswerStatus::Interrupted { .. } => "interrupted",
    };
    view! {
        <div class="bubble assistant" class:interrupted=interrupted>
            <span class="who">"Assistant"</span>
            <p data-testid="assistant-text" data-response-id=answer.response_id.0 data-status=status>
                <span class="heard">{heard}</span>
                {interrupted
                    .then(|| {
                        view! {
                            <span class="cut" data-testid="interrupted-marker" title="You interrupted here">
                                "✂ interrupted"
                            </span>
                            <span class="unheard" aria-label="not heard">{unheard}</span>
                        }
                    })}
            </p>
        </div>
    }
}

/// The latency waterfall of a turn: one bar per pipeline step.
#[component]
fn WaterfallView(
    /// The turn's `metrics` waterfall.
    waterfall: Waterfall,
) -> impl IntoView {
    let steps = steps(&waterfall);
    let summary = match waterfall.first_audio_sent_ms {
        Some(ms) => format!("Latency: first audio after {}", format_ms(ms)),
        None => "Latency".to_owned(),
    };
    view! {
        <details class="waterfall" data-testid="waterfall" open>
            <summary>{summary}</summary>
            <ol>
                {steps
                    .into_iter()
                    .map(|step| {
                        view! {
                            <li>
                                <span class="step">{step.label}</span>
                                <span class="track">
                                    <span class="bar" style:width=format!("{:.1}%", step.fraction * 100.0)></span>
                                </span>
                                <span class="ms">{format_ms(step.at_ms)}</span>
                            </li>
                        }
                    })
                    .collect_view()}
            </ol>
        </details>
    }
}
