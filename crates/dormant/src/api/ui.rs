//! The dashboard at `/ui`: plain HTML, CSS and JavaScript compiled into the
//! binary. The files themselves need no token (they hold no data); every API
//! call the page makes carries the token the user signs in with. Strict
//! headers keep the page from running anything but its own files and from
//! being framed.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::{ApiError, ApiState};

const INDEX_HTML: &str = include_str!("ui/index.html");
const APP_JS: &str = include_str!("ui/app.js");
const STYLE_CSS: &str = include_str!("ui/style.css");
const ICON_SVG: &str = include_str!("ui/icon.svg");

/// Only the page's own files may load; nothing may frame it; forms post
/// nowhere (the page sends JSON with `fetch`).
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/ui", get(index))
        .route("/ui/", get(index))
        .route("/ui/{file}", get(asset))
}

async fn index() -> Response {
    file("text/html; charset=utf-8", INDEX_HTML)
}

async fn asset(Path(name): Path<String>) -> Response {
    match name.as_str() {
        "app.js" => file("text/javascript; charset=utf-8", APP_JS),
        "style.css" => file("text/css; charset=utf-8", STYLE_CSS),
        "icon.svg" => file("image/svg+xml", ICON_SVG),
        _ => with_security_headers(
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no_such_file",
                format!("the dashboard has no file {name:?}; it is at /ui"),
            )
            .into_response(),
        ),
    }
}

fn file(content_type: &'static str, body: &'static str) -> Response {
    let mut response = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    // The files change with the binary; a browser asks again each time
    // rather than run an older dashboard against a newer API.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    with_security_headers(response)
}

fn with_security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_has_no_inline_script_or_style_for_the_policy_to_block() {
        // The policy allows only 'self': an inline script, handler or style
        // would be silently refused by the browser.
        for forbidden in ["<script>", "onclick=", "onload=", "style=", "<style"] {
            assert!(
                !INDEX_HTML.contains(forbidden),
                "index.html contains {forbidden}"
            );
        }
        assert!(INDEX_HTML.contains(r#"<script src="/ui/app.js" defer></script>"#));
        assert!(INDEX_HTML.contains(r#"href="/ui/style.css""#));
    }
}
