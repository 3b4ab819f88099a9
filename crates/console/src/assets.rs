//! Static files, compiled into the binary and served under content-hashed names, so a
//! browser may cache them for a year and a new release is fetched at once.
//!
//! htmx 2.0.11 is vendored from the npm package `htmx.org@2.0.11` (`dist/htmx.min.js`),
//! licence 0BSD (`assets/htmx-LICENSE.txt`). Its SHA-256 is pinned below and checked by a
//! test, so a changed file is a reviewed change.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};

use crate::Console;

const HTMX: &[u8] = include_bytes!("../assets/htmx-2.0.11.min.js");
/// sha256 of `htmx.org@2.0.11/dist/htmx.min.js` as published on npm.
#[cfg(test)]
const HTMX_SHA256: &str = "d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717";
const CSS: &[u8] = include_bytes!("../assets/console.css");
const APP_JS: &[u8] = include_bytes!("../assets/console.js");

struct Asset {
    name: String,
    body: &'static [u8],
    content_type: &'static str,
}

fn assets() -> &'static [Asset; 3] {
    static ASSETS: OnceLock<[Asset; 3]> = OnceLock::new();
    ASSETS.get_or_init(|| {
        let named = |stem: &str, ext: &str, body: &'static [u8], content_type| {
            let digest = hex(&Sha256::digest(body));
            Asset {
                name: format!("{stem}.{}.{ext}", &digest[..12]),
                body,
                content_type,
            }
        };
        [
            named("htmx-2.0.11", "js", HTMX, "text/javascript; charset=utf-8"),
            named("console", "css", CSS, "text/css; charset=utf-8"),
            named("console", "js", APP_JS, "text/javascript; charset=utf-8"),
        ]
    })
}

/// `/console/assets/<hashed name>` of htmx, the style sheet and our own script.
pub(crate) fn htmx_path() -> String {
    format!("/console/assets/{}", assets()[0].name)
}
pub(crate) fn css_path() -> String {
    format!("/console/assets/{}", assets()[1].name)
}
pub(crate) fn js_path() -> String {
    format!("/console/assets/{}", assets()[2].name)
}

pub(crate) fn routes() -> Router<Console> {
    Router::new().route("/console/assets/{name}", get(serve))
}

async fn serve(Path(name): Path<String>) -> Response {
    match assets().iter().find(|a| a.name == name) {
        Some(a) => (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(a.content_type),
                ),
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=31536000, immutable"),
                ),
            ],
            a.body,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendored_htmx_is_the_pinned_release() {
        assert_eq!(hex(&Sha256::digest(HTMX)), HTMX_SHA256);
        // Its configuration names must exist in this release (the meta tag sets them).
        let text = std::str::from_utf8(HTMX).unwrap();
        for name in [
            "allowEval",
            "includeIndicatorStyles",
            "allowScriptTags",
            "historyEnabled",
            "historyCacheSize",
        ] {
            assert!(text.contains(name), "{name} is not an htmx 2.0.11 option");
        }
    }

    #[test]
    fn names_carry_the_content_hash() {
        assert!(htmx_path().starts_with("/console/assets/htmx-2.0.11."));
        assert!(css_path().ends_with(".css"));
        assert_ne!(css_path(), js_path());
    }
}
