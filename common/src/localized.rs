//! Operator-written texts per language (`{ en = "…", vi = "…" }`).

use std::collections::BTreeMap;

/// The text for `lang`, falling back to English, then to any language, then to nothing.
pub fn pick<'a>(text: &'a BTreeMap<String, String>, lang: &str) -> &'a str {
    text.get(lang)
        .or_else(|| text.get("en"))
        .or_else(|| text.values().next())
        .map(String::as_str)
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn falls_back_to_english_then_any() {
        let mut t = BTreeMap::new();
        assert_eq!(pick(&t, "vi"), "");
        t.insert("zh".to_string(), "银行".to_string());
        assert_eq!(pick(&t, "vi"), "银行");
        t.insert("en".to_string(), "Bank".to_string());
        assert_eq!(pick(&t, "vi"), "Bank");
        t.insert("vi".to_string(), "Ngân hàng".to_string());
        assert_eq!(pick(&t, "vi"), "Ngân hàng");
    }
}
