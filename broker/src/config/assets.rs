//! Files the configuration names and the broker serves itself: connectors' logos per
//! language (shown on the choice page).
//!
//! Logos are files named in the configuration, read and checked once at load, and served
//! by the broker itself: the pages' Content-Security-Policy allows images from the broker
//! only, and a citizen's browser never asks a third party for a picture of the choice page.

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest, Sha256};

/// Largest logo file accepted.
pub const MAX_LOGO_BYTES: u64 = 128 * 1024;

/// A logo, in memory.
#[derive(Debug, Clone)]
pub struct Logo {
    /// MIME type, from the file's extension and checked against its content.
    pub content_type: &'static str,
    /// The file.
    pub bytes: bytes::Bytes,
    /// A short hash of the content: part of the URL, so a changed file is fetched anew.
    pub version: String,
}

/// Reads and checks a logo file (PNG, JPEG, WebP or SVG, at most [`MAX_LOGO_BYTES`]).
pub fn load_logo(path: &Path) -> Result<Logo, String> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let content_type = match ext.as_str() {
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        _ => return Err("must be a .svg, .png, .jpg or .webp file".into()),
    };
    let size = std::fs::metadata(path)
        .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?
        .len();
    if size > MAX_LOGO_BYTES {
        return Err(format!(
            "`{}` has {size} bytes; a logo may have at most {MAX_LOGO_BYTES}",
            path.display()
        ));
    }
    let bytes =
        std::fs::read(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    let looks_right = match content_type {
        "image/png" => bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "image/jpeg" => bytes.starts_with(&[0xFF, 0xD8, 0xFF]),
        "image/webp" => bytes.len() > 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP",
        _ => std::str::from_utf8(&bytes).is_ok_and(|t| t.contains("<svg")),
    };
    if !looks_right {
        return Err(format!("`{}` is not a {content_type} file", path.display()));
    }
    let digest = Sha256::digest(&bytes);
    let version = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    Ok(Logo {
        content_type,
        bytes: bytes::Bytes::from(bytes),
        version,
    })
}

/// The URL of a connector's logo for a language, falling back to English, then any.
pub fn logo_url(id: &str, logos: &BTreeMap<String, Logo>, lang: &str) -> Option<String> {
    let (lang, logo) = logos
        .get_key_value(lang)
        .or_else(|| logos.get_key_value("en"))
        .or_else(|| logos.iter().next())?;
    Some(format!("/connectors/{id}/logo/{lang}?v={}", logo.version))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).expect("write");
        path
    }

    #[test]
    fn logos_are_checked_by_type_and_size() {
        let dir = tempfile::tempdir().expect("dir");
        let svg = load_logo(&write(
            dir.path(),
            "a.svg",
            b"<svg xmlns='http://www.w3.org/2000/svg'/>",
        ))
        .expect("svg");
        assert_eq!(svg.content_type, "image/svg+xml");
        assert_eq!(svg.version.len(), 12);
        let png = write(dir.path(), "b.png", b"\x89PNG\r\n\x1a\n....");
        assert_eq!(load_logo(&png).expect("png").content_type, "image/png");
        let fake = write(dir.path(), "c.png", b"<svg/>");
        assert!(load_logo(&fake).unwrap_err().contains("not a image/png"));
        let gif = write(dir.path(), "d.gif", b"GIF89a");
        assert!(load_logo(&gif).unwrap_err().contains(".svg, .png"));
        let big = write(
            dir.path(),
            "e.svg",
            &vec![b' '; MAX_LOGO_BYTES as usize + 1],
        );
        assert!(load_logo(&big).unwrap_err().contains("at most"));
        assert!(load_logo(&dir.path().join("missing.svg"))
            .unwrap_err()
            .contains("cannot read"));
    }

    #[test]
    fn the_url_follows_the_language_with_english_as_fallback() {
        let logo = |v: &str| Logo {
            content_type: "image/svg+xml",
            bytes: bytes::Bytes::new(),
            version: v.into(),
        };
        let logos = BTreeMap::from([
            ("en".to_string(), logo("e1")),
            ("zh".to_string(), logo("z1")),
        ]);
        assert_eq!(
            logo_url("ctid", &logos, "zh").as_deref(),
            Some("/connectors/ctid/logo/zh?v=z1")
        );
        assert_eq!(
            logo_url("ctid", &logos, "vi").as_deref(),
            Some("/connectors/ctid/logo/en?v=e1")
        );
        assert_eq!(logo_url("ctid", &BTreeMap::new(), "vi"), None);
    }
}
