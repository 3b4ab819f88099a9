//! Message templates: per kind, an Indonesian and an English version, each with a
//! subject, a text part and an HTML part. Placeholders are `{{name}}`; every value is
//! HTML-escaped in the HTML part, and a subject that would hold a line break is refused
//! (header injection). Apps register theirs; the template text is ours, only the values
//! come from users.

use std::collections::HashMap;

use serde_json::Value;

/// The languages Rampart writes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Locale {
    Id,
    En,
}

impl Locale {
    /// `id` or `en` (a region is ignored: `id-ID`, `en-GB`); anything else is an error
    /// the caller turns into a 4xx.
    pub fn parse(raw: &str) -> Result<Locale, String> {
        let lang = raw.trim().split(['-', '_']).next().unwrap_or("");
        match lang.to_ascii_lowercase().as_str() {
            "id" => Ok(Locale::Id),
            "en" => Ok(Locale::En),
            _ => Err("must be `id` or `en`".into()),
        }
    }

    /// The first of `id`/`en` in an `Accept-Language` header, by weight; English when
    /// it names neither.
    pub fn from_accept_language(header: Option<&str>) -> Locale {
        let Some(header) = header else {
            return Locale::En;
        };
        let mut best: Option<(f32, Locale)> = None;
        for part in header.split(',').take(20) {
            let mut it = part.split(';');
            let tag = it.next().unwrap_or("");
            let q = it
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            if let Ok(l) = Locale::parse(tag) {
                if best.is_none_or(|(bq, _)| q > bq) {
                    best = Some((q, l));
                }
            }
        }
        best.map(|(_, l)| l).unwrap_or(Locale::En)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Locale::Id => "id",
            Locale::En => "en",
        }
    }
}

/// One language of a template.
#[derive(Debug, Clone, Copy)]
pub struct Text {
    pub subject: &'static str,
    pub text: &'static str,
    pub html: &'static str,
}

/// A message kind in both languages.
#[derive(Debug, Clone, Copy)]
pub struct Template {
    pub kind: &'static str,
    pub id: Text,
    pub en: Text,
    /// A security notice: sent whatever the user's preferences say.
    pub security: bool,
}

/// What a template made of some data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("no template {0:?}")]
    Unknown(String),
    #[error("template data has no value for {0:?}")]
    Missing(String),
    #[error("the subject would contain a line break")]
    HeaderInjection,
}

/// The registered templates, by kind.
#[derive(Debug, Clone, Default)]
pub struct Templates {
    by_kind: HashMap<&'static str, Template>,
}

impl Templates {
    pub fn register(&mut self, t: Template) {
        self.by_kind.insert(t.kind, t);
    }

    pub fn get(&self, kind: &str) -> Option<&Template> {
        self.by_kind.get(kind)
    }

    pub fn render(
        &self,
        kind: &str,
        locale: Locale,
        data: &Value,
    ) -> Result<Rendered, RenderError> {
        let t = self
            .get(kind)
            .ok_or_else(|| RenderError::Unknown(kind.to_string()))?;
        let text = match locale {
            Locale::Id => t.id,
            Locale::En => t.en,
        };
        let subject = fill(text.subject, data, |s| s.to_string())?;
        if subject.contains(['\r', '\n']) {
            return Err(RenderError::HeaderInjection);
        }
        Ok(Rendered {
            subject,
            text: fill(text.text, data, |s| s.to_string())?,
            html: fill(text.html, data, escape_html)?,
        })
    }
}

fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Replaces each `{{key}}` with `data[key]` passed through `encode`.
fn fill(
    template: &str,
    data: &Value,
    encode: impl Fn(&str) -> String,
) -> Result<String, RenderError> {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let key = after[..end].trim();
        let value = data
            .get(key)
            .and_then(value_text)
            .ok_or_else(|| RenderError::Missing(key.to_string()))?;
        out.push_str(&encode(&value));
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn templates() -> Templates {
        let mut t = Templates::default();
        t.register(Template {
            kind: "hello",
            id: Text {
                subject: "Halo {{name}}",
                text: "Halo {{name}}, buka {{link}}",
                html: "<p>Halo {{name}}, <a href=\"{{link}}\">buka</a></p>",
            },
            en: Text {
                subject: "Hello {{name}}",
                text: "Hello {{name}}, open {{link}}",
                html: "<p>Hello {{name}}, <a href=\"{{link}}\">open</a></p>",
            },
            security: false,
        });
        t
    }

    #[test]
    fn values_are_escaped_in_html_only() {
        let r = templates()
            .render(
                "hello",
                Locale::En,
                &json!({"name": "<script>alert(1)</script>", "link": "https://x/?a=1&b=\"2\""}),
            )
            .unwrap();
        assert_eq!(
            r.text,
            "Hello <script>alert(1)</script>, open https://x/?a=1&b=\"2\""
        );
        assert!(!r.html.contains("<script>"), "{}", r.html);
        assert!(r.html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(r
            .html
            .contains("href=\"https://x/?a=1&amp;b=&quot;2&quot;\""));
    }

    #[test]
    fn line_breaks_in_a_subject_are_refused() {
        let e = templates()
            .render(
                "hello",
                Locale::Id,
                &json!({"name": "x\r\nBcc: a@b.c", "link": "l"}),
            )
            .unwrap_err();
        assert_eq!(e, RenderError::HeaderInjection);
    }

    #[test]
    fn missing_values_and_unknown_kinds_are_errors() {
        assert!(matches!(
            templates().render("hello", Locale::En, &json!({"name": "a"})),
            Err(RenderError::Missing(k)) if k == "link"
        ));
        assert!(templates().render("nope", Locale::En, &json!({})).is_err());
    }

    #[test]
    fn locales_parse_strictly_and_negotiate_loosely() {
        assert_eq!(Locale::parse("id-ID"), Ok(Locale::Id));
        assert_eq!(Locale::parse("EN"), Ok(Locale::En));
        assert!(Locale::parse("fr").is_err());
        assert!(Locale::parse("").is_err());
        assert_eq!(
            Locale::from_accept_language(Some("fr;q=1, id;q=0.8, en;q=0.5")),
            Locale::Id
        );
        assert_eq!(Locale::from_accept_language(Some("de")), Locale::En);
        assert_eq!(Locale::from_accept_language(None), Locale::En);
    }
}
