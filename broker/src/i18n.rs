//! Citizen-facing languages (Vietnamese, Chinese, Spanish, English) with Fluent messages in
//! `broker/locales/<lang>/main.ftl`. The language comes from the relying party's
//! `ui_locales`, then the browser's `Accept-Language`, then English.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use fluent_templates::fluent_bundle::FluentValue;
use fluent_templates::Loader;
use unic_langid::LanguageIdentifier;

fluent_templates::static_loader! {
    static LOCALES = {
        locales: "./locales",
        fallback_language: "en",
        customise: |bundle| bundle.set_use_isolating(false),
    };
}

/// Languages with a full translation, in the order of the language menu.
pub const LANGUAGES: [&str; 4] = ["vi", "zh", "es", "en"];

/// Picks the first supported language of `ui_locales` (space separated) or of an
/// `Accept-Language` header, else English.
pub fn negotiate(ui_locales: Option<&str>, accept_language: Option<&str>) -> &'static str {
    let from_ui = ui_locales
        .into_iter()
        .flat_map(|s| s.split_whitespace())
        .map(str::to_string);
    let mut weighted: Vec<(f32, String)> = accept_language
        .into_iter()
        .flat_map(|s| s.split(','))
        .filter_map(|part| {
            let mut it = part.trim().split(';');
            let tag = it.next()?.trim().to_string();
            let q = it
                .find_map(|p| p.trim().strip_prefix("q=").and_then(|q| q.parse().ok()))
                .unwrap_or(1.0);
            Some((q, tag))
        })
        .collect();
    weighted.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal));
    from_ui
        .chain(weighted.into_iter().map(|(_, t)| t))
        .find_map(|tag| supported(&tag))
        .unwrap_or("en")
}

/// The supported language a tag belongs to (`vi-VN` → `vi`, `zh-Hans-CN` → `zh`).
pub fn supported(tag: &str) -> Option<&'static str> {
    let primary = tag.split(['-', '_']).next()?.to_ascii_lowercase();
    LANGUAGES.into_iter().find(|l| *l == primary)
}

/// Translations in one language, handed to page templates.
#[derive(Clone)]
pub struct Tr {
    /// Language code (`vi`, `zh`, `es`, `en`).
    pub lang: &'static str,
    id: LanguageIdentifier,
}

impl Tr {
    /// Translations for a supported language code (English for anything else).
    pub fn new(lang: &str) -> Self {
        let lang = supported(lang).unwrap_or("en");
        let id = lang.parse().unwrap_or_default();
        Tr { lang, id }
    }

    /// The message of `key`.
    pub fn get(&self, key: &str) -> String {
        LOCALES.lookup(&self.id, key)
    }

    /// The message of `key` with named arguments.
    pub fn with(&self, key: &str, args: &BTreeMap<String, String>) -> String {
        let args: HashMap<Cow<'static, str>, FluentValue> = args
            .iter()
            .map(|(k, v)| (Cow::Owned(k.clone()), FluentValue::from(v.clone())))
            .collect();
        LOCALES.lookup_with_args(&self.id, key, &args)
    }

    /// Text of an operator-written per-language map, falling back to English, then any.
    pub fn pick<'a>(&self, text: &'a BTreeMap<String, String>) -> &'a str {
        text.get(self.lang)
            .or_else(|| text.get("en"))
            .or_else(|| text.values().next())
            .map(String::as_str)
            .unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ui_locales_win_over_accept_language() {
        assert_eq!(negotiate(Some("fr vi-VN"), Some("es")), "vi");
        assert_eq!(
            negotiate(None, Some("fr;q=0.9, zh-CN;q=0.8, en;q=0.1")),
            "zh"
        );
        assert_eq!(negotiate(None, None), "en");
    }

    #[test]
    fn every_language_has_every_key() {
        let english = include_str!("../locales/en/main.ftl");
        let keys: Vec<&str> = english
            .lines()
            .filter_map(|l| l.split_once(" = ").map(|(k, _)| k.trim()))
            .filter(|k| !k.is_empty() && !k.starts_with('#') && !k.starts_with(' '))
            .collect();
        for (lang, text) in [
            ("vi", include_str!("../locales/vi/main.ftl")),
            ("zh", include_str!("../locales/zh/main.ftl")),
            ("es", include_str!("../locales/es/main.ftl")),
        ] {
            for k in &keys {
                assert!(
                    text.lines().any(|l| l.starts_with(&format!("{k} = "))),
                    "{lang} lacks `{k}`"
                );
            }
        }
    }
}
