//! The web console at `/console/`: server-rendered pages for browsers, served by the same
//! binary, with nothing to install.
//!
//! **One authority.** A page never reads the database behind the API's back. Each page
//! calls the API in-process (a `tower` call into the same router the API serves, without
//! a second trip through the edge), as the signed-in user: the request carries a
//! [`rampart_identity::ConsoleCaller`] extension naming the browser's identity session,
//! which goes through the same session check and RBAC as an access token. So a page shows
//! exactly what the API lets that user see, another tenant's objects never appear, and an
//! error the API gives is the message the page shows next to its field.
//!
//! **Sessions** (see [`session`]): a `HttpOnly`, `SameSite=Strict` cookie (`Secure` and
//! `__Host-` under TLS) holding a random secret whose digest names a `console_sessions`
//! row bound to one identity session; idle and absolute timeouts; logout, a disabled user
//! and a role change end it at once. Every state-changing form carries a synchroniser
//! CSRF token derived from the cookie secret, and cross-site requests are refused on
//! `Sec-Fetch-Site` / `Origin` before any handler runs.
//!
//! **Pages** are maud templates (escaped at compile time) with plain CSS and a vendored,
//! pinned htmx, all compiled into the binary and served under content-hashed names. The
//! CSP has no `unsafe-inline` and no `unsafe-eval`.
//!
//! Apps add their pages through [`ConsoleBuilder::pages`], which the app registration
//! point calls with each app's routes and navigation entries.

pub mod api;
mod assets;
mod i18n;
mod layout;
pub mod pages;
mod session;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use rampart_identity::Identity;

pub use api::{Answer, Api};
pub use i18n::{Lang, Zone};
pub use layout::{banner, csrf_field, field, NavItem, Page, Shell};
pub use session::{Browser, Csrf, SignedIn};

/// The console's settings (`[console]` in the config).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Off: `/console/` answers 404 (an API-only deployment).
    pub enabled: bool,
    /// A session unused this long ends (ASVS 7.3.1: 30 minutes by default).
    pub idle_timeout: Duration,
    /// A session ends this long after sign-in, however busy (ASVS 7.3.2: 12 hours).
    pub absolute_timeout: Duration,
    /// Served over TLS: cookies are `Secure` and `__Host-` prefixed.
    pub tls: bool,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            enabled: true,
            idle_timeout: Duration::from_secs(30 * 60),
            absolute_timeout: Duration::from_secs(12 * 3600),
            tls: false,
        }
    }
}

/// What a page handler gets: the API (as the signed-in user), identity (for the role's
/// permissions, to draw navigation) and the settings.
#[derive(Clone)]
pub struct Console {
    inner: Arc<Inner>,
}

struct Inner {
    api: Api,
    identity: Identity,
    settings: Settings,
    nav: Vec<NavItem>,
}

impl Console {
    pub fn api(&self) -> &Api {
        &self.inner.api
    }
    pub fn identity(&self) -> &Identity {
        &self.inner.identity
    }
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }
    pub(crate) fn nav(&self) -> &[NavItem] {
        &self.inner.nav
    }
}

/// Collects the platform's pages and each app's, then builds the `/console` router.
pub struct ConsoleBuilder {
    routes: Router<Console>,
    nav: Vec<NavItem>,
}

impl Default for ConsoleBuilder {
    fn default() -> ConsoleBuilder {
        let (routes, nav) = pages::platform();
        ConsoleBuilder { routes, nav }
    }
}

impl ConsoleBuilder {
    /// Adds an app's pages (paths under `/console/`) and its navigation entries (shown to
    /// users holding each entry's permission).
    pub fn pages(mut self, routes: Router<Console>, nav: Vec<NavItem>) -> ConsoleBuilder {
        self.routes = self.routes.merge(routes);
        self.nav.extend(nav);
        self
    }

    /// The `/console` router. `api` is the API router without the edge layers (the
    /// browser's request has crossed them already); the result goes inside them.
    pub fn build(self, api: Router, identity: Identity, settings: Settings) -> Router {
        if !settings.enabled {
            return Router::new();
        }
        let console = Console {
            inner: Arc::new(Inner {
                api: Api::new(api),
                identity,
                settings,
                nav: self.nav,
            }),
        };
        self.routes
            .merge(session::routes())
            .merge(assets::routes())
            .layer(axum::middleware::from_fn_with_state(
                console.clone(),
                session::refuse_cross_site,
            ))
            .layer(axum::middleware::from_fn(layout::page_headers))
            .with_state(console)
    }
}

/// Every page path the console serves, for the cross-tenant sweep of the tests (the
/// console's own "OpenAPI document").
pub fn page_paths() -> Vec<&'static str> {
    pages::PAGE_PATHS.to_vec()
}
