//! How a login transaction's [`Stage`] and [`View`] are read back from the store.
//!
//! They are written as internally tagged enums (`{"stage": "step", "connector": …}`), and
//! serde reads such an enum by first copying the whole object, nested objects included, into
//! a buffer of its own and then reading that again: every page of a login paid for it. The
//! flat structs below read the same JSON in one pass, whatever the order of its members, and
//! then check that the variant has what it needs. Two forms the derived reading took and the
//! broker never writes no longer read: an array instead of an object, and members of another
//! variant with the wrong type.

use connectors::{Form, Message, StepState};
use serde::Deserialize;

use super::{Stage, View};

#[derive(Deserialize)]
#[serde(rename_all = "snake_case", variant_identifier)]
enum StageKind {
    Choose,
    Step,
    Consent,
    SelectAccount,
    Claim,
    Link,
    Notice,
}

/// Every member any [`Stage`] has.
#[derive(Deserialize)]
pub(super) struct StoredStage {
    stage: StageKind,
    connector: Option<String>,
    // Missing is `None`; `null` is a connector state like any other (`Some(Null)`).
    #[serde(default, deserialize_with = "present")]
    state: Option<StepState>,
    view: Option<View>,
    problem: Option<Message>,
    name: Option<String>,
    birthdate: Option<String>,
    #[serde(default)]
    exhausted: bool,
    key: Option<String>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<StepState>, D::Error> {
    StepState::deserialize(d).map(Some)
}

fn required<T>(value: Option<T>, stage: &str, member: &str) -> Result<T, String> {
    value.ok_or_else(|| format!("stage {stage} without {member}"))
}

impl TryFrom<StoredStage> for Stage {
    type Error = String;

    fn try_from(s: StoredStage) -> Result<Stage, String> {
        Ok(match s.stage {
            StageKind::Choose => Stage::Choose,
            StageKind::Step => Stage::Step {
                connector: required(s.connector, "step", "connector")?,
                state: required(s.state, "step", "state")?,
                view: required(s.view, "step", "view")?,
            },
            StageKind::Consent => Stage::Consent,
            StageKind::SelectAccount => Stage::SelectAccount,
            StageKind::Claim => Stage::Claim,
            StageKind::Link => Stage::Link {
                problem: s.problem,
                name: required(s.name, "link", "name")?,
                birthdate: required(s.birthdate, "link", "birthdate")?,
                exhausted: s.exhausted,
            },
            StageKind::Notice => Stage::Notice {
                key: required(s.key, "notice", "key")?,
            },
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case", variant_identifier)]
enum ViewKind {
    Form,
    Wait,
    Redirect,
}

/// Every member any [`View`] has.
#[derive(Deserialize)]
pub(super) struct StoredView {
    kind: ViewKind,
    form: Option<Form>,
    instruction: Option<Message>,
    qr: Option<String>,
    app_link: Option<String>,
    poll_seconds: Option<u32>,
}

impl TryFrom<StoredView> for View {
    type Error = String;

    fn try_from(v: StoredView) -> Result<View, String> {
        Ok(match v.kind {
            ViewKind::Form => View::Form {
                form: required(v.form, "form view", "form")?,
            },
            ViewKind::Wait => View::Wait {
                instruction: required(v.instruction, "wait view", "instruction")?,
                qr: v.qr,
                app_link: v.app_link,
                poll_seconds: required(v.poll_seconds, "wait view", "poll_seconds")?,
            },
            ViewKind::Redirect => View::Redirect,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn form() -> Form {
        Form {
            title: "test-citizens-title".into(),
            intro: None,
            fields: vec![connectors::Field::new(
                "username",
                "field-username",
                "text",
                "username",
            )],
            submit: "button-continue".into(),
            problem: Some(Message::new("error-wrong-password")),
            notice: None,
            secondary: None,
        }
    }

    fn every_stage() -> Vec<Stage> {
        let wait = View::Wait {
            instruction: Message::new("ctid-scan"),
            qr: Some("qr".into()),
            app_link: None,
            poll_seconds: 2,
        };
        vec![
            Stage::Choose,
            Stage::Step {
                connector: "test-citizens".into(),
                state: json!({"attempt": 1, "nested": {"a": [1, 2]}}),
                view: View::Form { form: form() },
            },
            Stage::Step {
                connector: "ctid".into(),
                state: serde_json::Value::Null,
                view: wait,
            },
            Stage::Step {
                connector: "vneid".into(),
                state: json!("s"),
                view: View::Redirect,
            },
            Stage::Consent,
            Stage::SelectAccount,
            Stage::Claim,
            Stage::Link {
                problem: Some(Message::new("link-mismatch")),
                name: "sealed-name".into(),
                birthdate: "sealed-date".into(),
                exhausted: true,
            },
            Stage::Notice {
                key: "notice-title".into(),
            },
        ]
    }

    #[test]
    fn every_stage_reads_back_as_written() {
        for stage in every_stage() {
            let written = serde_json::to_value(&stage).expect("serializes");
            let read: Stage = serde_json::from_value(written.clone()).expect("reads back");
            assert_eq!(format!("{read:?}"), format!("{stage:?}"));
            assert_eq!(serde_json::to_value(&read).expect("serializes"), written);
        }
    }

    #[test]
    fn members_in_any_order_and_a_null_state_read() {
        let stage: Stage = serde_json::from_str(
            r#"{"view": {"poll_seconds": 3, "instruction": {"key": "ctid-scan", "args": {}},
                 "kind": "wait"},
                "state": null, "connector": "ctid", "stage": "step"}"#,
        )
        .expect("reads");
        let Stage::Step { state, view, .. } = stage else {
            panic!("a step: {stage:?}");
        };
        assert!(state.is_null());
        assert!(matches!(
            view,
            View::Wait {
                poll_seconds: 3,
                qr: None,
                ..
            }
        ));
    }

    #[test]
    fn a_variant_without_what_it_needs_is_refused() {
        for bad in [
            json!({"stage": "step", "state": {}}),
            json!({"stage": "step", "connector": "c", "view": {"kind": "redirect"}}),
            json!({"stage": {"choose": null}}),
            json!({"stage": "notice"}),
            json!({"stage": "link", "name": "n"}),
            json!({"stage": "nowhere"}),
            json!({"connector": "c"}),
        ] {
            assert!(
                serde_json::from_value::<Stage>(bad.clone()).is_err(),
                "{bad}"
            );
        }
        assert!(serde_json::from_value::<View>(json!({"kind": "form"})).is_err());
        assert!(serde_json::from_value::<View>(json!({"kind": "wait"})).is_err());
        assert!(serde_json::from_value::<View>(json!({"kind": {"redirect": null}})).is_err());
    }
}
