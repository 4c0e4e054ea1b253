//! Splits a streamed LLM answer into speakable segments for text-to-speech.
//!
//! The proxy streams Chat Completions deltas into the Speech API. Sending every delta would
//! mean one TTS request per word and a choppy voice; waiting for the whole answer adds seconds
//! of silence. [`SentenceSplitter`] buffers the deltas and hands back segments:
//!
//! - the **first** segment as soon as a clause is complete and long enough to sound natural
//!   ([`SplitterConfig::first_clause_min_chars`]), so audio starts early;
//! - after that, **whole sentences**, so each TTS request gets natural prosody;
//! - paragraph breaks, list items, headings, blockquotes, table rows and horizontal rules
//!   always end a segment; fenced code blocks are dropped (code read aloud is noise);
//! - a run-on sentence is cut at its last clause boundary or space once it reaches
//!   [`SplitterConfig::max_segment_chars`], so TTS never waits for a period that never comes.
//!
//! Each segment goes through the same cleaning as [`speakable`], which removes what a voice
//! should not read (markdown markers, link targets, emoji) and collapses whitespace. A segment
//! with nothing left to say is not emitted.
//!
//! # Guarantees
//!
//! - **Delta boundaries never change the output.** Deltas can split text anywhere (mid-word,
//!   `3.` then `14`, mid-URL, inside a code fence marker). Every decision that depends on later
//!   text waits for it: a delta ending in `.` is held until the next char tells a decimal
//!   (`3.14`) from a sentence end (`3. `). [`SentenceSplitter::finish`] decides what is left
//!   with "end of text" as the lookahead.
//! - **Linear time.** Each char is examined once. Decisions look back only at the current word
//!   (and only when it is short enough to be an abbreviation) and ahead through a small bounded
//!   window. Text that has been emitted or dropped leaves the buffer after every `push`.
//!
//! Where a sentence ends (abbreviations, initials, ellipses, quotes, CJK punctuation) is
//! documented with the splitter, in `sentences`.
//!
//! The heuristics are English-centric; lengths are counted in chars for every script.
//!
//! # Layout
//!
//! - `sentences`: [`SentenceSplitter`], its [`SplitterConfig`] and the sentence and clause
//!   rules;
//! - `markdown`: the block markup at the start of a line (headings, lists, blockquotes, tables,
//!   rules, code fences), shared by the splitter and the cleaner so both read lines the same
//!   way;
//! - `clean`: `speakable`, which removes what a voice should not read from a segment;
//! - `emoji`: recognising emoji, which are never spoken.

mod clean;
mod emoji;
mod markdown;
mod sentences;

pub(crate) use sentences::{DEFAULT_FIRST_CLAUSE_MIN_CHARS, SentenceSplitter, SplitterConfig};
