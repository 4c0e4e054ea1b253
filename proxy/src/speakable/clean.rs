//! Cleaning: turns a segment of markdown-ish LLM text into what a voice should read
//! ([`speakable`]). Block markup is classified by `markdown`, emoji are recognised by `emoji`.

use super::emoji::{emoji_len, push_without_emoji};
use super::markdown::{Fence, LinePrefix, classify_line_prefix, closes_fence};

/// Longest inline code span, link target or autolink searched for when cleaning, in chars.
/// Real spans are far shorter; the cap keeps cleaning linear on unbalanced input.
const MAX_INLINE_SPAN_CHARS: usize = 1000;

/// Turns markdown-ish LLM text into what a TTS voice should read.
///
/// Removes emphasis markers (`**b**`, `__b__`, `*e*`, `_e_`, `~~s~~`; not inside words, so
/// `snake_case` and `2*3` stay), inline-code backticks (the code stays), fenced code blocks
/// (entirely), heading `#`s, bullets, blockquote `>`s, link targets (`[text](url)` → `text`),
/// images, table pipes (cells are joined with ", ", separator rows dropped), horizontal rules,
/// backslash escapes, and emoji (pictographs, flags, keycaps, skin tones, ZWJ sequences,
/// variation selectors). Keeps ordinary symbols (`%` `$` `€` `°` `&`), numbered list markers
/// (the voice says "1. Preheat the oven"), URLs and e-mail addresses. Collapses whitespace,
/// drops spaces left before punctuation, trims.
///
/// Returns an empty string when nothing speakable (no letter or digit) is left, e.g. for a
/// lone emoji, `---` or `...`.
#[must_use]
#[cfg(test)]
pub(super) fn speakable(text: &str) -> String {
    clean_segment(text, true)
}

/// [`speakable`] for a piece of a larger text: block markup on the first line is only
/// recognised if the piece starts at a line start.
pub(super) fn clean_segment(text: &str, starts_at_line_start: bool) -> String {
    let mut spoken = String::with_capacity(text.len());
    let mut open_fence: Option<Fence> = None;
    for (index, line) in text.split('\n').enumerate() {
        if index == 0 && !starts_at_line_start {
            clean_inline(line, &mut spoken);
            spoken.push(' ');
            continue;
        }
        let bytes = line.as_bytes();
        // With `complete`, classification always succeeds.
        let prefix = classify_line_prefix(bytes, true).unwrap_or(LinePrefix::Prose { content: 0 });
        if let Some(fence) = open_fence {
            if closes_fence(bytes, prefix, fence, true) == Some(true) {
                open_fence = None;
            }
            continue;
        }
        if let LinePrefix::Fence { fence, .. } = prefix {
            open_fence = Some(fence);
            continue;
        }
        clean_block_line(line, prefix, &mut spoken);
        spoken.push(' ');
    }
    finish_spoken(&spoken)
}

/// Cleans one line whose block markup is `prefix`.
fn clean_block_line(line: &str, prefix: LinePrefix, spoken: &mut String) {
    let mut line = line;
    let mut prefix = prefix;
    // A loop, not recursion: `> > > …` nests without bound.
    loop {
        match prefix {
            LinePrefix::Blank | LinePrefix::Rule => return,
            LinePrefix::Quote { content } => {
                line = &line[content..];
                prefix = classify_line_prefix(line.as_bytes(), true)
                    .unwrap_or(LinePrefix::Prose { content: 0 });
            }
            LinePrefix::Fence { .. } => return clean_inline(line, spoken),
            LinePrefix::Heading { content } => {
                return clean_inline(strip_closing_hashes(&line[content..]), spoken);
            }
            LinePrefix::TableRow => return clean_table_row(line, spoken),
            LinePrefix::Bullet { content } => {
                return clean_inline(strip_task_box(&line[content..]), spoken);
            }
            LinePrefix::Numbered { marker, .. } => return clean_inline(&line[marker..], spoken),
            LinePrefix::Prose { content } => return clean_inline(&line[content..], spoken),
        }
    }
}

/// `## Title ##` → `Title`.
fn strip_closing_hashes(heading: &str) -> &str {
    let trimmed = heading.trim_end();
    let without = trimmed.trim_end_matches('#');
    if without.len() < trimmed.len() && (without.is_empty() || without.ends_with([' ', '\t'])) {
        without
    } else {
        heading
    }
}

/// `[ ] task` / `[x] task` → `task`.
fn strip_task_box(item: &str) -> &str {
    ["[ ] ", "[x] ", "[X] "]
        .iter()
        .find_map(|task_box| item.strip_prefix(task_box))
        .unwrap_or(item)
}

/// `| a | b |` → `a, b`; separator rows (`|---|:-:|`) say nothing.
fn clean_table_row(line: &str, spoken: &mut String) {
    let row = line.trim();
    let row = row.strip_prefix('|').unwrap_or(row);
    let row = row.strip_suffix('|').unwrap_or(row);
    let mut first = true;
    let mut cell_text = String::new();
    for cell in row.split('|') {
        cell_text.clear();
        clean_inline(cell, &mut cell_text);
        if !cell_text.chars().any(char::is_alphanumeric) {
            continue;
        }
        if !first {
            spoken.push_str(", ");
        }
        spoken.push_str(cell_text.trim());
        first = false;
    }
}

/// Collapses whitespace, drops spaces before punctuation (left by removed emoji or markup),
/// trims; empty if nothing speakable is left.
fn finish_spoken(raw: &str) -> String {
    if !raw.chars().any(char::is_alphanumeric) {
        return String::new();
    }
    let mut spoken = String::with_capacity(raw.len());
    let mut space_pending = false;
    for c in raw.chars() {
        if c.is_whitespace() {
            space_pending = !spoken.is_empty();
            continue;
        }
        if space_pending && !matches!(c, '.' | ',' | '!' | '?' | ';' | ':') {
            spoken.push(' ');
        }
        space_pending = false;
        spoken.push(c);
    }
    spoken
}

/// Removes inline markdown and emoji from one line, appending the result to `spoken`.
fn clean_inline(text: &str, spoken: &mut String) {
    let chars: Vec<char> = text.chars().collect();
    let mut index = 0;
    let mut after_emoji = false;
    while index < chars.len() {
        let emoji = emoji_len(&chars, index, after_emoji);
        after_emoji = emoji > 0;
        if after_emoji {
            index += emoji;
            continue;
        }
        let c = chars[index];
        index += match c {
            '\\' => backslash_escape(&chars, index, spoken),
            '`' => code_span(&chars, index, spoken),
            '!' if chars.get(index + 1) == Some(&'[') => image(&chars, index, spoken),
            // Link text is kept; the brackets and the `(target)` go.
            '[' => {
                spoken.push(' ');
                1
            }
            ']' => link_target(&chars, index, spoken),
            '<' => autolink(&chars, index, spoken),
            '*' | '_' | '~' => emphasis_run(&chars, index, spoken),
            // Table pipes outside a whole row (a row cut by the length limit) are not read.
            '|' => {
                spoken.push(' ');
                1
            }
            _ => {
                spoken.push(c);
                1
            }
        };
    }
}

/// `\*` → `*` (escaped punctuation is literal text).
fn backslash_escape(chars: &[char], index: usize, spoken: &mut String) -> usize {
    match chars.get(index + 1) {
        Some(&escaped) if escaped.is_ascii_punctuation() => {
            spoken.push(escaped);
            2
        }
        _ => {
            spoken.push('\\');
            1
        }
    }
}

/// `` `code` `` → `code`; an unmatched backtick run is dropped.
fn code_span(chars: &[char], index: usize, spoken: &mut String) -> usize {
    let run = run_len(chars, index);
    let search_end = chars.len().min(index + run + MAX_INLINE_SPAN_CHARS);
    let mut close = index + run;
    while close < search_end {
        if chars[close] == '`' {
            let close_run = run_len(chars, close);
            if close_run == run {
                push_without_emoji(&chars[index + run..close], spoken);
                return close + run - index;
            }
            close += close_run;
        } else {
            close += 1;
        }
    }
    run
}

/// `![alt](url)` is dropped entirely; a lone `!` is kept.
fn image(chars: &[char], index: usize, spoken: &mut String) -> usize {
    let target_end = closing_bracket(chars, index + 1, '[', ']')
        .filter(|&close| chars.get(close + 1) == Some(&'('))
        .and_then(|close| closing_bracket(chars, close + 1, '(', ')'));
    match target_end {
        Some(close) => {
            spoken.push(' ');
            close + 1 - index
        }
        None => {
            spoken.push('!');
            1
        }
    }
}

/// The `](url)` that ends a link: dropped. A lone `]` is dropped too.
fn link_target(chars: &[char], index: usize, spoken: &mut String) -> usize {
    spoken.push(' ');
    if chars.get(index + 1) == Some(&'(')
        && let Some(close) = closing_bracket(chars, index + 1, '(', ')')
    {
        return close + 1 - index;
    }
    1
}

/// `<https://x.y>` → `https://x.y`; other `<` are kept.
fn autolink(chars: &[char], index: usize, spoken: &mut String) -> usize {
    const SCHEMES: [&str; 3] = ["http://", "https://", "mailto:"];
    let starts_with_scheme = SCHEMES.iter().any(|scheme| {
        let mut rest = chars[index + 1..].iter();
        scheme
            .chars()
            .all(|expected| rest.next() == Some(&expected))
    });
    if starts_with_scheme {
        let search_end = chars.len().min(index + 1 + MAX_INLINE_SPAN_CHARS);
        for close in index + 1..search_end {
            match chars[close] {
                '>' => {
                    push_without_emoji(&chars[index + 1..close], spoken);
                    return close + 1 - index;
                }
                c if c.is_whitespace() => break,
                _ => {}
            }
        }
    }
    spoken.push('<');
    1
}

/// Drops a run of `*`, `_` or `~~` that marks emphasis; keeps it inside a word (`snake_case`,
/// `2*3`) or standing alone between spaces (`2 * 3`).
fn emphasis_run(chars: &[char], index: usize, spoken: &mut String) -> usize {
    let marker = chars[index];
    let run = run_len(chars, index);
    let before = index.checked_sub(1).map(|previous| chars[previous]);
    let after = chars.get(index + run).copied();
    let inside_word =
        before.is_some_and(char::is_alphanumeric) && after.is_some_and(char::is_alphanumeric);
    let touches_text =
        before.is_some_and(|c| !c.is_whitespace()) || after.is_some_and(|c| !c.is_whitespace());
    let is_markup = !inside_word && touches_text && (marker != '~' || run >= 2);
    if !is_markup {
        spoken.extend(std::iter::repeat_n(marker, run));
    }
    run
}

/// Index of the bracket closing the one at `open`, respecting nesting, within the span cap.
fn closing_bracket(chars: &[char], open: usize, opening: char, closing: char) -> Option<usize> {
    let mut depth = 0usize;
    let search_end = chars.len().min(open + MAX_INLINE_SPAN_CHARS);
    for (index, &c) in chars.iter().enumerate().take(search_end).skip(open) {
        if c == opening {
            depth += 1;
        } else if c == closing {
            depth = depth.saturating_sub(1);
            if depth == 0 {
                return Some(index);
            }
        }
    }
    None
}

/// Length of the run of the char at `index`.
fn run_len(chars: &[char], index: usize) -> usize {
    let marker = chars[index];
    chars[index..].iter().take_while(|&&c| c == marker).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speakable_cleaning() {
        let cases: &[(&str, &str)] = &[
            (
                "**bold** and __strong__ and *em* and _em_",
                "bold and strong and em and em",
            ),
            (
                "snake_case_name, 2*3 = 6, 2 * 3 and a_b",
                "snake_case_name, 2*3 = 6, 2 * 3 and a_b",
            ),
            ("~~gone~~ ok, ~5 minutes", "gone ok, ~5 minutes"),
            ("Run `cargo build` now", "Run cargo build now"),
            ("Use ``a ` b`` here", "Use a ` b here"),
            ("A stray ` backtick", "A stray backtick"),
            (
                "See [the docs](https://x.y/a_(b)) and ![img](i.png) here",
                "See the docs and here",
            ),
            (
                "Link <https://example.com/a_b> here",
                "Link https://example.com/a_b here",
            ),
            ("# Heading ##", "Heading"),
            ("###### Deep", "Deep"),
            ("#hashtag stays", "#hashtag stays"),
            (
                "- item one\n* item two\n+ item three",
                "item one item two item three",
            ),
            ("- [x] done task\n- [ ] open task", "done task open task"),
            ("1. First\n2) Second", "1. First 2) Second"),
            ("> quoted\n> > nested **bold**", "quoted nested bold"),
            ("| A | B |\n|---|:-:|\n| 1 | 😀 |", "A, B 1"),
            ("Text\n\n---\n\n***\n___\nMore", "Text More"),
            ("Before\n```js\nlet a = 1;\n```\nAfter", "Before After"),
            ("Open fence\n~~~\nnever closed", "Open fence"),
            ("Escaped \\*stars\\* stay", "Escaped *stars* stay"),
            ("Hi 😀! Love ❤️ it 👍🏽.", "Hi! Love it."),
            ("Flags 🇫🇷🇯🇵 and 🏴󠁧󠁢󠁥󠁮󠁧󠁿 gone", "Flags and gone"),
            ("Family 👨‍👩‍👧‍👦 and rainbow 🏳️‍🌈 gone", "Family and rainbow gone"),
            ("Keycap 1️⃣ and #️⃣ gone, 1 stays", "Keycap and gone, 1 stays"),
            ("Done ✅ ✨ ☀️ ⭐ ok", "Done ok"),
            (
                "50% off $5 at 20°C & €3, © 2026 ™ → next",
                "50% off $5 at 20°C & €3, © 2026 ™ → next",
            ),
            ("क्‍ष keeps its joiner", "क्\u{200D}ष keeps its joiner"),
            ("  lots \t of\n\n   space  ", "lots of space"),
            ("🎉", ""),
            ("---", ""),
            ("...", ""),
            ("**", ""),
            ("", ""),
        ];
        for (input, expected) in cases {
            assert_eq!(speakable(input), *expected, "input {input:?}");
        }
    }
}
