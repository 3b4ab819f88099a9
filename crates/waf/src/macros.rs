//! `%{...}` macro templates used in `msg`, `logdata`, `setvar` and operator
//! arguments. Parsing happens at load time; expansion is delegated to the
//! transaction, which knows the variable values.

/// A parsed template: literal text and variable references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Macro {
    parts: Vec<MacroPart>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MacroPart {
    Lit(String),
    /// Upper-case variable name and optional lower-case key:
    /// `%{tx.anomaly_score}` is `("TX", Some("anomaly_score"))`.
    Var(String, Option<String>),
}

impl Macro {
    pub(crate) fn parse(text: &str) -> Macro {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("%{") {
            let Some(len) = rest[start + 2..].find('}') else {
                break;
            };
            if start > 0 {
                parts.push(MacroPart::Lit(rest[..start].to_string()));
            }
            let inner = &rest[start + 2..start + 2 + len];
            let (name, key) = match inner.split_once(['.', ':']) {
                Some((n, k)) => (n, Some(k.to_ascii_lowercase())),
                None => (inner, None),
            };
            parts.push(MacroPart::Var(name.trim().to_ascii_uppercase(), key));
            rest = &rest[start + 2 + len + 1..];
        }
        if !rest.is_empty() {
            parts.push(MacroPart::Lit(rest.to_string()));
        }
        Macro { parts }
    }

    #[cfg(test)]
    pub(crate) fn literal(text: &str) -> Macro {
        Macro {
            parts: vec![MacroPart::Lit(text.to_string())],
        }
    }

    /// True when there is nothing to expand, so the text can be used as is.
    pub(crate) fn as_literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [MacroPart::Lit(s)] => Some(s),
            _ => None,
        }
    }

    /// The variables the template reads (upper-case names).
    pub(crate) fn variables(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            MacroPart::Var(n, _) => Some(n.as_str()),
            MacroPart::Lit(_) => None,
        })
    }

    pub(crate) fn expand(&self, mut resolve: impl FnMut(&str, Option<&str>) -> Vec<u8>) -> Vec<u8> {
        let mut out = Vec::new();
        for part in &self.parts {
            match part {
                MacroPart::Lit(s) => out.extend_from_slice(s.as_bytes()),
                MacroPart::Var(n, k) => out.extend_from_slice(&resolve(n, k.as_deref())),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_expands() {
        let m = Macro::parse("score %{tx.a_b} by %{MATCHED_VAR_NAME}!");
        let out = m.expand(|n, k| format!("<{n}|{}>", k.unwrap_or("-")).into_bytes());
        assert_eq!(out, b"score <TX|a_b> by <MATCHED_VAR_NAME|->!");
        assert_eq!(Macro::parse("plain").as_literal(), Some("plain"));
        assert_eq!(Macro::parse("a %{ b").as_literal(), Some("a %{ b"));
    }
}
