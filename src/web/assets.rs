//! Static assets, embedded in the binary and served from our own origin under a
//! content-hashed path, so that they can be cached forever and never go stale.

use std::sync::LazyLock;

/// One embedded asset.
pub struct Asset {
    /// `/static/<name>.<hash>.<ext>`
    pub path: String,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
}

fn hashed(name: &str, ext: &str, content_type: &'static str, bytes: &'static [u8]) -> Asset {
    let digest = crate::crypto::sha256(bytes);
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    Asset {
        path: format!("/static/{name}.{hex}.{ext}"),
        content_type,
        bytes,
    }
}

/// The stylesheet.
pub static STYLE: LazyLock<Asset> = LazyLock::new(|| {
    hashed(
        "style",
        "css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/style.css"),
    )
});

/// The icon.
pub static ICON: LazyLock<Asset> = LazyLock::new(|| {
    hashed(
        "icon",
        "svg",
        "image/svg+xml",
        include_bytes!("../../assets/icon.svg"),
    )
});

/// The icon as a 32×32 PNG, for browsers and tools that do not draw SVG (Tor Browser's
/// Safest level sets `svg.disabled`). Rendered from `icon.svg`: `assets/README.md`.
pub static ICON_PNG: LazyLock<Asset> = LazyLock::new(|| {
    hashed(
        "icon-32",
        "png",
        "image/png",
        include_bytes!("../../assets/icon-32.png"),
    )
});

/// A script of the end-to-end tier: plain JavaScript written in this repository
/// (`assets/js/`), no build step. Served only to the pages that use it, under a
/// content-hashed path, and referenced with Subresource Integrity.
pub struct Script {
    pub asset: Asset,
    /// `sha384-<base64>` of the bytes (the `integrity` attribute).
    pub integrity: String,
    /// SHA-256 of the bytes, hex (published: `ghostcache script-hashes`, README).
    pub sha256_hex: String,
}

fn script(name: &str, bytes: &'static [u8]) -> Script {
    use base64::Engine as _;
    use sha2::Digest as _;
    let asset = hashed(
        &format!("js/{name}"),
        "js",
        "text/javascript; charset=utf-8",
        bytes,
    );
    let integrity = format!(
        "sha384-{}",
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha384::digest(bytes))
    );
    let sha256_hex = crate::crypto::sha256(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Script {
        asset,
        integrity,
        sha256_hex,
    }
}

/// Shared code of the end-to-end pages: WebCrypto, the key ring, the API and WebSocket.
pub static E2E_CORE: LazyLock<Script> =
    LazyLock::new(|| script("e2e-core", include_bytes!("../../assets/js/e2e-core.js")));
/// The password forms (login, registration, settings): the login-secret derivation.
pub static LOGIN_SECRET: LazyLock<Script> = LazyLock::new(|| {
    script(
        "login-secret",
        include_bytes!("../../assets/js/login-secret.js"),
    )
});
/// The end-to-end settings page (turning end-to-end mode on, new keys).
pub static E2E_SETUP: LazyLock<Script> =
    LazyLock::new(|| script("e2e-setup", include_bytes!("../../assets/js/e2e-setup.js")));
/// The end-to-end overview (conversations, groups, invitations).
pub static E2E_LIST: LazyLock<Script> =
    LazyLock::new(|| script("e2e-list", include_bytes!("../../assets/js/e2e-list.js")));
/// An end-to-end conversation or group.
pub static E2E_CONVERSATION: LazyLock<Script> = LazyLock::new(|| {
    script(
        "e2e-conversation",
        include_bytes!("../../assets/js/e2e-conversation.js"),
    )
});

/// The upload page and a file's page: files encrypted and decrypted in the browser.
pub static E2E_FILES: LazyLock<Script> =
    LazyLock::new(|| script("e2e-files", include_bytes!("../../assets/js/e2e-files.js")));

/// Every script, in the order `ghostcache script-hashes` lists them.
pub fn scripts() -> [&'static Script; 6] {
    [
        &*E2E_CORE,
        &*LOGIN_SECRET,
        &*E2E_SETUP,
        &*E2E_LIST,
        &*E2E_CONVERSATION,
        &*E2E_FILES,
    ]
}

/// The asset served at `path`, if any.
pub fn find(path: &str) -> Option<&'static Asset> {
    [&*STYLE, &*ICON, &*ICON_PNG]
        .into_iter()
        .chain(scripts().into_iter().map(|s| &s.asset))
        .find(|a| a.path == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_png_icon_is_a_32_pixel_square_with_transparency() {
        let png = ICON_PNG.bytes;
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
        // IHDR: width, height, bit depth 8, colour type 6 (RGBA).
        assert_eq!(png.get(12..16), Some(&b"IHDR"[..]));
        assert_eq!(png.get(16..24), Some(&[0, 0, 0, 32, 0, 0, 0, 32][..]));
        assert_eq!(png.get(24..26), Some(&[8, 6][..]));
    }

    #[test]
    fn the_stylesheet_loads_no_font_and_nothing_from_elsewhere() {
        let css = std::str::from_utf8(STYLE.bytes).unwrap();
        assert!(!css.is_empty());
        assert!(!css.contains("@font-face"), "no web fonts");
        assert!(!css.contains("@import"));
        assert!(
            !css.contains("url("),
            "no resource loaded from the stylesheet"
        );
    }
}
