//! The configuration file: its text parsed into [`Settings`], with the line of every key, and
//! every unknown key or value of the wrong type reported with its line.

use std::collections::BTreeMap;
use std::ops::Range;

use serde::Deserialize as _;

use super::{Problem, Settings, SettingsError};

/// A configuration file's settings and the line of each key in it.
#[derive(Debug, Clone)]
pub struct FileLayer {
    /// The file's name as shown in messages.
    pub name: String,
    pub settings: Settings,
    /// Dotted key -> line (1-based) where the file sets it.
    pub(super) lines: BTreeMap<String, usize>,
    /// The keys left out because they are unknown or of the wrong type.
    pub problems: Vec<Problem>,
}

/// Parses a configuration file's text (`name` is how messages show the file). Every unknown
/// section or key and every value of the wrong type is a problem with its line, and is left
/// out of the settings, so the rest can still be checked; only text that is not TOML at all
/// is an error. The text must already be within [`MAX_CONFIG_BYTES`].
pub fn parse_file(name: &str, text: &str) -> Result<FileLayer, SettingsError> {
    let at = |span: Option<Range<usize>>| match span {
        Some(span) => {
            let (line, column) = line_column(text, span.start);
            format!("{name} line {line}, column {column}")
        }
        None => name.to_owned(),
    };
    let document = match toml::de::DeTable::parse(text) {
        Ok(document) => document,
        Err(e) => {
            return Err(SettingsError::Problems(vec![Problem {
                key: String::new(),
                origin: Some(at(e.span())),
                message: format!("not valid TOML: {}", one_line(e.message())),
            }]));
        }
    };
    let mut lines = BTreeMap::new();
    key_lines(text, document.get_ref(), "", &mut lines);
    // serde stops at the first mistake: take the offending entry out and try again, so every
    // mistake is reported at once. Each round removes one entry, which bounds the rounds.
    let mut remaining = document;
    let mut problems = Vec::new();
    loop {
        let attempt = toml::de::Deserializer::from(remaining.clone());
        match Settings::deserialize(attempt) {
            Ok(settings) => {
                // In the file's order, not the order serde met them in.
                problems.sort_by_key(|(offset, _)| *offset);
                return Ok(FileLayer {
                    name: name.to_owned(),
                    settings,
                    lines,
                    problems: problems.into_iter().map(|(_, p)| p).collect(),
                });
            }
            Err(e) => {
                let removed = e
                    .span()
                    .and_then(|span| remove_entry_at(remaining.get_mut(), &span, ""));
                let problem = Problem {
                    key: removed.clone().unwrap_or_default(),
                    origin: Some(at(e.span())),
                    message: describe_serde_error(e.message(), removed.as_deref()),
                };
                if removed.is_none() {
                    let mut problems: Vec<Problem> = problems.into_iter().map(|(_, p)| p).collect();
                    problems.push(problem);
                    return Err(SettingsError::Problems(problems));
                }
                problems.push((e.span().map_or(0, |s| s.start), problem));
            }
        }
    }
}

/// A serde message made to say what to change.
fn describe_serde_error(message: &str, key: Option<&str>) -> String {
    let message = one_line(message);
    if message.starts_with("unknown field") {
        match key.and_then(|k| k.rsplit_once('.')) {
            Some((section, _)) => format!(
                "{message} in [{section}]: fix or remove the key (see docs/operator-guide.md)"
            ),
            None => format!(
                "{message} at the top level, where only sections go: fix or remove it (see docs/operator-guide.md)"
            ),
        }
    } else {
        format!("{message}: fix the value")
    }
}

fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// 1-based line and column of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Records the line of every key of `table` (and of its tables) under `prefix`.
fn key_lines(
    text: &str,
    table: &toml::de::DeTable<'_>,
    prefix: &str,
    lines: &mut BTreeMap<String, usize>,
) {
    for (key, value) in table.iter() {
        let dotted = format!("{prefix}{}", key.get_ref());
        lines.insert(dotted.clone(), line_column(text, key.span().start).0);
        if let toml::de::DeValue::Table(inner) = value.get_ref() {
            key_lines(text, inner, &format!("{dotted}."), lines);
        }
    }
}

/// Removes the entry of `table` (at any depth) that `span` points at: the key itself, or the
/// value of the wrong type; returns its dotted key. A table's span is not trusted to cover its
/// keys (a `[section]`'s is its header), so tables are searched key by key.
fn remove_entry_at(
    table: &mut toml::de::DeTable<'_>,
    span: &Range<usize>,
    prefix: &str,
) -> Option<String> {
    let within = |outer: Range<usize>| outer.start <= span.start && span.end <= outer.end;
    let here = table.iter().find_map(|(key, value)| {
        let is_table = matches!(value.get_ref(), toml::de::DeValue::Table(_));
        (key.span() == *span || (!is_table && within(value.span())))
            .then(|| key.get_ref().to_string())
    });
    if let Some(key) = here {
        table.remove(key.as_str());
        return Some(format!("{prefix}{key}"));
    }
    for (key, value) in table.iter_mut() {
        if let toml::de::DeValue::Table(inner) = value.get_mut()
            && let Some(inner_key) =
                remove_entry_at(inner, span, &format!("{prefix}{}.", key.get_ref()))
        {
            return Some(inner_key);
        }
    }
    // Nothing inside answers to it: the error is about a whole table.
    let whole = table
        .iter()
        .find(|(_, value)| within(value.span()))
        .map(|(key, _)| key.get_ref().to_string())?;
    table.remove(whole.as_str());
    Some(format!("{prefix}{whole}"))
}
