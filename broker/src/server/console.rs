//! The web console at `/console`: one page of HTML, CSS and JavaScript built into the binary
//! (no separate process, no Node toolchain at run time), reading the admin API of the broker
//! that serves it. It sits behind the same authentication as the API: with `admin_auth` on,
//! the browser asks for a user and password and the console acts as that user.

use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;

use crate::node::Node;

const INDEX: &str = include_str!("console/index.html");
const SCRIPT: &str = include_str!("console/console.js");
const STYLE: &str = include_str!("console/console.css");

/// The assets are small and change only with the binary: the browser asks again each time
/// (a new version's console is never mixed with an old cached script).
const NO_CACHE: (header::HeaderName, &str) = (header::CACHE_CONTROL, "no-cache");
/// Only this origin's scripts, styles and API.
const POLICY: (header::HeaderName, &str) = (
    header::CONTENT_SECURITY_POLICY,
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
);

fn asset(kind: &'static str, body: &'static str) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, kind), NO_CACHE, POLICY], body)
}

/// The console's routes, for the admin server's router.
pub(super) fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/console") }))
        .route(
            "/console",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/console/console.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/console/console.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
}
