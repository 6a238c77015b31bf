//! Escaping of user-supplied text for the markdown of a Discourse post.
//!
//! A form submission ends up inside a post that Geoffrey writes, so its values must render as
//! the literal text the submitter typed. They must not add mentions that notify users or
//! groups, category hashtags, links, images, HTML, quotes, polls, headings, lists or `:name:`
//! emoji: only the form's template may add those.
//!
//! Two mechanisms are needed, because Discourse recognizes some syntax after markdown-it has
//! already removed the backslashes:
//!
//! - Every ASCII punctuation character gets a backslash. CommonMark lets any ASCII punctuation
//!   be escaped this way, and the escaped character renders as itself. This stops markdown,
//!   BBCode blocks such as `[quote]` and `[poll]`, HTML tags, entities such as `&#64;`, and
//!   links, because linkify only looks inside unescaped runs of text.
//! - Mentions (`@name`), hashtags (`#slug`) and emoji (`:name:`) are found later, in the joined
//!   text where `\@` has already become `@`. A zero-width space (U+200B) after the `@`, `#` or
//!   `:` breaks them: none of Discourse's patterns accepts it as part of a name.
//!
//! What was checked, and how: Discourse's `discourse-markdown-it` package pins markdown-it
//! 14.0.0 in its `package.json`. Its features `text-post-process.js`, `mentions.js`,
//! `hashtag-autocomplete.js` and `emoji.js` show that mentions, hashtags and emoji are core
//! rules that run on text tokens after markdown-it's `text_join`. They also show which
//! characters a name may contain, and that a mention or hashtag needs whitespace or
//! punctuation before it. `bbcode-block.js` shows that a BBCode block must start its line
//! with `[`. Outside the test suite, every attack in this module's tests was rendered with
//! markdown-it 14.0.0 and a re-implementation of those Discourse rules, alone, after a word
//! and after a bold label. None produced a mention, hashtag, emoji, link, image, HTML element
//! or block other than paragraphs, and each rendered as its own text.
//!
//! NOTE: No real Discourse instance was used. That Discourse keeps U+200B in a post's raw text
//! is inferred from `TextCleaner`, which strips it from titles only, and plugins that add
//! their own syntax were not examined. Emoji shortcuts that do not start with `:`, such as
//! `;)` or `<3`, can still become emoji images when the site enables them.

/// Zero-width space, inserted where Discourse could otherwise start a mention, hashtag or emoji.
pub const NAME_BREAK: char = '\u{200B}';

/// Escapes `text` so that it renders as itself inside a Discourse post, keeping its line breaks.
///
/// Carriage returns become line feeds, tabs become spaces, and control characters and Unicode
/// bidirectional overrides are removed. Each line loses its leading and trailing whitespace,
/// so that indentation cannot start a code block. Blank lines still separate paragraphs, so
/// put the result where a new paragraph may start; [`escape_markdown_inline`] fits inside a
/// list item, table cell or heading.
pub fn escape_markdown(text: &str) -> String {
    let cleaned = clean(text);
    let mut escaped = String::with_capacity(cleaned.len() * 2);
    for (index, line) in cleaned.split('\n').enumerate() {
        if index > 0 {
            escaped.push('\n');
        }
        escape_text(line.trim(), &mut escaped);
    }
    escaped
}

/// Escapes `text` like [`escape_markdown`], but folds every run of whitespace, line breaks
/// included, into one space, so the result stays on one line.
pub fn escape_markdown_inline(text: &str) -> String {
    let cleaned = clean(text);
    let folded = cleaned.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut escaped = String::with_capacity(folded.len() * 2);
    escape_text(&folded, &mut escaped);
    escaped
}

/// Normalizes line breaks and removes the characters that no post should contain: control
/// characters (a NUL makes Discourse reject the request) and bidirectional overrides, which
/// can make text display in a different order than it is stored.
fn clean(text: &str) -> String {
    let unified = text.replace("\r\n", "\n").replace('\r', "\n");
    unified
        .chars()
        .filter_map(|c| match c {
            '\n' => Some('\n'),
            '\t' | '\u{2028}' | '\u{2029}' => Some(' '),
            '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' => None,
            c if c.is_control() => None,
            c => Some(c),
        })
        .collect()
}

/// Appends the escaped form of one line to `out`.
fn escape_text(line: &str, out: &mut String) {
    let mut previous: Option<char> = None;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_punctuation() {
            out.push('\\');
        }
        out.push(c);
        if needs_name_break(c, previous, chars.peek().copied()) {
            out.push(NAME_BREAK);
        }
        previous = Some(c);
    }
}

/// Returns whether a name that Discourse would turn into a mention, hashtag or emoji could
/// start after `c`.
///
/// Discourse accepts a mention or hashtag only after whitespace, punctuation, a symbol or the
/// start of a text, so an `@` or `#` after a letter or digit (as in `ada@example.com` or
/// `C#`) is left alone. Emoji need no such boundary when the site enables inline emoji, so
/// every `:` gets the break. Nothing can start when whitespace follows. The end of the value
/// counts as a possible start, because the template may continue with a name.
fn needs_name_break(c: char, previous: Option<char>, next: Option<char>) -> bool {
    let name_may_follow = next.is_none_or(|next| !next.is_whitespace());
    let after_boundary = !previous.is_some_and(char::is_alphanumeric);
    match c {
        '@' | '#' => name_may_follow && after_boundary,
        ':' => name_may_follow,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: char = NAME_BREAK;

    /// Returns whether every ASCII punctuation character of `escaped` carries a backslash.
    fn all_punctuation_escaped(escaped: &str) -> bool {
        let mut chars = escaped.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                match chars.next() {
                    Some(next) if next.is_ascii_punctuation() => continue,
                    _ => return false,
                }
            }
            if c.is_ascii_punctuation() {
                return false;
            }
        }
        true
    }

    /// Removes the escaping again, as a renderer would, leaving the displayed text.
    fn unescape(escaped: &str) -> String {
        let mut plain = String::new();
        let mut chars = escaped.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => plain.extend(chars.next()),
                NAME_BREAK => {}
                c => plain.push(c),
            }
        }
        plain
    }

    /// Attacks a form value could carry, each with the feature it tries to trigger.
    const ATTACKS: &[(&str, &str)] = &[
        ("mention", "@admin please look"),
        ("mention after punctuation", "(@admin)"),
        ("mention after backslash", "\\@admin"),
        ("group mention", "@staff"),
        ("mention at line start", "hello\n@moderators"),
        ("hashtag", "#general"),
        ("hashtag with type", "see #announcements::category"),
        ("emoji shortcode", ":rofl: :t2:"),
        ("emoji shortcut", "hi :) there"),
        (
            "html",
            "<script>alert(1)</script><img src=x onerror=alert(1)>",
        ),
        ("html entity for at sign", "&#64;admin"),
        ("markdown link", "[click](https://evil.example/login)"),
        ("markdown image", "![x](https://evil.example/a.png)"),
        ("autolink", "<https://evil.example>"),
        ("bare url", "https://evil.example/login"),
        ("fuzzy link", "visit evil.com today"),
        ("email link", "mail ada@evil.com"),
        ("reference link", "[x]: https://evil.example"),
        ("quote block", "> quoted"),
        (
            "bbcode quote",
            "[quote=\"admin, post:1, topic:1\"]\nfake\n[/quote]",
        ),
        ("poll", "[poll type=regular]\n* yes\n* no\n[/poll]"),
        ("details", "[details=\"Summary\"]\nhidden\n[/details]"),
        (
            "inline bbcode",
            "[b]bold[/b] [url=https://evil.example]x[/url]",
        ),
        ("heading", "# Title"),
        ("setext heading", "Title\n==="),
        ("bullet list", "- item\n+ item\n* item"),
        ("ordered list", "1. first\n2) second"),
        ("thematic break", "***\n---\n___"),
        ("code fence", "```\ncode\n```"),
        ("indented code", "        code"),
        ("inline code", "`code`"),
        ("emphasis", "*em* _em_ **strong** ~~strike~~"),
        ("table", "| a | b |\n|---|---|\n| 1 | 2 |"),
        ("hard break backslash", "line\\\nnext"),
        ("nul and controls", "a\u{0}b\u{7}c\u{1b}[31m"),
        ("bidi override", "abc\u{202E}fed"),
    ];

    #[test]
    fn attacks_keep_no_unescaped_punctuation() {
        for (name, attack) in ATTACKS {
            let escaped = escape_markdown(attack);
            assert!(all_punctuation_escaped(&escaped), "{name}: {escaped:?}");
            let inline = escape_markdown_inline(attack);
            assert!(
                all_punctuation_escaped(&inline),
                "{name} inline: {inline:?}"
            );
        }
    }

    #[test]
    fn attacks_render_as_their_own_text() {
        for (name, attack) in ATTACKS {
            let expected: String = clean(attack)
                .split('\n')
                .map(str::trim)
                .collect::<Vec<_>>()
                .join("\n");
            assert_eq!(unescape(&escape_markdown(attack)), expected, "{name}");
        }
    }

    #[test]
    fn mention_gets_a_break_after_the_at_sign() {
        assert_eq!(escape_markdown("@admin"), format!("\\@{B}admin"));
        assert_eq!(escape_markdown("(@admin)"), format!("\\(\\@{B}admin\\)"));
        assert_eq!(escape_markdown("\\@admin"), format!("\\\\\\@{B}admin"));
        assert_eq!(escape_markdown("x\n@mods"), format!("x\n\\@{B}mods"));
    }

    #[test]
    fn email_address_keeps_its_at_sign_whole() {
        assert_eq!(escape_markdown("ada@example.com"), "ada\\@example\\.com");
    }

    #[test]
    fn hashtag_gets_a_break_after_the_hash() {
        assert_eq!(escape_markdown("#general"), format!("\\#{B}general"));
        assert_eq!(escape_markdown("C# code"), "C\\# code");
        assert_eq!(escape_markdown("# Title"), "\\# Title");
    }

    #[test]
    fn colon_before_a_name_gets_a_break() {
        assert_eq!(escape_markdown(":rofl:"), format!("\\:{B}rofl\\:{B}"));
        assert_eq!(escape_markdown("Note: yes"), "Note\\: yes");
        assert_eq!(escape_markdown("12:30"), format!("12\\:{B}30"));
    }

    #[test]
    fn value_ending_in_a_sign_gets_a_break() {
        assert_eq!(escape_markdown("mail me @"), format!("mail me \\@{B}"));
        assert_eq!(escape_markdown("a @ b"), "a \\@ b");
    }

    #[test]
    fn html_and_entities_are_escaped() {
        assert_eq!(escape_markdown("<b>"), "\\<b\\>");
        assert_eq!(escape_markdown("&#64;x"), format!("\\&\\#{B}64\\;x"));
    }

    #[test]
    fn link_syntax_is_escaped() {
        assert_eq!(
            escape_markdown("https://evil.example"),
            format!("https\\:{B}\\/\\/evil\\.example")
        );
        assert_eq!(escape_markdown("[a](b)"), "\\[a\\]\\(b\\)");
    }

    #[test]
    fn line_indentation_is_removed() {
        assert_eq!(escape_markdown("    code\n\tmore  "), "code\nmore");
    }

    #[test]
    fn line_breaks_are_normalized() {
        assert_eq!(escape_markdown("a\r\nb\rc"), "a\nb\nc");
        assert_eq!(escape_markdown("a\n\nb"), "a\n\nb");
    }

    #[test]
    fn controls_and_bidi_overrides_are_removed() {
        assert_eq!(escape_markdown("a\u{0}b\u{7}c"), "abc");
        assert_eq!(escape_markdown("abc\u{202E}fed\u{2066}"), "abcfed");
        assert_eq!(escape_markdown("a\tb"), "a b");
    }

    #[test]
    fn inline_form_folds_whitespace() {
        assert_eq!(escape_markdown_inline("  a \n\n b\tc  "), "a b c");
        assert_eq!(
            escape_markdown_inline("x\n- item"),
            "x \\- item",
            "a line break cannot start a list"
        );
    }

    #[test]
    fn plain_text_is_unchanged() {
        assert_eq!(
            escape_markdown("Grüße aus Köln 2024"),
            "Grüße aus Köln 2024"
        );
        assert_eq!(escape_markdown(""), "");
    }
}
