//! What Tor Browser's Safest level turns off must not matter, checked over HTTP: every
//! page links a PNG icon beside the SVG one (Safest sets `svg.disabled`), carries no
//! script it needs, and loads no font; the icons are served from our origin, cacheable.

use hyper::StatusCode;

use crate::support::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_links_a_png_icon_and_needs_no_script_svg_or_font() {
    let server = TestServer::start().await;
    let mut c = server.client();
    c.member("iconic").await;
    for path in [
        "/",
        "/settings",
        "/connections",
        "/chat/groups",
        "/files",
        "/nope",
    ] {
        let page = c.get(path).await;
        let doc = page.html();
        let icons: Vec<(String, String)> = doc
            .select(&scraper::Selector::parse("link[rel=icon]").unwrap())
            .map(|l| {
                (
                    l.value().attr("type").unwrap_or("").to_owned(),
                    l.value().attr("href").unwrap().to_owned(),
                )
            })
            .collect();
        let types: Vec<&str> = icons.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(types, ["image/svg+xml", "image/png"], "{path}");
        for (kind, href) in &icons {
            let icon = c.get(href).await;
            assert_eq!(icon.status, StatusCode::OK, "{href}");
            assert_eq!(icon.header("content-type"), Some(kind.as_str()));
            assert_eq!(
                icon.header("cache-control"),
                Some("public, max-age=31536000, immutable")
            );
        }
        let png = c.get(&icons[1].1).await;
        assert!(png.body.starts_with(b"\x89PNG\r\n\x1a\n"));
        let text = page.text();
        // The settings page's password forms carry the login-secret script, which only
        // replaces what the forms send when it runs (without it they send the password:
        // `login_secret`); every other page carries none.
        if path != "/settings" {
            assert!(!text.contains("<script"), "{path}: a script");
        }
        assert!(!text.contains("<svg"), "{path}: inline SVG");
        assert!(!text.contains("<math"), "{path}: MathML");
        let csp = page.header("content-security-policy").unwrap();
        assert!(csp.starts_with("default-src 'none'"), "{csp}");
        assert!(!csp.contains("font-src"), "no font may load: {csp}");
    }
}
