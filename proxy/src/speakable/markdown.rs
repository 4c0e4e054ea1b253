//! Block structure: the markdown at the start of a line (headings, lists, blockquotes, tables,
//! horizontal rules, code fences). Shared by the splitter and the cleaner so both read lines
//! the same way. Classification works on the bytes received so far and says when it needs more.

/// Most whitespace chars skipped at a line start (indentation) or after a closing code fence
/// before a line is treated as plain text: nested list indentation is a few spaces; more is
/// not markup a voice answer uses, and the cap keeps the lookahead bounded.
const MAX_INDENT_CHARS: usize = 16;

/// Longest run of one marker (``` ` ``` `~` `#` `-` `*` `_`) or of sentence punctuation and
/// closers that is measured as a unit. Real markup uses 3-6; the cap keeps lookahead bounded.
pub(super) const MAX_MARKER_RUN_CHARS: usize = 64;

/// Most digits in a numbered list marker (`123456789.`), as in CommonMark.
const MAX_LIST_NUMBER_DIGITS: usize = 9;

/// `#` to `######`, as in CommonMark.
const MAX_HEADING_LEVEL: usize = 6;

/// A code fence is at least three backticks or tildes (CommonMark).
const MIN_FENCE_MARKER_CHARS: usize = 3;

/// A horizontal rule is at least three `-`, `*` or `_` (CommonMark).
const MIN_RULE_MARKER_CHARS: usize = 3;

/// A code fence marker: `len` copies of `marker` (`` ` `` or `~`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Fence {
    marker: u8,
    len: usize,
}

/// The block markup at the start of a line. `content` offsets are bytes from the line start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LinePrefix {
    /// Only whitespace before the line break: a paragraph break.
    Blank,
    /// A code fence; `marker_end` is where the marker run ends.
    Fence { fence: Fence, marker_end: usize },
    /// `#`..`######` then a space.
    Heading { content: usize },
    /// `>`.
    Quote { content: usize },
    /// `|`.
    TableRow,
    /// `---`, `***` or `___` alone on the line.
    Rule,
    /// `-`, `*` or `+` then a space.
    Bullet { content: usize },
    /// `1.` or `1)` then a space; the number is kept when spoken.
    Numbered { marker: usize, content: usize },
    /// No block markup; `content` skips the indentation.
    Prose { content: usize },
}

/// One position of a line being classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peek {
    Byte(u8),
    LineEnd,
    /// Past the received text; more may come.
    Unknown,
}

/// `line` holds a line from its start, up to a `\n` or the end of the slice. `complete`: the
/// end of the slice is the end of the text.
fn peek(line: &[u8], index: usize, complete: bool) -> Peek {
    match line.get(index) {
        Some(b'\n') => Peek::LineEnd,
        Some(&byte) => Peek::Byte(byte),
        None if complete => Peek::LineEnd,
        None => Peek::Unknown,
    }
}

fn is_indent(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\r')
}

/// Length of the run of `marker` bytes at `start` (capped) and what follows it, or `None` if
/// the run reaches the end of the received text.
fn marker_run(line: &[u8], start: usize, marker: u8, complete: bool) -> Option<(usize, Peek)> {
    let mut len = 0;
    loop {
        match peek(line, start + len, complete) {
            Peek::Unknown => return None,
            Peek::Byte(byte) if byte == marker && len < MAX_MARKER_RUN_CHARS => len += 1,
            after => return Some((len, after)),
        }
    }
}

/// Whether only whitespace follows `start` on this line; `None` if not known yet.
fn rest_of_line_blank(line: &[u8], start: usize, complete: bool) -> Option<bool> {
    for index in start..=start + MAX_INDENT_CHARS {
        match peek(line, index, complete) {
            Peek::Unknown => return None,
            Peek::LineEnd => return Some(true),
            Peek::Byte(byte) if is_indent(byte) => {}
            Peek::Byte(_) => return Some(false),
        }
    }
    Some(false)
}

/// Classifies the block markup at the start of `line`; `None` if more text is needed.
/// Markers are ASCII, so byte offsets are always char boundaries.
pub(super) fn classify_line_prefix(line: &[u8], complete: bool) -> Option<LinePrefix> {
    let mut indent = 0;
    let first = loop {
        match peek(line, indent, complete) {
            Peek::Unknown => return None,
            Peek::LineEnd => return Some(LinePrefix::Blank),
            Peek::Byte(byte) if is_indent(byte) && indent < MAX_INDENT_CHARS => indent += 1,
            Peek::Byte(byte) => break byte,
        }
    };
    let prose = Some(LinePrefix::Prose { content: indent });
    match first {
        b'`' | b'~' => {
            let (len, _) = marker_run(line, indent, first, complete)?;
            if len >= MIN_FENCE_MARKER_CHARS {
                Some(LinePrefix::Fence {
                    fence: Fence { marker: first, len },
                    marker_end: indent + len,
                })
            } else {
                prose
            }
        }
        b'#' => {
            let (len, after) = marker_run(line, indent, first, complete)?;
            let spaced = matches!(after, Peek::LineEnd | Peek::Byte(b' ' | b'\t' | b'\r'));
            if len <= MAX_HEADING_LEVEL && spaced {
                Some(LinePrefix::Heading {
                    content: indent + len,
                })
            } else {
                prose
            }
        }
        b'>' => Some(LinePrefix::Quote {
            content: indent + 1,
        }),
        b'|' => Some(LinePrefix::TableRow),
        b'-' | b'*' | b'_' | b'+' => {
            let (len, after) = marker_run(line, indent, first, complete)?;
            if first != b'+'
                && len >= MIN_RULE_MARKER_CHARS
                && rest_of_line_blank(line, indent + len, complete)?
            {
                Some(LinePrefix::Rule)
            } else if first != b'_' && len == 1 && matches!(after, Peek::Byte(b' ' | b'\t')) {
                Some(LinePrefix::Bullet {
                    content: indent + 2,
                })
            } else {
                prose
            }
        }
        b'0'..=b'9' => {
            let mut end = indent;
            loop {
                match peek(line, end, complete) {
                    Peek::Unknown => return None,
                    Peek::Byte(b'0'..=b'9') if end - indent < MAX_LIST_NUMBER_DIGITS => end += 1,
                    _ => break,
                }
            }
            match (peek(line, end, complete), peek(line, end + 1, complete)) {
                (Peek::Byte(b'.' | b')'), Peek::Byte(b' ' | b'\t')) => Some(LinePrefix::Numbered {
                    marker: indent,
                    content: end + 2,
                }),
                (Peek::Byte(b'.' | b')'), Peek::Unknown) | (Peek::Unknown, _) => None,
                _ => prose,
            }
        }
        _ => prose,
    }
}

/// Whether a line closes `fence`: same marker, at least as long, nothing else on the line.
pub(super) fn closes_fence(
    line: &[u8],
    prefix: LinePrefix,
    fence: Fence,
    complete: bool,
) -> Option<bool> {
    match prefix {
        LinePrefix::Fence {
            fence: found,
            marker_end,
        } if found.marker == fence.marker && found.len >= fence.len => {
            rest_of_line_blank(line, marker_end, complete)
        }
        _ => Some(false),
    }
}
