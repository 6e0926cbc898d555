//! The operator's dashboard as served: a page with no inline script and
//! nothing from elsewhere, its assets with their types, and the headers
//! that keep it from being framed, cached or leaking its address. What the
//! page does in a browser is `.ci/dashboard`'s to test.

use reqwest::{Method, StatusCode};

use crate::helpers::{TestApp, spawn_app};

/// Every header the dashboard's answers carry, whatever the file.
fn assert_secured(response: &reqwest::Response, path: &str) {
    let headers = response.headers();
    let csp = headers["content-security-policy"].to_str().unwrap();
    let directives: Vec<&str> = csp.split(';').map(str::trim).collect();
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "form-action 'none'",
        "base-uri 'none'",
        "object-src 'none'",
    ] {
        assert!(directives.contains(&directive), "{path}: {csp}");
    }
    assert!(!csp.contains("unsafe-"), "{path}: {csp}");
    assert_eq!(headers["x-frame-options"], "DENY", "{path}");
    assert_eq!(headers["referrer-policy"], "no-referrer", "{path}");
    assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
    assert!(headers.get("set-cookie").is_none(), "{path}");
}

async fn get(app: &TestApp, path: &str) -> reqwest::Response {
    let response = app.send(Method::GET, path, None, None).await;
    assert_eq!(response.status(), StatusCode::OK, "GET {path}");
    response
}

#[tokio::test]
async fn the_page_is_served_without_a_key_with_strict_headers() {
    let app = spawn_app().await;

    let response = get(&app, "/dashboard").await;

    assert_secured(&response, "/dashboard");
    let headers = response.headers();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(headers["cache-control"], "no-store");
    let html = response.text().await.unwrap();
    assert!(html.starts_with("<!doctype html>"), "{html}");
    assert!(html.contains("id=\"login-form\""));
    assert!(html.contains("<label for=\"admin-key\">"));
}

#[tokio::test]
async fn the_page_runs_no_inline_script_and_loads_only_its_own_assets() {
    let app = spawn_app().await;
    let html = get(&app, "/dashboard").await.text().await.unwrap();
    let lower = html.to_lowercase();

    // Every script has a src, and no element carries a handler or a style
    // of its own: the policy would block them, and a page that needed
    // them would be broken.
    for tag in lower.split("<script").skip(1) {
        let open = &tag[..tag.find('>').unwrap()];
        assert!(open.contains(" src=\""), "inline script: <script{open}>");
        assert!(tag[tag.find('>').unwrap() + 1..].starts_with("</script>"));
    }
    for forbidden in [" style=", "javascript:"] {
        assert!(!lower.contains(forbidden), "{forbidden} in the page");
    }
    for (at, _) in lower.match_indices(char::is_whitespace) {
        let word: String = lower[at + 1..]
            .chars()
            .take_while(|c| c.is_ascii_alphabetic())
            .collect();
        let handler = word.len() > 2 && word.starts_with("on");
        assert!(
            !(handler && lower[at + 1 + word.len()..].starts_with('=')),
            "an inline handler: {word}="
        );
    }
    // The key's field has no name, so no form submission could carry it.
    let field = &lower[lower.find("id=\"admin-key\"").unwrap()..];
    assert!(!field[..field.find('>').unwrap()].contains("name="));

    let mut references = Vec::new();
    for attribute in ["src=\"", "href=\""] {
        for piece in html.split(attribute).skip(1) {
            references.push(piece.split('"').next().unwrap().to_owned());
        }
    }
    references.sort();
    assert_eq!(
        references,
        [
            "/dashboard/app.css",
            "/dashboard/app.js",
            "/dashboard/icon.svg"
        ]
    );
}

#[tokio::test]
async fn the_assets_are_served_with_their_types() {
    let app = spawn_app().await;
    for (path, content_type) in [
        ("/dashboard/app.js", "text/javascript; charset=utf-8"),
        ("/dashboard/app.css", "text/css; charset=utf-8"),
        ("/dashboard/icon.svg", "image/svg+xml"),
    ] {
        let response = get(&app, path).await;

        assert_secured(&response, path);
        assert_eq!(response.headers()["content-type"], content_type, "{path}");
        assert_eq!(response.headers()["cache-control"], "no-cache", "{path}");
        assert!(!response.bytes().await.unwrap().is_empty(), "{path}");
    }

    let script = app.get_text("/dashboard/app.js").await;
    // It writes what the server sends as text, never as markup, and reads
    // the admin routes with the key from session storage.
    assert!(!script.contains("innerHTML"));
    assert!(!script.contains("document.write"));
    assert!(!script.contains("document.cookie"));
    assert!(!script.contains("localStorage."));
    assert!(script.contains("sessionStorage"));
    for route in ["/admin/stats", "/admin/parties", "/admin/relays"] {
        assert!(script.contains(route), "{route}");
    }
    // Nothing from elsewhere: no URL with a scheme in the script or style.
    let style = app.get_text("/dashboard/app.css").await;
    for (name, text) in [("app.js", &script), ("app.css", &style)] {
        assert!(!text.contains("http://"), "{name}");
        assert!(!text.contains("https://"), "{name}");
        assert!(!text.contains("@import"), "{name}");
    }
}

#[tokio::test]
async fn an_unknown_asset_is_a_404_with_a_detail() {
    let app = spawn_app().await;
    for path in ["/dashboard/nothing.js", "/dashboard/..%2Fapp.js"] {
        let response = app.send(Method::GET, path, None, None).await;

        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        let body: lanrage_proto::ErrorBody = response.json().await.unwrap();
        assert_eq!(body.detail, "no such asset", "{path}");
    }
}

#[tokio::test]
async fn the_dashboard_is_documented_without_credentials() {
    let app = spawn_app().await;
    let document: serde_json::Value = app
        .send(Method::GET, "/openapi.json", None, None)
        .await
        .json()
        .await
        .unwrap();
    for path in ["/dashboard", "/dashboard/{file}"] {
        let operation = &document["paths"][path]["get"];
        assert_eq!(operation["tags"][0], "dashboard", "{path}");
        assert!(operation.get("security").is_none(), "{path}");
    }
}
