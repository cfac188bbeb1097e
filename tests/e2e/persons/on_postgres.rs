//! The scenarios of `persons.rs` again, with every broker keeping its records in PostgreSQL.

use crate::harness::on_postgres_records;

#[test]
fn one_sub_per_platform_whichever_connector_proves_the_number() {
    on_postgres_records(super::one_sub_per_platform_whichever_connector_proves_the_number);
}

#[test]
fn a_changed_id_number_keeps_the_sub() {
    on_postgres_records(super::a_changed_id_number_keeps_the_sub);
}

#[test]
fn a_legacy_account_is_linked_skipped_and_linked_later() {
    on_postgres_records(super::a_legacy_account_is_linked_skipped_and_linked_later);
}

#[test]
fn a_weak_binding_of_the_mapped_number_is_asked_about_too() {
    on_postgres_records(super::a_weak_binding_of_the_mapped_number_is_asked_about_too);
}

#[test]
fn a_strong_proof_suspends_a_weak_binding_and_never_the_reverse() {
    on_postgres_records(super::a_strong_proof_suspends_a_weak_binding_and_never_the_reverse);
}

#[test]
fn a_weaker_session_is_stepped_up_for_a_platform_that_needs_high() {
    on_postgres_records(super::a_weaker_session_is_stepped_up_for_a_platform_that_needs_high);
}

#[test]
fn a_platform_that_requires_a_number_gets_no_login_without_one() {
    on_postgres_records(super::a_platform_that_requires_a_number_gets_no_login_without_one);
}

#[test]
fn an_essential_acr_claim_asks_for_the_level_too() {
    on_postgres_records(super::an_essential_acr_claim_asks_for_the_level_too);
}
