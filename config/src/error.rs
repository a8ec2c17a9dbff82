use std::fmt;

/// Where a setting came from, so an error can point at the right place to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Built-in default.
    Default,
    /// The TOML configuration file with this name.
    File(String),
    /// A `SILT_*` environment variable.
    Env,
    /// A command-line flag.
    Flag,
    /// A Kafka request (CreateTopics, AlterConfigs, ...).
    Request,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => write!(f, "built-in default"),
            Source::File(name) => write!(f, "config file {name}"),
            Source::Env => write!(f, "environment"),
            Source::Flag => write!(f, "command line"),
            Source::Request => write!(f, "request"),
        }
    }
}

/// A setting that cannot be accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The key is not one silt knows. `known` lists the accepted keys (or the closest ones).
    #[error("unknown {what} `{key}` ({origin}); known keys: {known}")]
    UnknownKey {
        /// "setting" or "topic property".
        what: &'static str,
        /// The key as given.
        key: String,
        /// Where it came from.
        origin: Source,
        /// Comma-separated accepted keys, closest match first.
        known: String,
    },
    /// The key is known but its value does not parse or is out of range.
    #[error("invalid value `{value}` for `{key}` ({origin}): expected {expected}")]
    InvalidValue {
        /// The canonical key.
        key: String,
        /// The value as given.
        value: String,
        /// Where it came from.
        origin: Source,
        /// What would have been accepted.
        expected: String,
    },
    /// The configuration file is not valid TOML, or uses a table where a value belongs.
    #[error("config file {file}: {message}")]
    File {
        /// File name as given.
        file: String,
        /// What is wrong with it.
        message: String,
    },
    /// Settings that parse one by one but disagree with each other (named in the message).
    #[error("conflicting settings: {0}")]
    Conflict(String),
}

/// Orders `known` so the keys closest to `key` come first, for "did you mean" messages.
pub(crate) fn suggest(key: &str, known: impl IntoIterator<Item = &'static str>) -> String {
    let mut keys: Vec<&str> = known.into_iter().collect();
    keys.sort_by_key(|k| (edit_distance(key, k), *k));
    keys.join(", ")
}

/// Levenshtein distance; the key lists are short, so quadratic time is fine.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestion_puts_closest_key_first() {
        let known = ["data_dir", "kafka_addr", "admin_addr"];
        assert!(suggest("kafka_adr", known).starts_with("kafka_addr"));
        assert!(suggest("data-dir", known).starts_with("data_dir"));
    }
}
