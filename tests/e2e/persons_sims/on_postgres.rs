//! The scenarios of `persons_sims.rs` again, with every broker keeping its records in PostgreSQL.

use crate::harness::on_postgres_records;

#[test]
fn one_citizen_through_bank_vneid_and_ctid_has_one_sub_per_platform() {
    on_postgres_records(super::one_citizen_through_bank_vneid_and_ctid_has_one_sub_per_platform);
}

#[test]
fn an_old_account_is_linked_skipped_and_linked_later() {
    on_postgres_records(super::an_old_account_is_linked_skipped_and_linked_later);
}

#[test]
fn an_old_id_number_mapped_to_the_new_one_keeps_the_sub() {
    on_postgres_records(super::an_old_id_number_mapped_to_the_new_one_keeps_the_sub);
}

#[test]
fn a_strong_proof_suspends_a_weak_binding_and_never_the_reverse() {
    on_postgres_records(super::a_strong_proof_suspends_a_weak_binding_and_never_the_reverse);
}

#[test]
fn a_bank_card_session_is_stepped_up_with_ctid_for_a_high_platform() {
    on_postgres_records(super::a_bank_card_session_is_stepped_up_with_ctid_for_a_high_platform);
}
