//! Sigma `condition` expressions: `and`, `or`, `not`, parentheses, `N of pattern*`,
//! `all of pattern*`, `1 of them`, `all of them`. Precedence: `not` > `and` > `or`.
//! Selection names starting with `_` are left out of `them`, as the spec says.

/// A condition, with selections resolved to their index in the rule.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cond {
    Sel(usize),
    Not(Box<Cond>),
    And(Vec<Cond>),
    Or(Vec<Cond>),
    /// At least `n` of the selections.
    AtLeast(usize, Vec<usize>),
}

impl Cond {
    pub fn eval(&self, sel: &mut dyn FnMut(usize) -> bool) -> bool {
        match self {
            Cond::Sel(i) => sel(*i),
            Cond::Not(c) => !c.eval(sel),
            Cond::And(cs) => cs.iter().all(|c| c.eval(sel)),
            Cond::Or(cs) => cs.iter().any(|c| c.eval(sel)),
            Cond::AtLeast(n, ids) => {
                let mut hits = 0;
                for i in ids {
                    if sel(*i) {
                        hits += 1;
                        if hits >= *n {
                            return true;
                        }
                    }
                }
                false
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Open,
    Close,
    And,
    Or,
    Not,
    Of,
    All,
    Them,
    Number(usize),
    Name(String),
}

fn tokens(text: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '(' {
            chars.next();
            out.push(Token::Open);
        } else if c == ')' {
            chars.next();
            out.push(Token::Close);
        } else if c == '|' {
            return Err("aggregations after `|` are not supported; use a correlation rule".into());
        } else if c.is_alphanumeric() || c == '_' || c == '*' || c == '-' || c == '.' {
            let mut word = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_alphanumeric() || c == '_' || c == '*' || c == '-' || c == '.' {
                    word.push(c);
                    chars.next();
                } else {
                    break;
                }
            }
            out.push(match word.to_ascii_lowercase().as_str() {
                "and" => Token::And,
                "or" => Token::Or,
                "not" => Token::Not,
                "of" => Token::Of,
                "all" => Token::All,
                "them" => Token::Them,
                _ => match word.parse::<usize>() {
                    Ok(n) => Token::Number(n),
                    Err(_) => Token::Name(word),
                },
            });
        } else {
            return Err(format!("unexpected character `{c}`"));
        }
    }
    Ok(out)
}

struct Parser<'a> {
    tokens: Vec<Token>,
    at: usize,
    names: &'a [String],
}

/// Parses `text` against the rule's selection names.
pub(crate) fn parse(text: &str, names: &[String]) -> Result<Cond, String> {
    let mut p = Parser {
        tokens: tokens(text)?,
        at: 0,
        names,
    };
    if p.tokens.is_empty() {
        return Err("the condition is empty".into());
    }
    let cond = p.or()?;
    if p.at < p.tokens.len() {
        return Err(format!("unexpected `{}`", p.describe(p.at)));
    }
    Ok(cond)
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn describe(&self, at: usize) -> String {
        match self.tokens.get(at) {
            None => "end of condition".into(),
            Some(Token::Open) => "(".into(),
            Some(Token::Close) => ")".into(),
            Some(Token::And) => "and".into(),
            Some(Token::Or) => "or".into(),
            Some(Token::Not) => "not".into(),
            Some(Token::Of) => "of".into(),
            Some(Token::All) => "all".into(),
            Some(Token::Them) => "them".into(),
            Some(Token::Number(n)) => n.to_string(),
            Some(Token::Name(n)) => n.clone(),
        }
    }

    fn or(&mut self) -> Result<Cond, String> {
        let mut parts = vec![self.and()?];
        while self.peek() == Some(&Token::Or) {
            self.at += 1;
            parts.push(self.and()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Cond::Or(parts)
        })
    }

    fn and(&mut self) -> Result<Cond, String> {
        let mut parts = vec![self.not()?];
        while self.peek() == Some(&Token::And) {
            self.at += 1;
            parts.push(self.not()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Cond::And(parts)
        })
    }

    fn not(&mut self) -> Result<Cond, String> {
        if self.peek() == Some(&Token::Not) {
            self.at += 1;
            return Ok(Cond::Not(Box::new(self.not()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Cond, String> {
        let token = self.peek().cloned();
        self.at += 1;
        match token {
            Some(Token::Open) => {
                let inner = self.or()?;
                if self.peek() != Some(&Token::Close) {
                    return Err(format!("expected `)`, found `{}`", self.describe(self.at)));
                }
                self.at += 1;
                Ok(inner)
            }
            Some(Token::Number(n)) => self.of(Some(n)),
            Some(Token::All) => self.of(None),
            Some(Token::Name(name)) => match self.names.iter().position(|n| *n == name) {
                Some(i) => Ok(Cond::Sel(i)),
                None => Err(format!("no selection named `{name}`")),
            },
            _ => Err(format!("unexpected `{}`", self.describe(self.at - 1))),
        }
    }

    /// `N of x` (`None` is `all of x`).
    fn of(&mut self, n: Option<usize>) -> Result<Cond, String> {
        if self.peek() != Some(&Token::Of) {
            return Err(format!("expected `of`, found `{}`", self.describe(self.at)));
        }
        self.at += 1;
        let target = self.peek().cloned();
        self.at += 1;
        let ids: Vec<usize> = match &target {
            Some(Token::Them) => self
                .names
                .iter()
                .enumerate()
                .filter(|(_, name)| !name.starts_with('_'))
                .map(|(i, _)| i)
                .collect(),
            Some(Token::Name(pattern)) => {
                let ids: Vec<usize> = self
                    .names
                    .iter()
                    .enumerate()
                    .filter(|(_, name)| glob(pattern, name))
                    .map(|(i, _)| i)
                    .collect();
                if ids.is_empty() {
                    return Err(format!("no selection matches `{pattern}`"));
                }
                ids
            }
            _ => {
                return Err(format!(
                    "expected a selection pattern or `them`, found `{}`",
                    self.describe(self.at - 1)
                ))
            }
        };
        let needed = match n {
            None => ids.len(),
            Some(0) => return Err("`0 of` never matches".into()),
            Some(n) => n,
        };
        Ok(if needed == 1 && ids.len() == 1 {
            Cond::Sel(ids[0])
        } else if needed == ids.len() {
            Cond::And(ids.into_iter().map(Cond::Sel).collect())
        } else {
            Cond::AtLeast(needed, ids)
        })
    }
}

/// `*` matches any run of characters in a selection name.
fn glob(pattern: &str, name: &str) -> bool {
    let Some((head, rest)) = pattern.split_once('*') else {
        return pattern == name;
    };
    let Some(tail) = name.strip_prefix(head) else {
        return false;
    };
    if rest.is_empty() {
        return true;
    }
    (0..=tail.len())
        .filter(|i| tail.is_char_boundary(*i))
        .any(|i| glob(rest, &tail[i..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        ["sel_a", "sel_b", "filter", "_hidden"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    fn eval(text: &str, truth: [bool; 4]) -> bool {
        parse(text, &names()).unwrap().eval(&mut |i| truth[i])
    }

    #[test]
    fn boolean_operators_and_precedence() {
        assert!(eval("sel_a and not filter", [true, false, false, false]));
        assert!(!eval("sel_a and not filter", [true, false, true, false]));
        assert!(eval(
            "sel_a or sel_b and filter",
            [true, false, false, false]
        ));
        assert!(!eval(
            "(sel_a or sel_b) and filter",
            [true, false, false, false]
        ));
        assert!(eval("not not sel_a", [true, false, false, false]));
        assert!(eval("NOT sel_a OR sel_b", [false, false, false, false]));
        assert!(eval(
            "sel_a and (sel_b or (filter and not _hidden))",
            [true, false, true, false]
        ));
    }

    #[test]
    fn of_forms() {
        assert!(eval("1 of sel_*", [false, true, false, false]));
        assert!(!eval("all of sel_*", [false, true, false, false]));
        assert!(eval("all of sel_*", [true, true, false, false]));
        assert!(eval("1 of them", [false, false, true, false]));
        // `_hidden` is not in `them`.
        assert!(!eval("1 of them", [false, false, false, true]));
        assert!(eval("all of them", [true, true, true, false]));
        assert!(eval("2 of them", [true, false, true, false]));
        assert!(!eval("2 of them", [true, false, false, true]));
        assert!(eval(
            "1 of sel_* and not filter",
            [true, false, false, false]
        ));
        assert!(eval("all of *a", [true, false, false, false]));
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let err = |t: &str| parse(t, &names()).unwrap_err();
        assert!(err("sel_c").contains("no selection named `sel_c`"));
        assert!(err("1 of x*").contains("no selection matches"));
        assert!(err("(sel_a").contains("expected `)`"));
        assert!(err("sel_a and").contains("unexpected"));
        assert!(err("sel_a sel_b").contains("unexpected `sel_b`"));
        assert!(err("1 sel_a").contains("expected `of`"));
        assert!(err("sel_a | count() > 5").contains("correlation"));
        assert!(err("").contains("empty"));
        assert!(err("0 of them").contains("never"));
    }

    #[test]
    fn globs() {
        assert!(glob("sel*", "selection"));
        assert!(glob("*tion", "selection"));
        assert!(glob("s*l*n", "selection"));
        assert!(!glob("sel*x", "selection"));
        assert!(glob("selection", "selection"));
    }
}
