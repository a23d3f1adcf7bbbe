"""PHI_PRESENT evidence: real identifiers, not pseudonyms (udfs/phi.py)."""
import pytest

from dicom_triage.udfs.phi import looks_like_a_name, phi_evidence


@pytest.mark.parametrize("value", ["MARTINEZ^JAMES", "Weber^Claudia", "HARTMANN^PETER^^DR. MED.",
                                   "van der Berg^Anna", "Visser Marieke", "Müller^Jürgen"])
def test_person_names(value):
    assert looks_like_a_name(value)


@pytest.mark.parametrize("value", ["SUBJ-A-0001", "C00002", "TRIAL042-B-001", "ANONYMOUS", "Anonymized^Patient",
                                   "PATIENT^A", "Subject 12", "", None, "JAMES", "^", "hmac:3f2a"])
def test_pseudonyms_and_placeholders_are_not_names(value):
    assert not looks_like_a_name(value)


def test_a_pseudonymised_object_has_no_evidence():
    values = {"PatientName": "SUBJ-A-0001", "PatientID": "SUBJ-A-0001", "AccessionNumber": "66409459"}
    assert phi_evidence(values, "YES") == []
    assert phi_evidence({}, "NO") == []


def test_names_removed_attributes_and_an_object_that_says_it_is_identified():
    assert phi_evidence({"PatientID": "SUBJ-A-0001", "OperatorsName": "WEBER^CLAUDIA"}, "YES") == [
        "OperatorsName is a person's name"]
    assert phi_evidence({"PatientAddress": "Lindenstrasse 14, 50667 Koeln"}, None) == ["PatientAddress present"]
    assert phi_evidence({"PatientID": "84569844"}, "NO") == ["PatientIdentityRemoved NO with PatientID"]
    evidence = phi_evidence({"PatientName": "MARTINEZ^JAMES", "PatientID": "MRN2663859",
                             "PatientBirthDate": "19710422"}, "no")
    assert evidence == ["PatientBirthDate present", "PatientName is a person's name",
                        "PatientIdentityRemoved NO with PatientBirthDate, PatientID, PatientName"]


def test_the_patients_name_is_taken_out_of_free_text_and_nothing_else():
    from dicom_triage.udfs.phi import name_words, without_names

    words = name_words(["van der Berg^Anna", None, "SUBJ-A-0001"])
    assert words == {"VAN", "DER", "BERG", "ANNA"}  # words of 3+ letters, upper case; pseudonyms give none
    assert without_names("MR brain anna berg T2", words) == "MR brain [name] [name] T2"
    assert without_names("Bergamo protocol", words) == "Bergamo protocol", "whole words only"
    assert without_names(None, words) is None and without_names("T1", frozenset()) == "T1"
    assert name_words(["SUBJ-A-0001", "ANONYMOUS^PATIENT"]) == frozenset()
