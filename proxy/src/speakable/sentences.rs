//! Where a streamed answer is cut into segments: [`SentenceSplitter`], its [`SplitterConfig`],
//! and the rules for sentence ends and clause boundaries.
//!
//! # Sentence ends
//!
//! `.` `!` `?` `…` (runs such as `?!` or `...` included), then optional closing quotes,
//! brackets, emphasis markers or emoji, then whitespace. CJK `。！？` need no whitespace.
//! A `.` followed by whitespace is *not* a sentence end after:
//!
//! - titles and similar abbreviations that never end a sentence (`Mr.`, `Dr.`, `e.g.`, `vs.`, …);
//! - initials (`J. R. R. Tolkien`, `John F. Kennedy`). The price: "plan B. Then" is not split;
//! - `No.`, `Fig.`, `p.`, month abbreviations and the like, when a digit follows (`No. 5`);
//! - `etc.`, `a.m.`, `U.S.`, `Inc.` and other abbreviations that may end a sentence, when the
//!   next word starts with a lowercase letter; the same rule holds for an ellipsis (`Well...
//!   maybe`) and for a terminator inside closing quotes (`"Why?" she asked.`).
//!
//! Decimals, versions, times, URLs and e-mail addresses need no special case: their `.` `:`
//! `?` are never followed by whitespace (`3.14`, `v2.0.1`, `10:30`, `a.b?c=d`), and a trailing
//! `.` after a URL is a real sentence end.

use std::iter::Peekable;
use std::str::CharIndices;

use super::clean::clean_segment;
use super::emoji::is_emoji_part;
use super::markdown::{
    Fence, LinePrefix, MAX_MARKER_RUN_CHARS, classify_line_prefix, closes_fence,
};

/// Default for [`SplitterConfig::first_clause_min_chars`]: 4 chars.
///
/// Why: the answer's first audio waits for its first clause, so it should be as short as
/// reads naturally: an opening interjection with its own intonation ("Sure," "Well," "Yes,")
/// qualifies, a bare "No," or "I," does not and runs on to the next boundary. A short first
/// segment leaves no gap behind it: the next segment's Speech request goes out as soon as its
/// text is complete, while the first one is still being synthesized, and an LLM writes far
/// faster than speech plays. Measured with the latency benchmark (BENCHMARKS.md) against the
/// earlier 20 (about four words): first audio ~130 ms sooner at 60 tokens/s, no underrun.
pub(crate) const DEFAULT_FIRST_CLAUSE_MIN_CHARS: usize = 4;

/// Default for [`SplitterConfig::first_segment_max_chars`]: 100 chars.
///
/// Why: ~25 tokens, i.e. 0.25-0.5 s of streaming. Without a comma by then, cutting at a space
/// (slightly unnatural) beats keeping the user waiting for the end of a long first sentence.
pub(super) const DEFAULT_FIRST_SEGMENT_MAX_CHARS: usize = 100;

/// Default for [`SplitterConfig::max_segment_chars`]: 250 chars.
///
/// Why: well above a typical spoken sentence (80-150 chars) so normal sentences are never cut,
/// yet it bounds the wait for a run-on sentence to ~60 tokens, and stays far below the Speech
/// API's 4096-char input limit.
pub(super) const DEFAULT_MAX_SEGMENT_CHARS: usize = 250;

/// How many whitespace and opening-punctuation chars we look through after an ambiguous
/// terminator (`etc.`, `...`) to find the next word. More spaces than this is not a sentence
/// that continues, and the bound keeps held text small.
const NEXT_WORD_LOOKAHEAD_CHARS: usize = 16;

/// Longest word (in bytes) checked against the abbreviation lists. The longest listed
/// abbreviation is 6 bytes; anything longer ends a sentence normally.
const MAX_ABBREVIATION_BYTES: usize = 16;

/// Titles and Latin abbreviations that practically never end a sentence: a `.` after them is
/// never a boundary. Case-sensitive on purpose (`no.` vs `No.` differ).
const ABBREVIATIONS_NEVER_FINAL: &[&str] = &[
    "Mr", "Mrs", "Ms", "Mx", "Dr", "Prof", "St", "Mt", "Ft", "Sgt", "Capt", "Lt", "Col", "Gen",
    "Rev", "Hon", "Gov", "Sen", "Rep", "Pres", "Messrs", "Mme", "Mlle", "vs", "approx", "cf",
    "viz", "ca", "incl", "esp", "Dept", "Univ", "Ave", "Blvd",
];

/// Abbreviations that precede a number (`No. 5`, `Fig. 2`, `Jan. 3`): not a boundary when a
/// digit follows, a boundary otherwise ("I said No. Then…").
const ABBREVIATIONS_BEFORE_NUMBER: &[&str] = &[
    "No", "Nos", "Fig", "Figs", "Eq", "Eqs", "Vol", "vol", "Ch", "ch", "Art", "Sec", "Pt", "p",
    "pp", "Jan", "Feb", "Mar", "Apr", "Jun", "Jul", "Aug", "Sep", "Sept", "Oct", "Nov", "Dec",
];

/// Abbreviations that often end a sentence: a boundary unless the next word is lowercase
/// ("apples, etc. are fruit" vs "apples, etc. Then").
const ABBREVIATIONS_MAYBE_FINAL: &[&str] = &[
    "etc", "a.m", "p.m", "A.M", "P.M", "U.S", "U.K", "U.N", "E.U", "U.S.A", "Inc", "Ltd", "Co",
    "Corp", "Jr", "Sr", "Bros", "Ph.D", "LLC",
];

/// Tuning for [`SentenceSplitter`]. All lengths count Unicode scalar values (`char`s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SplitterConfig {
    /// The first segment of a response is cut at the first clause boundary (`,` `;` `:`
    /// followed by whitespace, `—`, a spaced ` - ` or ` – `, CJK `，；：`) or sentence end at
    /// which it has at least this many speakable chars.
    pub first_clause_min_chars: usize,
    /// The first segment is cut anyway (last clause boundary, else last space) when it reaches
    /// this many chars without an acceptable boundary.
    pub first_segment_max_chars: usize,
    /// Later segments are whole sentences, but a sentence reaching this many chars is cut at
    /// its last clause boundary (if past the middle) or last space.
    pub max_segment_chars: usize,
}

impl Default for SplitterConfig {
    fn default() -> Self {
        Self {
            first_clause_min_chars: DEFAULT_FIRST_CLAUSE_MIN_CHARS,
            first_segment_max_chars: DEFAULT_FIRST_SEGMENT_MAX_CHARS,
            max_segment_chars: DEFAULT_MAX_SEGMENT_CHARS,
        }
    }
}

/// Incremental splitter for one streamed response: [`push`](Self::push) deltas as they
/// arrive, [`finish`](Self::finish) at the end. See the [module docs](super) for what ends a
/// segment, and the `sentences` module docs for where a sentence ends.
#[derive(Debug, Clone, Default)]
pub(crate) struct SentenceSplitter {
    config: SplitterConfig,
    /// Text received and not yet emitted or dropped; the byte indices in `state` point into it.
    pending: String,
    state: ScanState,
}

impl SentenceSplitter {
    /// A splitter at the start of a response.
    #[must_use]
    pub(crate) fn new(config: SplitterConfig) -> Self {
        Self {
            config,
            pending: String::new(),
            state: ScanState::default(),
        }
    }

    /// Feeds the next LLM delta and appends the segments that became complete (usually none
    /// or one) to `out`, already cleaned by the rules of [`speakable`](super::speakable).
    /// `out` is not cleared, so the caller can reuse one `Vec`.
    pub(crate) fn push(&mut self, delta: &str, out: &mut Vec<String>) {
        self.pending.push_str(delta);
        self.scan(false, out);
        self.compact();
    }

    /// Ends the response: decides everything still held and appends the remainder as a last
    /// segment if it has anything speakable (an unclosed code fence is dropped). The splitter
    /// is then reset, ready for the next response (whose first segment is early again).
    pub(crate) fn finish(&mut self, out: &mut Vec<String>) {
        self.scan(true, out);
        if self.state.fence.is_none() {
            self.emit_here(false, out);
        }
        self.reset();
    }

    /// Discards everything buffered and starts over, e.g. when the user interrupts the answer.
    pub(crate) fn reset(&mut self) {
        self.pending.clear();
        self.state = ScanState::default();
    }

    /// Advances through the buffer as far as the text allows decisions. With `at_end`, the end
    /// of the buffer is the end of the text, so nothing waits.
    fn scan(&mut self, at_end: bool, out: &mut Vec<String>) {
        loop {
            if self.state.fence.is_some() {
                if self.fence_step(at_end) {
                    continue;
                }
                break;
            }
            self.enforce_length_limit(out);
            if self.state.at_line_start {
                if self.line_start_step(at_end, out) {
                    continue;
                }
                break;
            }
            let Some(current) = self.pending[self.state.scan..].chars().next() else {
                break;
            };
            match self.char_step(current, at_end) {
                Step::NeedMore => break,
                Step::Consume(end) => self.consume_to(end),
                Step::Clause(end) => {
                    self.consume_to(end);
                    self.boundary(BoundaryKind::Clause, out);
                }
                Step::SentenceEnd(end) => {
                    self.consume_to(end);
                    self.boundary(BoundaryKind::Sentence, out);
                }
                Step::LineEnd => {
                    self.emit_here(false, out);
                    self.consume_to(self.state.scan + 1);
                }
            }
        }
    }

    /// Decides what the char at `state.scan` means. Never changes state.
    fn char_step(&self, current: char, at_end: bool) -> Step {
        let after = self.state.scan + current.len_utf8();
        if current == '\n' {
            return if self.state.line_kind == LineKind::Prose {
                Step::Consume(after)
            } else {
                Step::LineEnd
            };
        }
        // Headings, table rows and rules are one segment each: no boundaries inside.
        if self.state.line_kind != LineKind::Prose {
            return Step::Consume(after);
        }
        match current {
            _ if is_sentence_terminator(current) => self.terminator_step(at_end),
            ',' | ';' | ':' => self.clause_if_space_follows(after, at_end),
            '，' | '；' | '：' | '—' => Step::Clause(after),
            '-' | '–' if self.state.prev_char.is_some_and(char::is_whitespace) => {
                self.clause_if_space_follows(after, at_end)
            }
            _ => Step::Consume(after),
        }
    }

    fn clause_if_space_follows(&self, after: usize, at_end: bool) -> Step {
        match self.pending[after..].chars().next() {
            Some(next) if next.is_whitespace() => Step::Clause(after),
            Some(_) => Step::Consume(after),
            None if at_end => Step::Consume(after),
            None => Step::NeedMore,
        }
    }

    /// Decides a run of sentence punctuation starting at `state.scan`.
    fn terminator_step(&self, at_end: bool) -> Step {
        let start = self.state.scan;
        let mut chars = self.pending[start..].char_indices().peekable();
        let mut run = TerminatorRun::default();
        let mut end = 0;
        let mut taken = 0;
        while let Some(&(offset, c)) = chars.peek() {
            if taken == MAX_MARKER_RUN_CHARS || !is_sentence_terminator(c) {
                break;
            }
            run.add(c);
            end = offset + c.len_utf8();
            taken += 1;
            chars.next();
        }
        taken = 0;
        while let Some(&(offset, c)) = chars.peek() {
            if taken == MAX_MARKER_RUN_CHARS || !is_closer(c) {
                break;
            }
            run.closed_by_quote |= is_closing_quote(c);
            end = offset + c.len_utf8();
            taken += 1;
            chars.next();
        }
        let end = start + end;
        let next = match chars.peek() {
            Some(&(_, c)) => Some(c),
            None if at_end => None,
            // The run or its closers may continue in the next delta.
            None => return Step::NeedMore,
        };
        if run.cjk {
            return Step::SentenceEnd(end);
        }
        let Some(next) = next else {
            return Step::SentenceEnd(end);
        };
        if !next.is_whitespace() {
            // `3.14`, `a.b`, `e.g.,`, `?c=d`: not an end.
            return Step::Consume(end);
        }
        let mut rule = if run.exclamation_or_question {
            FollowRule::Always
        } else if run.is_ellipsis() {
            FollowRule::UnlessLowercaseFollows
        } else {
            self.rule_for_word_before_period()
        };
        if rule == FollowRule::Always && run.closed_by_quote {
            rule = FollowRule::UnlessLowercaseFollows;
        }
        let continues = match rule {
            FollowRule::Always => false,
            FollowRule::Never => true,
            FollowRule::UnlessLowercaseFollows | FollowRule::UnlessDigitFollows => {
                match next_word_start(chars, at_end) {
                    NextWord::Unknown => return Step::NeedMore,
                    NextWord::Absent => false,
                    NextWord::StartsWith(first) if rule == FollowRule::UnlessDigitFollows => {
                        first.is_ascii_digit()
                    }
                    NextWord::StartsWith(first) => first.is_lowercase(),
                }
            }
        };
        if continues {
            Step::Consume(end)
        } else {
            Step::SentenceEnd(end)
        }
    }

    /// Applies the abbreviation and initials rules to the word before a single `.`.
    fn rule_for_word_before_period(&self) -> FollowRule {
        let Some(word_start) = self.state.word_start else {
            return FollowRule::Always;
        };
        let word = &self.pending[word_start..self.state.scan];
        if word.len() > MAX_ABBREVIATION_BYTES {
            return FollowRule::Always;
        }
        rule_for_word(word)
    }

    /// Handles the start of a line: block markup ends the previous segment.
    /// Returns false when more text is needed to classify the line.
    fn line_start_step(&mut self, at_end: bool, out: &mut Vec<String>) -> bool {
        let rest = &self.pending.as_bytes()[self.state.scan..];
        let Some(prefix) = classify_line_prefix(rest, at_end) else {
            return false;
        };
        let line_start = self.state.scan;
        let after_quote_marker = self.state.after_quote_marker;
        self.state.at_line_start = false;
        self.state.after_quote_marker = false;
        match prefix {
            LinePrefix::Prose { .. } => {}
            // Fences inside blockquotes are not tracked: the text is spoken as prose.
            LinePrefix::Fence { .. } if after_quote_marker => {}
            LinePrefix::Blank => self.emit_here(true, out),
            LinePrefix::Fence { fence, .. } => {
                self.emit_here(true, out);
                self.state.fence = Some(OpenFence {
                    fence,
                    at_line_start: false,
                });
            }
            LinePrefix::Quote { content } => {
                self.emit_here(true, out);
                self.consume_to(line_start + content);
                // What follows `>` is classified again (nested quotes, lists, headings).
                self.state.at_line_start = true;
                self.state.after_quote_marker = true;
            }
            LinePrefix::Heading { content } => {
                self.emit_here(true, out);
                self.consume_to(line_start + content);
                self.state.line_kind = LineKind::Heading;
            }
            LinePrefix::TableRow => {
                self.emit_here(true, out);
                self.state.line_kind = LineKind::TableRow;
            }
            LinePrefix::Rule => {
                self.emit_here(true, out);
                self.state.line_kind = LineKind::Rule;
            }
            LinePrefix::Bullet { content } | LinePrefix::Numbered { content, .. } => {
                self.emit_here(true, out);
                // Skip the marker so `1.` is not read as a sentence end or `- ` as a dash.
                self.consume_to(line_start + content);
            }
        }
        true
    }

    /// Skips (drops) text inside a code fence. Returns false when waiting for more text or
    /// when nothing is left.
    fn fence_step(&mut self, at_end: bool) -> bool {
        let Some(mut open) = self.state.fence else {
            return false;
        };
        let rest = &self.pending.as_bytes()[self.state.scan..];
        if open.at_line_start {
            let Some(prefix) = classify_line_prefix(rest, at_end) else {
                return false;
            };
            match closes_fence(rest, prefix, open.fence, at_end) {
                None => return false,
                Some(true) => {
                    let line_len = rest
                        .iter()
                        .position(|&byte| byte == b'\n')
                        .map_or(rest.len(), |newline| newline + 1);
                    self.state.scan += line_len;
                    self.state.fence = None;
                    self.drop_consumed();
                    self.state.at_line_start = true;
                    return true;
                }
                Some(false) => open.at_line_start = false,
            }
        } else {
            match rest.iter().position(|&byte| byte == b'\n') {
                Some(newline) => {
                    self.state.scan += newline + 1;
                    open.at_line_start = true;
                }
                None if rest.is_empty() => return false,
                None => self.state.scan += rest.len(),
            }
        }
        self.state.fence = Some(open);
        self.drop_consumed();
        true
    }

    /// Cuts an overlong segment at its last clause boundary or space (see [`SplitterConfig`]).
    fn enforce_length_limit(&mut self, out: &mut Vec<String>) {
        loop {
            let limit = if self.state.emitted_any {
                self.config.max_segment_chars
            } else {
                self.config.first_segment_max_chars
            }
            .max(1);
            if self.state.segment_chars < limit {
                return;
            }
            // Offsets of 0 would emit nothing and never shrink the segment.
            let clause = self.state.last_clause.filter(|point| point.chars > 0);
            let space = self.state.last_space.filter(|point| point.chars > 0);
            let cut = clause
                .filter(|point| point.chars >= limit / 2)
                .or(space)
                .or(clause)
                .unwrap_or(CutPoint {
                    byte: self.state.scan,
                    chars: self.state.segment_chars,
                });
            self.emit_at(cut, false, out);
        }
    }

    /// A clause boundary or sentence end was just consumed.
    fn boundary(&mut self, kind: BoundaryKind, out: &mut Vec<String>) {
        let here = CutPoint {
            byte: self.state.scan,
            chars: self.state.segment_chars,
        };
        let emit = if self.state.emitted_any {
            kind == BoundaryKind::Sentence
        } else {
            self.first_segment_long_enough()
        };
        if emit {
            self.emit_here(false, out);
        } else {
            self.state.last_clause = Some(here);
        }
    }

    fn first_segment_long_enough(&self) -> bool {
        let min = self.config.first_clause_min_chars;
        // Cleaning only shortens text, so the raw count is a cheap first filter.
        self.state.segment_chars >= min
            && clean_segment(
                &self.pending[self.state.segment_start..self.state.scan],
                self.state.segment_starts_line,
            )
            .chars()
            .count()
                >= min
    }

    fn emit_here(&mut self, next_starts_line: bool, out: &mut Vec<String>) {
        let here = CutPoint {
            byte: self.state.scan,
            chars: self.state.segment_chars,
        };
        self.emit_at(here, next_starts_line, out);
    }

    /// Emits the segment up to `cut` (if it has anything to say) and starts the next one there.
    fn emit_at(&mut self, cut: CutPoint, next_starts_line: bool, out: &mut Vec<String>) {
        let state = &mut self.state;
        let spoken = clean_segment(
            &self.pending[state.segment_start..cut.byte],
            state.segment_starts_line,
        );
        if !spoken.is_empty() {
            out.push(spoken);
            state.emitted_any = true;
        }
        state.segment_start = cut.byte;
        state.segment_chars -= cut.chars;
        state.segment_starts_line = next_starts_line;
        state.last_clause = state.last_clause.and_then(|point| point.after(cut));
        state.last_space = state.last_space.and_then(|point| point.after(cut));
    }

    /// Forgets everything before `state.scan` (used inside code fences).
    fn drop_consumed(&mut self) {
        let state = &mut self.state;
        state.segment_start = state.scan;
        state.segment_chars = 0;
        state.segment_starts_line = true;
        state.last_clause = None;
        state.last_space = None;
        state.word_start = Some(state.scan);
        state.prev_char = Some('\n');
        state.line_kind = LineKind::Prose;
    }

    fn consume_to(&mut self, end: usize) {
        while self.state.scan < end {
            let Some(c) = self.pending[self.state.scan..].chars().next() else {
                return;
            };
            let state = &mut self.state;
            if c.is_whitespace() {
                state.last_space = Some(CutPoint {
                    byte: state.scan,
                    chars: state.segment_chars,
                });
            }
            state.scan += c.len_utf8();
            state.segment_chars += 1;
            // Abbreviations and initials are ASCII letters and dots; anything else (space,
            // bracket, quote, CJK text without spaces) starts a new candidate word.
            if !(c.is_ascii_alphanumeric() || c == '.') {
                state.word_start = Some(state.scan);
            }
            if c == '\n' {
                state.at_line_start = true;
                state.line_kind = LineKind::Prose;
            }
            state.prev_char = Some(c);
        }
    }

    /// Drops text that no later decision reads, shifting the indices. Only the current segment
    /// and a short current word are kept, so the buffer stays small.
    fn compact(&mut self) {
        let state = &mut self.state;
        let mut keep_from = state.segment_start;
        if let Some(word_start) = state.word_start
            && word_start < keep_from
        {
            if state.scan - word_start > MAX_ABBREVIATION_BYTES {
                // Too long to be an abbreviation now or later: no need to keep it.
                state.word_start = None;
            } else {
                keep_from = word_start;
            }
        }
        if keep_from == 0 {
            return;
        }
        self.pending.drain(..keep_from);
        state.scan -= keep_from;
        state.segment_start -= keep_from;
        if let Some(word_start) = &mut state.word_start {
            *word_start -= keep_from;
        }
        for point in [&mut state.last_clause, &mut state.last_space]
            .into_iter()
            .flatten()
        {
            point.byte -= keep_from;
        }
    }
}

/// Everything the scanner knows between pushes. Byte indices point into `pending`.
#[derive(Debug, Clone)]
struct ScanState {
    /// Next byte to examine; everything before it is decided.
    scan: usize,
    /// Where the current (not yet emitted) segment starts.
    segment_start: usize,
    /// Whether the segment starts at a line start, so its first line may carry block markup.
    segment_starts_line: bool,
    /// Chars from `segment_start` to `scan`.
    segment_chars: usize,
    /// Latest clause boundary (or too-short sentence end) in the segment: preferred cut.
    last_clause: Option<CutPoint>,
    /// Latest whitespace in the segment: fallback cut.
    last_space: Option<CutPoint>,
    /// Start of the run of ASCII letters, digits and dots being scanned: the word an
    /// abbreviation check reads. `None` once it is known to be too long to be an abbreviation.
    word_start: Option<usize>,
    /// The char before `scan` (kept here because compaction may drop it from `pending`).
    prev_char: Option<char>,
    /// `scan` is at the start of a line whose block markup is not classified yet.
    at_line_start: bool,
    /// The line so far was a `>` marker; block markup after it is classified again.
    after_quote_marker: bool,
    /// What kind of line `scan` is in.
    line_kind: LineKind,
    /// Inside a fenced code block: text is dropped until the closing fence.
    fence: Option<OpenFence>,
    /// Whether any segment was emitted: the early first-clause rule applies until then.
    emitted_any: bool,
}

impl Default for ScanState {
    fn default() -> Self {
        Self {
            scan: 0,
            segment_start: 0,
            segment_starts_line: true,
            segment_chars: 0,
            last_clause: None,
            last_space: None,
            word_start: Some(0),
            prev_char: None,
            at_line_start: true,
            after_quote_marker: false,
            line_kind: LineKind::Prose,
            fence: None,
            emitted_any: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OpenFence {
    fence: Fence,
    /// Whether `scan` is at the start of a line (where the closing fence may be).
    at_line_start: bool,
}

/// A place the current segment may be cut.
#[derive(Debug, Clone, Copy)]
struct CutPoint {
    /// Byte index in `pending`; the segment would end just before it.
    byte: usize,
    /// Segment chars before it.
    chars: usize,
}

impl CutPoint {
    /// This point relative to a segment that starts at `cut`, if it lies after it.
    fn after(self, cut: CutPoint) -> Option<CutPoint> {
        (self.byte > cut.byte).then(|| CutPoint {
            byte: self.byte,
            chars: self.chars - cut.chars,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineKind {
    /// Ordinary text (including list items and quotes): sentence rules apply.
    Prose,
    /// `# Heading`: one segment, ends at the newline.
    Heading,
    /// `| a | b |`: one segment, ends at the newline.
    TableRow,
    /// `---`: ends at the newline (and cleans to nothing).
    Rule,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BoundaryKind {
    Clause,
    Sentence,
}

/// What the scanner does with the char at `scan`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// The decision needs text that has not arrived yet.
    NeedMore,
    /// Consume up to this byte; no boundary.
    Consume(usize),
    /// Consume up to this byte; a clause boundary is there.
    Clause(usize),
    /// Consume up to this byte; a sentence ends there.
    SentenceEnd(usize),
    /// The newline at `scan` ends a heading, table row or rule line.
    LineEnd,
}

/// When a `.`-like terminator followed by whitespace ends a sentence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FollowRule {
    Always,
    Never,
    UnlessLowercaseFollows,
    UnlessDigitFollows,
}

/// The shape of a run of sentence punctuation such as `.`, `?!`, `...` or `。`.
#[derive(Debug, Default)]
struct TerminatorRun {
    periods: usize,
    has_ellipsis_char: bool,
    exclamation_or_question: bool,
    cjk: bool,
    closed_by_quote: bool,
}

impl TerminatorRun {
    fn add(&mut self, c: char) {
        match c {
            '.' => self.periods += 1,
            '…' => self.has_ellipsis_char = true,
            '!' | '?' => self.exclamation_or_question = true,
            _ => self.cjk = true,
        }
    }

    fn is_ellipsis(&self) -> bool {
        self.has_ellipsis_char || self.periods >= 2
    }
}

/// How the word after an ambiguous terminator starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NextWord {
    /// Not received yet.
    Unknown,
    /// End of text, a line break or a long gap: nothing continues the sentence.
    Absent,
    /// First char of the next word (after whitespace and opening quotes or brackets).
    StartsWith(char),
}

fn next_word_start(mut chars: Peekable<CharIndices<'_>>, at_end: bool) -> NextWord {
    let mut looked = 0;
    loop {
        match chars.next() {
            None if at_end => return NextWord::Absent,
            None => return NextWord::Unknown,
            Some((_, '\n')) => return NextWord::Absent,
            Some((_, c)) if c.is_whitespace() || is_opener(c) => {
                looked += 1;
                if looked > NEXT_WORD_LOOKAHEAD_CHARS {
                    return NextWord::Absent;
                }
            }
            Some((_, c)) => return NextWord::StartsWith(c),
        }
    }
}

fn rule_for_word(word: &str) -> FollowRule {
    if word.is_empty() {
        FollowRule::Always
    } else if ABBREVIATIONS_NEVER_FINAL.contains(&word) {
        FollowRule::Never
    } else if ABBREVIATIONS_BEFORE_NUMBER.contains(&word) {
        FollowRule::UnlessDigitFollows
    } else if ABBREVIATIONS_MAYBE_FINAL.contains(&word) {
        FollowRule::UnlessLowercaseFollows
    } else if is_initials(word) {
        FollowRule::Never
    } else {
        FollowRule::Always
    }
}

/// `J`, `F` (an uppercase initial) or dotted single letters such as `J.R.R`, `e.g`, `i.e`.
fn is_initials(word: &str) -> bool {
    let mut chars = word.chars();
    match (chars.next(), chars.next()) {
        (Some(first), None) => first.is_uppercase(),
        (Some(_), Some(_)) => word.split('.').all(|part| {
            let mut letters = part.chars();
            letters.next().is_some_and(char::is_alphabetic) && letters.next().is_none()
        }),
        (None, _) => false,
    }
}

fn is_sentence_terminator(c: char) -> bool {
    matches!(c, '.' | '!' | '?' | '…' | '。' | '！' | '？')
}

/// Chars that may sit between a terminator and the whitespace after it: closing quotes and
/// brackets, markdown emphasis or code markers, and emoji ("Done! 🎉 Next").
fn is_closer(c: char) -> bool {
    matches!(
        c,
        '"' | '\''
            | '”'
            | '’'
            | '»'
            | '」'
            | '』'
            | ')'
            | ']'
            | '}'
            | '）'
            | '】'
            | '*'
            | '_'
            | '`'
            | '~'
    ) || is_emoji_part(c)
}

fn is_closing_quote(c: char) -> bool {
    matches!(c, '"' | '\'' | '”' | '’' | '»' | '」' | '』')
}

/// Chars that may precede a word: opening quotes and brackets, emphasis markers.
fn is_opener(c: char) -> bool {
    matches!(
        c,
        '"' | '\'' | '“' | '‘' | '«' | '「' | '『' | '(' | '[' | '{' | '（' | '*' | '_' | '¿' | '¡'
    )
}

#[cfg(test)]
mod tests;
