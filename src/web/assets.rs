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

/// The asset served at `path`, if any.
pub fn find(path: &str) -> Option<&'static Asset> {
    [&*STYLE, &*ICON].into_iter().find(|a| a.path == path)
}
