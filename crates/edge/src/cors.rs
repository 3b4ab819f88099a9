//! CORS with an allowlist. An entry is an exact origin (`https://app.example.id`) or a
//! pattern whose `*` stands for one or more DNS labels (`https://*.go.id` matches
//! `https://dinas.jakarta.go.id`, not `https://go.id` nor `https://evil.com/.go.id`).
//! No credentials mode: the API authenticates with bearer tokens, not cookies.

#[derive(Debug, Clone, Default)]
pub struct CorsPolicy {
    exact: Vec<String>,
    /// `(scheme + "://", ".suffix")` for `scheme://*.suffix`.
    wildcard: Vec<(String, String)>,
}

impl CorsPolicy {
    pub fn new(origins: &[String]) -> CorsPolicy {
        let mut policy = CorsPolicy::default();
        for origin in origins {
            let origin = origin.trim_end_matches('/').to_ascii_lowercase();
            match origin.split_once("://*") {
                Some((scheme, suffix)) if suffix.starts_with('.') => policy
                    .wildcard
                    .push((format!("{scheme}://"), suffix.to_string())),
                _ => policy.exact.push(origin),
            }
        }
        policy
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wildcard.is_empty()
    }

    pub fn allows(&self, origin: &str) -> bool {
        let origin = origin.to_ascii_lowercase();
        if self.exact.contains(&origin) {
            return true;
        }
        self.wildcard.iter().any(|(scheme, suffix)| {
            let Some(host) = origin
                .strip_prefix(scheme.as_str())
                .and_then(|rest| rest.strip_suffix(suffix.as_str()))
            else {
                return false;
            };
            !host.is_empty()
                && host.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_wildcard_origins() {
        let p = CorsPolicy::new(&["https://*.go.id".into(), "https://app.example.id/".into()]);
        assert!(p.allows("https://app.example.id"));
        assert!(p.allows("https://dinas.jakarta.go.id"));
        assert!(p.allows("https://KEMNAKER.GO.ID"));
        for denied in [
            "https://go.id",
            "http://dinas.go.id",
            "https://evil.com/.go.id",
            "https://evil.com?.go.id",
            "https://a..go.id",
            "https://evil.go.id.evil.com",
            "https://app.example.id.evil.com",
            "null",
        ] {
            assert!(!p.allows(denied), "{denied}");
        }
    }
}
