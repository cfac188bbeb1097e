//! Citizen-facing languages (Vietnamese, Chinese, Spanish, English) with Fluent messages in
//! `broker/locales/<lang>/main.ftl`. The language comes from the relying party's
//! `ui_locales`, then the browser's `Accept-Language`, then English.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use fluent_templates::fluent_bundle::FluentValue;
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

/// Names of the languages in themselves, for the language menu.
fn endonym(lang: &str) -> &'static str {
    match lang {
        "vi" => "Tiếng Việt",
        "zh" => "中文",
        "es" => "Español",
        _ => "English",
    }
}

/// One entry of a page's language menu.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LanguageLink {
    /// Language code.
    pub lang: &'static str,
    /// Its name, in itself.
    pub label: &'static str,
    /// The same page in that language.
    pub href: String,
    /// The language the page is in.
    pub current: bool,
}

/// The language menu of a page reached by GET at `path_and_query`, where `ui_locales`
/// chooses the language: the same address with `ui_locales` set to each language.
pub fn language_links(current: &str, path_and_query: &str) -> Vec<LanguageLink> {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let kept: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k != "ui_locales")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    LANGUAGES
        .into_iter()
        .map(|lang| {
            let mut q = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in &kept {
                q.append_pair(k, v);
            }
            q.append_pair("ui_locales", lang);
            LanguageLink {
                lang,
                label: endonym(lang),
                href: format!("{path}?{}", q.finish()),
                current: lang == current,
            }
        })
        .collect()
}

/// An ISO date (`2027-06-30`) as people of `lang` write it; anything else unchanged.
pub fn format_date(lang: &str, text: &str) -> String {
    let parts: Vec<&str> = text.split('-').collect();
    let number = |s: &str, len: usize| {
        (s.len() == len && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u32>().ok())
            .flatten()
    };
    let found = match parts.as_slice() {
        [y, m, d] => (number(y, 4), number(m, 2), number(d, 2)),
        _ => (None, None, None),
    };
    let (Some(y), Some(m), Some(d)) = found else {
        return text.to_string();
    };
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return text.to_string();
    }
    const EN: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    const ES: [&str; 12] = [
        "enero",
        "febrero",
        "marzo",
        "abril",
        "mayo",
        "junio",
        "julio",
        "agosto",
        "septiembre",
        "octubre",
        "noviembre",
        "diciembre",
    ];
    let month = (m as usize).saturating_sub(1).min(11);
    match supported(lang).unwrap_or("en") {
        "vi" => format!("{d}/{m}/{y}"),
        "zh" => format!("{y}年{m}月{d}日"),
        "es" => format!("{d} de {} de {y}", ES[month]),
        _ => format!("{d} {} {y}", EN[month]),
    }
}

/// Translations in one language, handed to page templates.
#[derive(Clone)]
pub struct Tr {
    /// Language code (`vi`, `zh`, `es`, `en`).
    pub lang: &'static str,
    id: LanguageIdentifier,
    /// The page's language menu (empty: none shown).
    pub links: Vec<LanguageLink>,
}

impl Tr {
    /// Translations for a supported language code (English for anything else).
    pub fn new(lang: &str) -> Self {
        let lang = supported(lang).unwrap_or("en");
        let id = lang.parse().unwrap_or_default();
        Tr {
            lang,
            id,
            links: Vec::new(),
        }
    }

    /// The same translations with a language menu on the page.
    pub fn with_links(mut self, links: Vec<LanguageLink>) -> Self {
        self.links = links;
        self
    }

    /// The message of `key` in this language, else in English. `self.id` is always one of
    /// the loaded languages, so this is the loader's own fallback chain without negotiating
    /// the chain again for every message of a page.
    fn lookup(
        &self,
        key: &str,
        args: Option<&HashMap<Cow<'static, str>, FluentValue<'static>>>,
    ) -> Option<String> {
        let fallback = LOCALES.fallback();
        LOCALES
            .lookup_single_language(&self.id, key, args)
            .ok()
            .or_else(|| {
                (self.id != *fallback)
                    .then(|| LOCALES.lookup_single_language(fallback, key, args).ok())
                    .flatten()
            })
    }

    /// The message of `key`.
    pub fn get(&self, key: &str) -> String {
        self.lookup(key, None).unwrap_or_else(|| unknown(key))
    }

    /// The message of `key`, if there is one (in this language or English).
    pub fn try_get(&self, key: &str) -> Option<String> {
        self.lookup(key, None)
    }

    /// The message of `key` with named arguments, if there is one.
    pub fn try_with(&self, key: &str, args: &BTreeMap<String, String>) -> Option<String> {
        // A message that exists but does not take these arguments reads as unknown.
        self.lookup(key, Some(&self.fluent_args(args)))
            .or_else(|| self.lookup(key, None).map(|_| unknown(key)))
    }

    fn fluent_args(
        &self,
        args: &BTreeMap<String, String>,
    ) -> HashMap<Cow<'static, str>, FluentValue<'static>> {
        args.iter()
            .map(|(k, v)| {
                let v = if k == "date" || k.ends_with("_date") {
                    format_date(self.lang, v)
                } else {
                    v.clone()
                };
                (Cow::Owned(k.clone()), FluentValue::from(v))
            })
            .collect()
    }

    /// The message of `key` with named arguments; an argument named `date` (or ending in
    /// `_date`) holding an ISO date is written as people of this language write dates.
    pub fn with(&self, key: &str, args: &BTreeMap<String, String>) -> String {
        self.lookup(key, Some(&self.fluent_args(args)))
            .unwrap_or_else(|| unknown(key))
    }

    /// Text of an operator-written per-language map, falling back to English, then any.
    pub fn pick<'a>(&self, text: &'a BTreeMap<String, String>) -> &'a str {
        common::localized::pick(text, self.lang)
    }
}

/// What the loader shows for a message it does not have.
fn unknown(key: &str) -> String {
    format!("Unknown localization key: {key:?}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use fluent_templates::Loader;

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
    fn dates_are_written_per_language() {
        assert_eq!(format_date("en", "2027-06-30"), "30 June 2027");
        assert_eq!(format_date("vi", "2027-06-30"), "30/6/2027");
        assert_eq!(format_date("zh", "2027-06-30"), "2027年6月30日");
        assert_eq!(format_date("es", "2027-06-30"), "30 de junio de 2027");
        assert_eq!(format_date("vi", "soon"), "soon");
        let args = BTreeMap::from([
            ("date".to_string(), "2027-06-30".to_string()),
            ("alternatives".to_string(), "VNeID".to_string()),
        ]);
        assert!(Tr::new("zh")
            .with("legacy-until", &args)
            .contains("2027年6月30日"));
    }

    #[test]
    fn the_language_menu_keeps_the_address_and_swaps_ui_locales() {
        let links = language_links("vi", "/authorize?client_id=rp&ui_locales=vi&state=a%20b");
        assert_eq!(links.len(), 4);
        let es = links.iter().find(|l| l.lang == "es").expect("es");
        assert_eq!(es.href, "/authorize?client_id=rp&state=a+b&ui_locales=es");
        assert!(!es.current);
        assert!(links.iter().find(|l| l.lang == "vi").expect("vi").current);
        assert_eq!(
            language_links("en", "/logout")[0].href,
            "/logout?ui_locales=vi"
        );
    }

    /// The message keys of the English file.
    fn english_keys() -> Vec<&'static str> {
        include_str!("../locales/en/main.ftl")
            .lines()
            .filter_map(|l| l.split_once(" = ").map(|(k, _)| k.trim()))
            .filter(|k| !k.is_empty() && !k.starts_with('#') && !k.starts_with(' '))
            .collect()
    }

    #[test]
    fn every_language_has_every_key() {
        let keys = english_keys();
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

    #[test]
    fn messages_are_the_loaders_own_lookups() {
        let keys = english_keys();
        assert!(keys.len() > 50, "{} keys", keys.len());
        let args = BTreeMap::from([("count".to_string(), "3".to_string())]);
        for lang in LANGUAGES {
            let tr = Tr::new(lang);
            for key in keys.iter().copied().chain(["no-such-key"]) {
                assert_eq!(tr.get(key), LOCALES.lookup(&tr.id, key), "{lang} {key}");
                assert_eq!(
                    tr.try_get(key),
                    LOCALES.try_lookup(&tr.id, key),
                    "{lang} {key}"
                );
                assert_eq!(
                    tr.with(key, &args),
                    LOCALES.lookup_with_args(&tr.id, key, &tr.fluent_args(&args)),
                    "{lang} {key}"
                );
                let fluent_args = tr.fluent_args(&args);
                let exists = LOCALES
                    .try_lookup_with_args(&tr.id, key, &fluent_args)
                    .is_some()
                    || LOCALES.try_lookup(&tr.id, key).is_some();
                assert_eq!(
                    tr.try_with(key, &args),
                    exists.then(|| LOCALES.lookup_with_args(&tr.id, key, &fluent_args)),
                    "{lang} {key}"
                );
            }
        }
        assert_eq!(Tr::new("vi").try_get("no-such-key"), None);
    }
}
