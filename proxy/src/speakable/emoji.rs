//! Emoji recognition: pictographs, flags, keycaps, skin tones, ZWJ sequences and variation
//! selectors. Cleaning drops them; the splitter lets them sit between a sentence terminator
//! and the following whitespace ("Done! 🎉 Next").

/// Joins emoji into one glyph (family, profession and flag sequences).
const ZERO_WIDTH_JOINER: char = '\u{200D}';
/// Turns `0`-`9`, `#`, `*` into keycap emoji.
const COMBINING_KEYCAP: char = '\u{20E3}';
/// Requests emoji presentation of the preceding char.
const EMOJI_PRESENTATION_SELECTOR: char = '\u{FE0F}';

/// Appends `chars` to `spoken` without their emoji.
pub(super) fn push_without_emoji(chars: &[char], spoken: &mut String) {
    let mut index = 0;
    let mut after_emoji = false;
    while index < chars.len() {
        let emoji = emoji_len(chars, index, after_emoji);
        after_emoji = emoji > 0;
        if after_emoji {
            index += emoji;
        } else {
            spoken.push(chars[index]);
            index += 1;
        }
    }
}

/// How many chars of emoji start at `index` (0 if none). A ZWJ counts when it joins emoji;
/// elsewhere (e.g. in Indic scripts) it shapes text and is kept.
pub(super) fn emoji_len(chars: &[char], index: usize, after_emoji: bool) -> usize {
    let c = chars[index];
    if matches!(c, '0'..='9' | '#' | '*') {
        // A keycap (`1️⃣`) says nothing useful; the plain char stays plain.
        return match (chars.get(index + 1), chars.get(index + 2)) {
            (Some(&COMBINING_KEYCAP), _) => 2,
            (Some(&EMOJI_PRESENTATION_SELECTOR), Some(&COMBINING_KEYCAP)) => 3,
            _ => 0,
        };
    }
    let joins_emoji = c == ZERO_WIDTH_JOINER
        && (after_emoji || chars.get(index + 1).copied().is_some_and(is_pictographic));
    usize::from(is_pictographic(c) || is_emoji_modifier(c) || joins_emoji)
}

pub(super) fn is_emoji_part(c: char) -> bool {
    is_pictographic(c) || is_emoji_modifier(c) || c == ZERO_WIDTH_JOINER
}

/// Pictographic emoji: the emoji blocks plus the scattered emoji in older symbol blocks.
/// Arrows, `©`, `®`, `™` and punctuation such as `‼` are left alone: they read as text.
fn is_pictographic(c: char) -> bool {
    matches!(
        u32::from(c),
        // Mahjong, dominoes, cards, enclosed alphanumerics (incl. regional-indicator flags),
        // pictographs, emoticons, transport, skin tones, supplemental symbols: all emoji.
        0x1_F000..=0x1_FAFF
            // Miscellaneous Symbols and Dingbats (☀ ☎ ♥ ⚡ ✅ ✨ ❤ ➡ …).
            | 0x2600..=0x27BF
            // Emoji scattered in other blocks.
            | 0x231A..=0x231B
            | 0x2328
            | 0x23CF
            | 0x23E9..=0x23F3
            | 0x23F8..=0x23FA
            | 0x24C2
            | 0x25AA..=0x25AB
            | 0x25B6
            | 0x25C0
            | 0x25FB..=0x25FE
            | 0x2139
            | 0x2934..=0x2935
            | 0x2B05..=0x2B07
            | 0x2B1B..=0x2B1C
            | 0x2B50
            | 0x2B55
            | 0x3030
            | 0x303D
            | 0x3297
            | 0x3299
    )
}

/// Invisible emoji modifiers: variation selectors, the keycap mark, tag characters (flag
/// subdivisions). Skin tones are in the pictographic range.
fn is_emoji_modifier(c: char) -> bool {
    matches!(
        u32::from(c),
        0xFE00..=0xFE0F | 0x20E3 | 0xE_0000..=0xE_007F | 0xE_0100..=0xE_01EF
    )
}
