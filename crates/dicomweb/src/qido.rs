//! Parsing QIDO-RS answers (DICOM JSON, PS3.18 F.2): a study search and a series search.
//! No I/O: the client ([`crate::DicomWebSource`]) and the fuzz targets both use these.

use std::collections::HashMap;

use dicom_series::ports::{SeriesListing, StudyListing};
use serde_json::Value;

/// The items of a QIDO-RS answer (DICOM JSON, PS3.18 F.2); an answer of nothing but white
/// space has none.
fn items_of(body: &[u8]) -> Result<Vec<HashMap<String, Value>>, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    serde_json::from_slice(body).map_err(|e| format!("a body that is not a DICOM JSON list: {e}"))
}

/// Parses the answer of a QIDO-RS series search.
pub fn parse_series(body: &[u8]) -> Result<Vec<SeriesListing>, String> {
    items_of(body)?
        .iter()
        .enumerate()
        .map(|(index, item)| {
            Ok(SeriesListing {
                series_instance_uid: text(item, "0020000E")
                    .ok_or_else(|| format!("series {index} has no Series Instance UID"))?,
                modality: text(item, "00080060"),
                series_number: text(item, "00200011").and_then(|n| n.parse().ok()),
                series_description: text(item, "0008103E"),
                number_of_instances: count(item, "00201209"),
                body_part: text(item, "00180015"),
                series_date: text(item, "00080021"),
            })
        })
        .collect()
}

/// Parses the answer of a QIDO-RS study search.
pub fn parse_studies(body: &[u8]) -> Result<Vec<StudyListing>, String> {
    items_of(body)?
        .iter()
        .enumerate()
        .map(|(index, item)| {
            Ok(StudyListing {
                study_instance_uid: text(item, "0020000D")
                    .ok_or_else(|| format!("study {index} has no Study Instance UID"))?,
                patient_id: text(item, "00100020"),
                patient_name: text(item, "00100010"),
                study_date: text(item, "00080020"),
                study_description: text(item, "00081030"),
                accession_number: text(item, "00080050"),
                modalities: texts(item, "00080061"),
                number_of_series: count(item, "00201206"),
                number_of_instances: count(item, "00201208"),
            })
        })
        .collect()
}

/// The values of attribute `tag` as text: strings trimmed, numbers written out, person
/// names by their alphabetic form; empty ones left out.
fn texts(item: &HashMap<String, Value>, tag: &str) -> Vec<String> {
    let Some(values) = item
        .get(tag)
        .and_then(|attribute| attribute.get("Value"))
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    values
        .iter()
        .filter_map(|value| match value {
            Value::String(s) => Some(s.trim().to_owned()),
            Value::Number(n) => Some(n.to_string()),
            Value::Object(name) => name
                .get("Alphabetic")
                .and_then(Value::as_str)
                .map(|s| s.trim().to_owned()),
            _ => None,
        })
        .filter(|s| !s.is_empty())
        .collect()
}

fn text(item: &HashMap<String, Value>, tag: &str) -> Option<String> {
    texts(item, tag).into_iter().next()
}

fn count(item: &HashMap<String, Value>, tag: &str) -> Option<u32> {
    text(item, tag).and_then(|n| n.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_read_whatever_their_json_form() {
        let item: HashMap<String, Value> = serde_json::from_str(
            r#"{
                "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane"}]},
                "00080061": {"vr": "CS", "Value": ["CT", "", "MR"]},
                "00201208": {"vr": "IS", "Value": [42]},
                "00201206": {"vr": "IS", "Value": [" 3 "]},
                "00081030": {"vr": "LO"}
            }"#,
        )
        .unwrap();
        assert_eq!(text(&item, "00100010").as_deref(), Some("Doe^Jane"));
        assert_eq!(texts(&item, "00080061"), ["CT", "MR"]);
        assert_eq!(count(&item, "00201208"), Some(42));
        assert_eq!(count(&item, "00201206"), Some(3));
        assert_eq!(text(&item, "00081030"), None);
        assert_eq!(text(&item, "0020000D"), None);
    }
}
