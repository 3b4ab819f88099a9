//! SecLang text to syntax: splits a configuration file into directives
//! (handling comments, `\` line continuations and Apache-style quoting) and
//! splits the three parts of a rule — targets, operator and actions — into
//! their pieces. Nothing here knows what a variable or action means; that is
//! `compile`'s job.

/// One directive with its arguments, quotes removed.
#[derive(Debug, Clone)]
pub(crate) struct RawDirective {
    /// 1-based line where the directive starts.
    pub line: usize,
    pub name: String,
    pub args: Vec<String>,
}

/// Splits a file's text into directives. Errors carry the line and reason.
pub(crate) fn split_directives(text: &str) -> Result<Vec<RawDirective>, (usize, String)> {
    let mut out = Vec::new();
    let mut logical = String::new();
    let mut start_line = 0;
    let mut continuing = false;
    for (idx, raw_line) in text.lines().enumerate() {
        let line_no = idx + 1;
        let line = raw_line.strip_suffix('\r').unwrap_or(raw_line);
        if !continuing {
            let trimmed = line.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            start_line = line_no;
            logical.clear();
        }
        if let Some(body) = line.strip_suffix('\\') {
            logical.push_str(body);
            continuing = true;
            continue;
        }
        logical.push_str(line);
        continuing = false;
        out.push(
            tokenize(&logical)
                .map_err(|e| (start_line, e))
                .map(|mut tokens| {
                    let name = tokens.remove(0);
                    RawDirective {
                        line: start_line,
                        name,
                        args: tokens,
                    }
                })?,
        );
    }
    if continuing && !logical.trim().is_empty() {
        out.push(
            tokenize(&logical)
                .map_err(|e| (start_line, e))
                .map(|mut tokens| {
                    let name = tokens.remove(0);
                    RawDirective {
                        line: start_line,
                        name,
                        args: tokens,
                    }
                })?,
        );
    }
    Ok(out)
}

/// Apache `ap_getword_conf` rules: a token is either a double-quoted string,
/// in which only `\"` is an escape, or a run of non-space characters.
fn tokenize(line: &str) -> Result<Vec<String>, String> {
    let mut tokens = Vec::new();
    let mut chars = line.char_indices().peekable();
    while let Some(&(_, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut tok = String::new();
        if c == '"' || c == '\'' {
            let quote = c;
            chars.next();
            let mut closed = false;
            while let Some((_, c)) = chars.next() {
                if c == '\\' {
                    if let Some(&(_, n)) = chars.peek() {
                        if n == quote {
                            tok.push(n);
                            chars.next();
                            continue;
                        }
                    }
                    tok.push(c);
                } else if c == quote {
                    closed = true;
                    break;
                } else {
                    tok.push(c);
                }
            }
            if !closed {
                return Err(format!("unterminated quoted string: {quote}{tok}"));
            }
        } else {
            while let Some(&(_, c)) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                tok.push(c);
                chars.next();
            }
        }
        tokens.push(tok);
    }
    if tokens.is_empty() {
        return Err("empty directive".into());
    }
    Ok(tokens)
}

/// One `name[:value]` action as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawAction {
    pub name: String,
    pub value: Option<String>,
}

/// Splits an action list on top-level commas; values may be single-quoted,
/// in which `\'` stands for a quote.
pub(crate) fn split_actions(text: &str) -> Result<Vec<RawAction>, String> {
    let bytes: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        while i < bytes.len() && (bytes[i].is_whitespace() || bytes[i] == ',') {
            i += 1;
        }
        if i >= bytes.len() {
            break;
        }
        let mut name = String::new();
        while i < bytes.len() && bytes[i] != ':' && bytes[i] != ',' {
            name.push(bytes[i]);
            i += 1;
        }
        let name = name.trim().to_string();
        let mut value = None;
        if i < bytes.len() && bytes[i] == ':' {
            i += 1;
            while i < bytes.len() && bytes[i] == ' ' {
                i += 1;
            }
            let mut v = String::new();
            if i < bytes.len() && bytes[i] == '\'' {
                i += 1;
                let mut closed = false;
                while i < bytes.len() {
                    let c = bytes[i];
                    if c == '\\' && i + 1 < bytes.len() && bytes[i + 1] == '\'' {
                        v.push('\'');
                        i += 2;
                        continue;
                    }
                    if c == '\'' {
                        closed = true;
                        i += 1;
                        break;
                    }
                    v.push(c);
                    i += 1;
                }
                if !closed {
                    return Err(format!("unterminated quote in action {name}"));
                }
                // Anything after the closing quote up to the comma is ignored.
                while i < bytes.len() && bytes[i] != ',' {
                    i += 1;
                }
            } else {
                while i < bytes.len() && bytes[i] != ',' {
                    v.push(bytes[i]);
                    i += 1;
                }
                v = v.trim_end().to_string();
            }
            value = Some(v);
        }
        if name.is_empty() {
            return Err("empty action name".into());
        }
        out.push(RawAction { name, value });
    }
    Ok(out)
}

/// One target as written: `[!|&]NAME[:key]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawTarget {
    pub exclude: bool,
    pub count: bool,
    pub name: String,
    pub key: Option<RawKey>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RawKey {
    Exact(String),
    Regex(String),
}

/// Splits `A|!B:x|&C:/re|gex/` into targets; `|` inside a `/regex/` or a
/// quoted key does not split.
pub(crate) fn split_targets(text: &str) -> Result<Vec<RawTarget>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        while i < chars.len() && (chars[i] == '|' || chars[i].is_whitespace()) {
            i += 1;
        }
        if i >= chars.len() {
            break;
        }
        let mut exclude = false;
        let mut count = false;
        loop {
            match chars.get(i) {
                Some('!') => exclude = true,
                Some('&') => count = true,
                _ => break,
            }
            i += 1;
        }
        let mut name = String::new();
        while i < chars.len() && chars[i] != ':' && chars[i] != '|' {
            name.push(chars[i]);
            i += 1;
        }
        let mut key = None;
        if i < chars.len() && chars[i] == ':' {
            i += 1;
            // An XPath key is taken verbatim up to the next `|`.
            let is_xml = name.trim().eq_ignore_ascii_case("XML");
            match chars.get(i).filter(|_| !is_xml) {
                Some('/') => {
                    i += 1;
                    let mut re = String::new();
                    let mut closed = false;
                    while i < chars.len() {
                        if chars[i] == '\\' && i + 1 < chars.len() && chars[i + 1] == '/' {
                            re.push('/');
                            i += 2;
                            continue;
                        }
                        if chars[i] == '/' {
                            closed = true;
                            i += 1;
                            break;
                        }
                        re.push(chars[i]);
                        i += 1;
                    }
                    if !closed {
                        return Err(format!("unterminated regex key in target {name}"));
                    }
                    key = Some(RawKey::Regex(re));
                }
                Some('\'') => {
                    i += 1;
                    let mut k = String::new();
                    while i < chars.len() && chars[i] != '\'' {
                        k.push(chars[i]);
                        i += 1;
                    }
                    i += 1;
                    // A quoted key may itself hold a /regex/.
                    if k.len() >= 2 && k.starts_with('/') && k.ends_with('/') {
                        key = Some(RawKey::Regex(k[1..k.len() - 1].to_string()));
                    } else {
                        key = Some(RawKey::Exact(k));
                    }
                }
                _ => {
                    let mut k = String::new();
                    while i < chars.len() && chars[i] != '|' {
                        k.push(chars[i]);
                        i += 1;
                    }
                    key = Some(RawKey::Exact(k.trim().to_string()));
                }
            }
        }
        if name.trim().is_empty() {
            return Err("empty variable name".into());
        }
        out.push(RawTarget {
            exclude,
            count,
            name: name.trim().to_ascii_uppercase(),
            key,
        });
    }
    Ok(out)
}

/// Splits an operator string into (negated, name, argument). A string that
/// does not start with `@` is an implicit `@rx`.
pub(crate) fn split_operator(text: &str) -> (bool, String, String) {
    let mut s = text.trim_start();
    let negated = s.starts_with('!');
    if negated {
        s = s[1..].trim_start();
    }
    if let Some(rest) = s.strip_prefix('@') {
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let name = rest[..end].to_string();
        let arg = rest[end..].trim_start().to_string();
        (negated, name, arg)
    } else {
        (negated, "rx".into(), s.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuations_and_comments() {
        let text = "# comment\nSecRule ARGS \"@rx a\\\"b\" \\\n    \"id:1,\\\n    phase:2\"\n\n  # indented comment\nSecMarker END\n";
        let d = split_directives(text).unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].name, "SecRule");
        assert_eq!(d[0].line, 2);
        assert_eq!(d[0].args, vec!["ARGS", "@rx a\"b", "id:1,    phase:2"]);
        assert_eq!(d[1].args, vec!["END"]);
        assert_eq!(d[1].line, 7);
    }

    #[test]
    fn backslashes_other_than_quote_escapes_survive() {
        let d = split_directives(r#"SecRule ARGS "@rx \d+\s\"" "id:2""#).unwrap();
        assert_eq!(d[0].args[1], r#"@rx \d+\s""#);
    }

    #[test]
    fn unterminated_quote_is_an_error() {
        let e = split_directives("SecRule ARGS \"@rx a").unwrap_err();
        assert_eq!(e.0, 1);
    }

    #[test]
    fn actions_with_quotes_and_commas() {
        let a =
            split_actions("id:1, msg:'a, b \\'c\\'',t:none,setvar:'tx.x=+%{tx.y}',chain").unwrap();
        assert_eq!(a.len(), 5);
        assert_eq!(a[1].value.as_deref(), Some("a, b 'c'"));
        assert_eq!(a[3].value.as_deref(), Some("tx.x=+%{tx.y}"));
        assert_eq!(a[4].name, "chain");
        assert_eq!(a[4].value, None);
    }

    #[test]
    fn targets_with_regex_keys_and_prefixes() {
        let t =
            split_targets("REQUEST_COOKIES|!REQUEST_COOKIES:/__utm|x/|&ARGS:foo|XML:/*").unwrap();
        assert_eq!(t.len(), 4);
        assert!(t[1].exclude);
        assert_eq!(t[1].key, Some(RawKey::Regex("__utm|x".into())));
        assert!(t[2].count);
        assert_eq!(t[2].key, Some(RawKey::Exact("foo".into())));
        assert_eq!(t[3].key, Some(RawKey::Exact("/*".into())));
    }

    #[test]
    fn operators() {
        assert_eq!(
            split_operator("!@within GET POST"),
            (true, "within".into(), "GET POST".into())
        );
        assert_eq!(split_operator("^abc"), (false, "rx".into(), "^abc".into()));
        assert_eq!(
            split_operator("@unconditionalMatch"),
            (false, "unconditionalMatch".into(), String::new())
        );
    }
}
