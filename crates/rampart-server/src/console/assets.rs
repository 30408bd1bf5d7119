//! The console's stylesheet and script, embedded in the binary at build time and served under
//! URLs that carry their content hash, so browsers may cache them for a year: a changed file
//! gets a new URL.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::helpers::sha256_hex;

/// One embedded file.
struct Asset {
    /// `console-<first 16 hex digits of its SHA-256>.<ext>`.
    name: String,
    content_type: &'static str,
    body: &'static str,
}

impl Asset {
    fn new(stem: &str, ext: &str, content_type: &'static str, body: &'static str) -> Asset {
        let digest = sha256_hex(body.as_bytes());
        Asset {
            name: format!("{stem}-{}.{ext}", &digest[..16]),
            content_type,
            body,
        }
    }
}

static CSS: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        "console",
        "css",
        "text/css; charset=utf-8",
        include_str!("assets/console.css"),
    )
});

static JS: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        "console",
        "js",
        "text/javascript; charset=utf-8",
        include_str!("assets/console.js"),
    )
});

/// The stylesheet's URL.
pub(super) fn css_url() -> String {
    format!("/console/assets/{}", CSS.name)
}

/// The script's URL.
pub(super) fn script_url() -> String {
    format!("/console/assets/{}", JS.name)
}

/// `GET /console/assets/{name}`: an embedded file by its hashed name (404 for any other name,
/// an outdated hash included).
pub(super) async fn serve(Path(name): Path<String>) -> Response {
    let Some(asset) = [&*CSS, &*JS].into_iter().find(|a| a.name == name) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            ),
        ],
        asset.body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asset_urls_carry_the_content_hash() {
        let css = sha256_hex(include_str!("assets/console.css").as_bytes());
        assert_eq!(
            css_url(),
            format!("/console/assets/console-{}.css", &css[..16])
        );
        let js = sha256_hex(include_str!("assets/console.js").as_bytes());
        assert_eq!(
            script_url(),
            format!("/console/assets/console-{}.js", &js[..16])
        );
    }

    #[test]
    fn the_assets_need_no_inline_permission() {
        // The CSP allows no inline script or style and no other origin: nothing embedded may
        // reach outside the console.
        for body in [CSS.body, JS.body] {
            for outside in [
                "http://",
                "https://",
                "//cdn",
                "eval(",
                "innerHTML",
                "@import",
            ] {
                assert!(!body.contains(outside), "{outside} in an asset");
            }
        }
    }
}
