//! The one error a rule set can fail with: which file, which line, why.

use std::fmt;

/// A rule that does not load. The app stops start-up with it, as it does for a WAF rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct RuleError {
    /// The rule file (for a built-in rule, `builtin:<name>.yml`).
    pub file: String,
    /// 1-based, where the YAML parser or the rule's own node gives one.
    pub line: Option<usize>,
    pub reason: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file, line, self.reason),
            None => write!(f, "{}: {}", self.file, self.reason),
        }
    }
}

/// A problem found inside one file, before the file name is known to the code that found it.
#[derive(Debug, Clone)]
pub(crate) struct Problem {
    pub line: Option<usize>,
    pub reason: String,
}

impl Problem {
    pub fn at(line: usize, reason: impl Into<String>) -> Problem {
        Problem {
            line: Some(line),
            reason: reason.into(),
        }
    }

    pub fn in_file(self, file: &str) -> RuleError {
        RuleError {
            file: file.to_string(),
            line: self.line,
            reason: self.reason,
        }
    }
}
